#!/usr/bin/env bash
# Makes sure a usable CRIU >= 4.2 is the first `criu` in PATH (/usr/local/sbin/criu).
#
# Debian 12's criu 3.17 cannot start on recent kernels (vDSO) and Debian 13's 4.1.1 cannot dump
# inet sockets on kernels >= 6.16; 4.2.1 fixes both (see PLATFORM-NOTES, "CRIU"). When the `criu`
# found first in PATH is older than 4.2 or `criu check` fails, this builds CRIU from Debian sid's
# *source* package, fetched from the same mirror as the machine's own Debian apt source:
#   * the sid `deb-src` entry and its package lists live only in a scratch directory, passed to
#     apt with -o Dir::Etc::... / Dir::State::Lists; /etc/apt and /var/lib/apt/lists are never
#     touched, so there is nothing to restore afterwards (the scratch dir is removed by a trap);
#   * `apt-get source --download-only criu` (the Debian patch tarball may 404 and make apt exit
#     non-zero: success is judged by the .orig.tar.xz having arrived);
#   * build deps with apt, `make criu`, install to /usr/local/sbin/criu.
# The installed binary is the cache: a re-run only runs `criu --version` and `criu check`.
set -euo pipefail
cd "$(dirname "$0")/.."

MIN_VERSION=4.2
PREFIX_BIN=/usr/local/sbin/criu
BUILD_DEPS=(build-essential pkg-config python3 xz-utils
  libprotobuf-dev libprotobuf-c-dev protobuf-c-compiler protobuf-compiler python3-protobuf libnl-3-dev libnet1-dev
  libcap-dev libbsd-dev libgnutls28-dev libaio-dev uuid-dev libnftables-dev
  iptables)   # CRIU runs iptables-restore/ip6tables-restore for --tcp-established

export PATH="/usr/local/sbin:$PATH"
die() { echo "setup: ERROR: $*" >&2; exit 1; }

criu_version() { "$1" --version 2>/dev/null | awk '/^Version:/ {print $2; exit}'; }

# usable [quiet]: 0 when the first criu in PATH is >= MIN_VERSION and `criu check` says
# "Looks good" (possibly with warnings: here the root shell lacks CAP_SYS_RESOURCE).
CHECK_OUT=""
usable() {
  local bin v
  bin=$(command -v criu) || { CHECK_OUT="no criu in PATH"; return 1; }
  v=$(criu_version "$bin")
  if [ -z "$v" ] || ! dpkg --compare-versions "$v" ge "$MIN_VERSION"; then
    CHECK_OUT="$bin is version '${v:-unknown}', need >= $MIN_VERSION"; return 1
  fi
  CHECK_OUT=$("$bin" check 2>&1) || { CHECK_OUT="$bin check failed: $CHECK_OUT"; return 1; }
  grep -q 'Looks good' <<<"$CHECK_OUT" || { CHECK_OUT="$bin check: $CHECK_OUT"; return 1; }
}

usable && exit 0
[ "$(id -u)" -eq 0 ] || die "CRIU >= $MIN_VERSION needed ($CHECK_OUT); run as root to build it"
echo "setup: building CRIU >= $MIN_VERSION from Debian sid's source package ($(tail -n 1 <<<"$CHECK_OUT"))"

# --- The machine's own Debian mirror URI (never hard-coded here) -------------------------------
# shellcheck disable=SC1091
codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
[ -n "$codename" ] || die "cannot read VERSION_CODENAME from /etc/os-release"

mirror_from_deb822() {  # FILE: first URI of a stanza with Types ∋ deb and Suites ∋ $codename
  awk -v want="$codename" '
    function flush() { if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " want " ") && uri != "" && found == "") found = uri
                       types = ""; suites = ""; uri = "" }
    /^[[:space:]]*#/ { next }
    /^[[:space:]]*$/ { flush(); next }
    tolower($1) == "types:"  { $1 = ""; types = $0 }
    tolower($1) == "suites:" { $1 = ""; suites = $0 }
    tolower($1) == "uris:"   { uri = $2 }
    END { flush(); if (found != "") print found }' "$1"
}
mirror_from_list() {    # FILE: URI of a one-line "deb [opts] URI $codename ..." entry
  awk -v want="$codename" '
    /^[[:space:]]*#/ { next }
    $1 == "deb" { i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
                  if ($(i + 1) == want) { print $i; exit } }' "$1"
}
mirror=""
for f in /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list; do
  [ -f "$f" ] || continue
  case "$f" in
    *.sources) mirror=$(mirror_from_deb822 "$f") ;;
    *) mirror=$(mirror_from_list "$f") ;;
  esac
  [ -n "$mirror" ] && break
done
[ -n "$mirror" ] || die "no Debian apt source for suite '$codename' found in /etc/apt (need its mirror URI)"

# --- Fetch the sid source package in a scratch dir with a scratch apt configuration -------------
scratch=$(mktemp -d /tmp/kubevz-criu.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$scratch/apt/lists/partial" "$scratch/apt/parts" "$scratch/apt/cache/archives/partial" "$scratch/src"
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
opts=""; [ -r "$keyring" ] && opts="[signed-by=$keyring] "
echo "deb-src ${opts}${mirror} sid main" >"$scratch/apt/sources.list"
apt_scratch=(-o "Dir::Etc::SourceList=$scratch/apt/sources.list" -o "Dir::Etc::SourceParts=$scratch/apt/parts"
  -o "Dir::State::Lists=$scratch/apt/lists" -o "Dir::Cache=$scratch/apt/cache"
  -o "APT::Sandbox::User=root" -o "Acquire::Languages=none")
mkdir -p .tmp
log=$PWD/.tmp/criu-build.log
: >"$log"
apt-get "${apt_scratch[@]}" update -q >>"$log" 2>&1 || { tail -n 20 "$log" >&2; die "apt-get update for sid deb-src failed (log: $log)"; }
(cd "$scratch/src" && apt-get "${apt_scratch[@]}" source --download-only criu) >>"$log" 2>&1 || true
orig=$(find "$scratch/src" -maxdepth 1 -name 'criu_*.orig.tar.xz' | head -n 1)
[ -n "$orig" ] || { tail -n 20 "$log" >&2; die "criu .orig.tar.xz did not arrive from sid (log: $log)"; }
version=$(basename "$orig" | sed -E 's/^criu_(.*)\.orig\.tar\.xz$/\1/')
dpkg --compare-versions "$version" ge "$MIN_VERSION" || die "sid has criu $version, need >= $MIN_VERSION"

# --- Build and install ------------------------------------------------------------------------
bash hack/install-deps.sh "${BUILD_DEPS[@]}"
tar -xJf "$orig" -C "$scratch/src"
srcdir=$(find "$scratch/src" -mindepth 1 -maxdepth 1 -type d -name 'criu*' | head -n 1)
[ -n "$srcdir" ] || die "unpacking $orig gave no criu directory"
echo "setup: make criu $version"
if ! make -C "$srcdir" -j"$(nproc)" criu >>"$log" 2>&1; then
  tail -n 40 "$log" >&2; die "building CRIU $version failed (log: $log)"
fi
install -D -m 0755 "$srcdir/criu/criu" "$PREFIX_BIN"
hash -r
[ "$(command -v criu)" = "$PREFIX_BIN" ] || die "$PREFIX_BIN is not the first criu in PATH ($(command -v criu))"
usable || die "CRIU $version installed at $PREFIX_BIN but not usable: $CHECK_OUT"
echo "setup: installed CRIU $version at $PREFIX_BIN"
