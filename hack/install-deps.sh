#!/usr/bin/env bash
# Installs Debian packages that are missing, with apt, and nothing else.
#   hack/install-deps.sh            the host packages kubevz needs at run time and for its tests
#   hack/install-deps.sh PKG...     exactly these packages (hack/build-criu.sh uses it for build deps)
# Silent when everything is installed; one line when it installs something. apt's output goes to
# .tmp/apt.log and is printed only on failure. `apt-get update` runs only when something is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "setup: ERROR: $*" >&2; exit 1; }

[ -r /etc/debian_version ] || die "kubevz's host set-up supports Debian 12/13 only (no /etc/debian_version)"
command -v dpkg-query >/dev/null && command -v apt-get >/dev/null || die "dpkg-query/apt-get not found"

if [ $# -gt 0 ]; then
  wanted=("$@")
else
  wanted=(
    # container runtime, network, disk, /proc virtualisation
    runc iproute2 iptables nftables containernetworking-plugins e2fsprogs busybox-static lxcfs
    rsync util-linux openssl procps
    # template caches: Debian trees, packed caches (tar.zst), imported tarballs
    debootstrap zstd
    # tests and helpers
    iputils-ping curl jq
    # runs the Argo CD health script (manifests/argocd/*.lua) in test/unit/manifests/argocd-health.test.ts
    lua5.4
    # native npm modules (better-sqlite3 falls back to node-gyp) and the CRIU build
    build-essential pkg-config python3 ca-certificates xz-utils
  )
fi

# One dpkg-query for all: "name ii " (or "hi ", held) for installed ones; unknown names go to stderr.
installed=$(dpkg-query -W -f='${Package} ${db:Status-Abbrev}\n' "${wanted[@]}" 2>/dev/null | awk '$2 ~ /^.i$/ {print $1}' || true)
missing=()
for p in "${wanted[@]}"; do
  grep -qxF -- "$p" <<<"$installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

[ "$(id -u)" -eq 0 ] || die "packages missing (${missing[*]}); run as root to install them"
echo "setup: apt-get install ${missing[*]}"
mkdir -p .tmp
log=.tmp/apt.log
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -q && apt-get install -y -q --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
  tail -n 40 "$log" >&2
  die "apt-get failed installing: ${missing[*]} (full log: $log)"
fi
