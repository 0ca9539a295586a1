#!/usr/bin/env bash
# Builds the Clearance image with podman (docs/deployment.md "Building the image").
#
#   deploy/image/build.sh [--tag IMAGE] [--base IMAGE | --debian-base]
#
# --base IMAGE   the Node.js 24 base (default: docker.io/library/node:24-bookworm-slim, from a registry)
# --debian-base  a base made here from Debian's packages (deploy/image/debian-base.sh): no registry
# --tag IMAGE    the image's name (default: localhost/clearance:latest)
#
# Prints the image's size when done. The production dependencies come from the npm registry.
set -euo pipefail
cd "$(dirname "$0")/../.."

tag=localhost/clearance:latest
base=""
while [ $# -gt 0 ]; do
  case "$1" in
    --tag) tag="$2"; shift 2 ;;
    --base) base="$2"; shift 2 ;;
    --debian-base) base="$(deploy/image/debian-base.sh)"; shift ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "build.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
command -v podman >/dev/null || { echo "build.sh: podman is missing (apt-get install podman)" >&2; exit 1; }
export CONTAINERS_CONF="${CONTAINERS_CONF:-$PWD/deploy/podman/containers.conf}"

build_args=()
[ -n "$base" ] && build_args+=(--build-arg "BASE=$base")
# A TLS-intercepting proxy's CA, as this host's Node trusts it, for `npm ci` only (never in a layer).
[ -n "${NODE_EXTRA_CA_CERTS:-}" ] && [ -f "$NODE_EXTRA_CA_CERTS" ] && build_args+=(--secret "id=ca_bundle,src=$NODE_EXTRA_CA_CERTS")
# --network host: `npm ci` reaches the npm registry the way this host does (proxy settings included).
podman build --format docker --network host "${build_args[@]}" -t "$tag" -f Containerfile . >&2
size="$(podman image inspect --format '{{.Size}}' "$tag")"
echo "built $tag: $((size / 1000000)) MB"
