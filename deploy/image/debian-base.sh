#!/usr/bin/env bash
# Makes a Node.js 24 base image from Debian's packages, for hosts that reach no container registry
# (docs/deployment.md "Building the image"): Debian bookworm (debootstrap --variant=minbase), the
# Node.js 24 binary the project pins through the `node` npm package, and npm from the npm
# registry — what the official node:24-bookworm-slim image holds. Needs root, debootstrap, podman.
#
#   deploy/image/debian-base.sh [--tag IMAGE] [--rebuild]
#
# Prints the image's name. An image of that name already present is kept unless --rebuild.
set -euo pipefail
cd "$(dirname "$0")/../.."

tag=localhost/clearance-base:node24-bookworm
rebuild=false
while [ $# -gt 0 ]; do
  case "$1" in
    --tag) tag="$2"; shift 2 ;;
    --rebuild) rebuild=true; shift ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "debian-base.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

export CONTAINERS_CONF="${CONTAINERS_CONF:-$PWD/deploy/podman/containers.conf}"
if [ "$rebuild" = false ] && podman image exists "$tag"; then
  echo "$tag"
  exit 0
fi
for tool in debootstrap podman tar; do
  command -v "$tool" >/dev/null || { echo "debian-base.sh: $tool is missing (apt-get install $tool)" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "debian-base.sh: debootstrap needs root" >&2; exit 1; }

node_bin="${NODE_BIN:-node_modules/node/bin/node}"
[ -x "$node_bin" ] || { echo "debian-base.sh: no Node.js binary at $node_bin (run npm ci first, or set NODE_BIN)" >&2; exit 1; }
node_version="$("$node_bin" --version)"
case "$node_version" in v2[4-9].*|v[3-9][0-9].*) ;; *) echo "debian-base.sh: $node_bin is Node.js $node_version; 24 or later is needed" >&2; exit 1 ;; esac

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
root="$work/root"
echo "debian-base.sh: debootstrap bookworm (minbase) into $root" >&2
debootstrap --variant=minbase bookworm "$root" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" >"$work/debootstrap.log" 2>&1 \
  || { tail -20 "$work/debootstrap.log" >&2; exit 1; }

echo "debian-base.sh: Node.js $node_version and npm" >&2
install -m 0755 "$node_bin" "$root/usr/local/bin/node"
(cd "$work" && npm pack --silent "npm@${NPM_VERSION:-11}" >/dev/null)
mkdir -p "$root/usr/local/lib/node_modules/npm"
tar -xzf "$work"/npm-*.tgz -C "$root/usr/local/lib/node_modules/npm" --strip-components=1
ln -s ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/local/bin/npm"
ln -s ../lib/node_modules/npm/bin/npx-cli.js "$root/usr/local/bin/npx"

# What an image never needs: package caches and lists, documentation, manual pages, locales.
rm -rf "$root"/var/cache/apt/* "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* "$root"/usr/share/man/* \
  "$root"/usr/share/info/* "$root"/usr/share/locale/* "$root"/var/log/*.log "$root"/var/cache/debconf/*-old

tar -C "$root" --numeric-owner -c . | podman import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["node"]' \
  --message "Debian bookworm minbase with Node.js $node_version" - "$tag" >/dev/null
echo "$tag"
