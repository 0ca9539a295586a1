#!/usr/bin/env bash
# Two Clearance nodes in containers on this host's network, against this host's PostgreSQL and
# Redis: the topology of deploy/compose.yaml without the proxy, for a host that reaches no
# container registry (docs/deployment.md "Two nodes on one host").
#
#   deploy/local/nodes.sh up [--image IMAGE] [--ports P1,P2] [--database-url URL] [--redis-url URL]
#                           [--issuer URL] [--prefix NAME] [--state DIR] [--workers N] [--env NAME=VALUE]...
#   deploy/local/nodes.sh restart N   SIGTERM node N (1 or 2), wait for its drain, start it again
#   deploy/local/nodes.sh status      each node's state and /readyz
#   deploy/local/nodes.sh down        stop and remove the nodes and their volumes
#
# Defaults: image localhost/clearance:latest (built by `npm run image` if missing), ports
# 9101,9102, postgres://postgres@127.0.0.1:5432/clearance (created if missing),
# redis://127.0.0.1:6379, issuer https://clearance.localhost, prefix clearance-node, state
# .local-deploy/ (the master key and the database URL, as the secret files the nodes mount),
# workers: one per core (the image's production default). restart, status and down take the same
# --prefix, --ports and --state as up.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CONTAINERS_CONF="${CONTAINERS_CONF:-$PWD/deploy/podman/containers.conf}"

image=localhost/clearance:latest
ports=9101,9102
database_url=postgres://postgres@127.0.0.1:5432/clearance
redis_url=redis://127.0.0.1:6379
issuer=https://clearance.localhost
prefix=clearance-node
state=.local-deploy
extra_env=()
workers=()

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
command="${1:-}"
case "$command" in '') usage >&2; exit 2 ;; -h|--help|help) usage; exit 0 ;; esac
shift
node_number=""
if [ "$command" = restart ]; then node_number="${1:-}"; shift || true; fi
while [ $# -gt 0 ]; do
  case "$1" in
    --image) image="$2"; shift 2 ;;
    --ports) ports="$2"; shift 2 ;;
    --database-url) database_url="$2"; shift 2 ;;
    --redis-url) redis_url="$2"; shift 2 ;;
    --issuer) issuer="$2"; shift 2 ;;
    --prefix) prefix="$2"; shift 2 ;;
    --state) state="$2"; shift 2 ;;
    --env) extra_env+=(-e "$2"); shift 2 ;;
    --workers) workers=(--workers "$2"); shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "nodes.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
mkdir -p "$state" && state="$(cd "$state" && pwd)"
IFS=, read -r -a port_list <<<"$ports"
[ "${#port_list[@]}" = 2 ] || { echo "nodes.sh: --ports takes two ports, P1,P2" >&2; exit 2; }

port_of() { echo "${port_list[$(($1 - 1))]}"; }

ready() { # node number: 0 when its /readyz answers 200
  curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$(port_of "$1")/readyz" 2>/dev/null
}

wait_ready() { # node number
  local name="$prefix-$1"
  for _ in $(seq 1 240); do
    ready "$1" && { echo "$name is ready on port $(port_of "$1")"; return 0; }
    if [ "$(podman inspect --format '{{.State.Running}}' "$name" 2>/dev/null)" = false ]; then
      echo "nodes.sh: $name exited before it was ready:" >&2
      podman logs --tail 20 "$name" >&2 || true
      return 1
    fi
    sleep 0.25
  done
  echo "nodes.sh: $name was not ready within 60 s" >&2
  return 1
}

# The secrets the nodes mount: written once, readable by the nodes' user (uid 10001) only.
write_secrets() {
  mkdir -p "$state/secrets"
  chmod 0755 "$state" "$state/secrets"
  [ -s "$state/secrets/master-key" ] || (umask 077 && openssl rand -hex 32 >"$state/secrets/master-key")
  printf '%s\n' "$database_url" >"$state/secrets/database-url"
  chown 10001:10001 "$state/secrets/master-key" "$state/secrets/database-url" 2>/dev/null || true
  chmod 0400 "$state/secrets/master-key" "$state/secrets/database-url"
}

common_args() { # the environment every node and one-off command gets
  echo --network host --read-only --tmpfs /tmp \
    -v "$state/secrets:/run/secrets:ro" \
    -e CLEARANCE_MASTER_KEY_FILE=/run/secrets/master-key \
    -e DATABASE_URL_FILE=/run/secrets/database-url \
    -e REDIS_URL="$redis_url" -e CLEARANCE_REDIS_PREFIX="$prefix:" \
    -e CLEARANCE_ISSUER="$issuer"
}

run_node() { # node number
  local name="$prefix-$1"
  podman rm -f "$name" >/dev/null 2>&1 || true
  # shellcheck disable=SC2046
  podman run -d --name "$name" $(common_args) "${extra_env[@]}" \
    -v "$name-data:/var/lib/clearance" -e PORT="$(port_of "$1")" -e CLEARANCE_NODE_NAME="$name" \
    "$image" start "${workers[@]}" >/dev/null
}

case "$command" in
  up)
    podman image exists "$image" || deploy/image/build.sh --debian-base --tag "$image"
    database="${database_url##*/}"; database="${database%%\?*}"
    server_url="${database_url%/*}/postgres"
    psql -q "$server_url" -tc "select 1 from pg_database where datname = '$database'" | grep -q 1 \
      || psql -q "$server_url" -c "create database \"$database\"" >/dev/null
    write_secrets
    # Migrations run once, before any node starts (docs/deployment.md "Upgrades").
    # shellcheck disable=SC2046
    podman run --rm $(common_args) "$image" migrate
    run_node 1 && run_node 2
    wait_ready 1 && wait_ready 2
    ;;
  restart)
    case "$node_number" in 1|2) ;; *) echo "nodes.sh: restart takes the node's number, 1 or 2" >&2; exit 2 ;; esac
    name="$prefix-$node_number"
    # SIGTERM, then the drain (docs/operations.md "Graceful shutdown"); podman kills it only past 60 s.
    podman stop -t 60 "$name" >/dev/null
    code="$(podman inspect --format '{{.State.ExitCode}}' "$name")"
    [ "$code" = 0 ] || { echo "nodes.sh: $name exited $code on SIGTERM" >&2; podman logs --tail 20 "$name" >&2; exit 1; }
    echo "$name drained and stopped (exit 0)"
    podman start "$name" >/dev/null
    wait_ready "$node_number"
    ;;
  status)
    for n in 1 2; do
      running="$(podman inspect --format '{{.State.Status}}' "$prefix-$n" 2>/dev/null || echo absent)"
      if ready "$n"; then readiness=ready; else readiness="not ready"; fi
      echo "$prefix-$n: $running, port $(port_of "$n"), $readiness"
    done
    ;;
  down)
    for n in 1 2; do
      podman rm -f -t 60 "$prefix-$n" >/dev/null 2>&1 || true
      podman volume rm -f "$prefix-$n-data" >/dev/null 2>&1 || true
    done
    echo "removed $prefix-1 and $prefix-2"
    ;;
  *) usage >&2; exit 2 ;;
esac
