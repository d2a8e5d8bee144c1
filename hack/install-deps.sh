#!/usr/bin/env bash
# Installs Debian packages that are missing, with apt, and nothing else.
#   hack/install-deps.sh            the host packages kubevz needs at run time and for its tests,
#                                   and Debian's kubectl 1.20 unpacked (not installed) for the tests
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
mkdir -p .tmp
log=$PWD/.tmp/apt.log
export DEBIAN_FRONTEND=noninteractive
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" -eq 0 ] || die "packages missing (${missing[*]}); run as root to install them"
  echo "setup: apt-get install ${missing[*]}"
  if ! { apt-get update -q && apt-get install -y -q --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    die "apt-get failed installing: ${missing[*]} (full log: $log)"
  fi
fi
[ $# -gt 0 ] && exit 0

# Debian's kubernetes-client (kubectl 1.20) for the kubectl version matrix
# (test/integration/apiserver-kubectl-matrix.test.ts; hack/test.sh passes it in KVZ_EXTRA_KUBECTL).
# Downloaded with apt and unpacked with dpkg -x, never installed: the package conflicts with the
# `kubectl` package that provides the current kubectl. Only the binary is kept; a re-run that finds
# it answering `version --client` does nothing.
old_kubectl_dir=/var/cache/kubevz/kubectl-1.20
old_kubectl=$old_kubectl_dir/kubectl
old_kubectl_ok() { "$old_kubectl" version --client 2>/dev/null | grep -q 'Minor:"20"'; }
if ! old_kubectl_ok; then
  [ "$(id -u)" -eq 0 ] || die "kubectl 1.20 missing at $old_kubectl; run as root to fetch it"
  echo "setup: apt-get download kubernetes-client (kubectl 1.20, unpacked into $old_kubectl_dir)"
  scratch=$(mktemp -d /tmp/kubevz-kubectl-1.20.XXXXXX)
  trap 'rm -rf "$scratch"' EXIT
  # Into a root-only scratch dir, so apt's download sandbox user cannot write there: download as root.
  fetch() { (cd "$scratch" && apt-get download -q -o APT::Sandbox::User=root kubernetes-client) >>"$log" 2>&1; }
  # The package lists may predate the package or be absent on a fresh machine: update once, then retry.
  if ! fetch && ! { apt-get update -q >>"$log" 2>&1 && fetch; }; then
    # Not fatal for set-up (kubevz does not need it to run); the matrix test fails under CI without it.
    tail -n 5 "$log" >&2
    echo "setup: warning: apt-get download kubernetes-client failed (Debian 12 ships it as kubectl 1.20; full log: $log); the kubectl 1.20 compatibility test cannot run" >&2
    exit 0
  fi
  deb=$(find "$scratch" -maxdepth 1 -name 'kubernetes-client_*.deb' | head -n 1)
  [ -n "$deb" ] || die "apt-get download kubernetes-client left no .deb (log: $log)"
  dpkg-deb -x "$deb" "$scratch/root"
  [ -x "$scratch/root/usr/bin/kubectl" ] || die "$(basename "$deb") has no usr/bin/kubectl"
  mkdir -p "$old_kubectl_dir"
  install -m 0755 "$scratch/root/usr/bin/kubectl" "$old_kubectl.tmp"
  mv "$old_kubectl.tmp" "$old_kubectl"
  old_kubectl_ok || die "$old_kubectl from $(basename "$deb") does not report client version 1.20: $("$old_kubectl" version --client 2>&1 | head -n 3)"
fi
