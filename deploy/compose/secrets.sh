#!/usr/bin/env bash
# Makes the secrets deploy/compose.yaml mounts, in deploy/compose/secrets/ (never committed):
# Clearance's master key, the PostgreSQL and Redis passwords and the URLs that carry them, a
# self-signed TLS certificate for the proxy (localhost) and a client CA for mTLS clients.
# Existing files are kept: run it again after deleting one to replace that one.
# Bring your own TLS certificate and client CAs in production.
#
#   deploy/compose/secrets.sh [DIR]    (default: deploy/compose/secrets)
set -euo pipefail
dir="${1:-$(dirname "$0")/secrets}"
mkdir -p "$dir"
chmod 0700 "$dir"
cd "$dir"
umask 077
new() { [ -s "$1" ] && return 1; echo "made $1" >&2; }

new master_key && openssl rand -hex 32 >master_key
new postgres_password && openssl rand -hex 24 >postgres_password
new redis_password && openssl rand -hex 24 >redis_password
new database_url && printf 'postgres://clearance:%s@postgres:5432/clearance\n' "$(cat postgres_password)" >database_url
new redis_url && printf 'redis://:%s@redis:6379\n' "$(cat redis_password)" >redis_url
if new tls.crt; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout tls.key -out tls.crt 2>/dev/null
fi
if new client-ca.crt; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 -subj "/CN=Clearance compose client CA" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
    -keyout client-ca.key -out client-ca.crt 2>/dev/null
fi
# The containers read them as their own users (Clearance runs as uid 10001): readable, in a
# directory only root and those containers see.
chmod 0444 master_key postgres_password redis_password database_url redis_url tls.crt tls.key client-ca.crt
echo "secrets in $PWD"
