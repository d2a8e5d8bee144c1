#!/usr/bin/env bash
# Host set-up for kubevz, run by `npm start` and `npm test` (as root, Debian 12 or 13).
# Idempotent: every step first checks whether it has anything to do, prints one line when it
# does something and nothing otherwise. A ready machine takes well under 2 s.
#   1. Debian packages (hack/install-deps.sh)
#   2. kernel features the runtime uses (overlay, loop, veth, bridge, FUSE)
#   3. CRIU >= 4.2 at /usr/local/sbin/criu (hack/build-criu.sh)
#   4. npm dependencies, and the native better-sqlite3 module loading
#   5. TypeScript build into dist/ when a source is newer than the last build
#   6. the user-namespace helper dist/native/kvz-idmap, compiled from our own C source
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/sbin:$PATH"   # CRIU 4.2 (/usr/local/sbin) before Debian's (/usr/sbin)

die() { echo "setup: ERROR: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "run as root (kubevz installs host packages and drives runc, CRIU, netns, loop devices)"
if [ -r /etc/debian_version ]; then
  case "$(cut -d. -f1 /etc/debian_version)" in
    12|13) ;;
    *) echo "setup: warning: tested on Debian 12/13, this is $(cat /etc/debian_version)" >&2 ;;
  esac
else
  die "kubevz's host set-up supports Debian 12/13 (no /etc/debian_version)"
fi

# 1. packages
bash hack/install-deps.sh

# 2. kernel features: built in or loaded here; try modprobe on hosts where they are modules.
need_module() {  # NAME TEST...: run TEST; if it fails, modprobe NAME and run it again
  local mod=$1; shift
  "$@" >/dev/null 2>&1 && return 0
  if command -v modprobe >/dev/null; then
    echo "setup: modprobe $mod"
    modprobe "$mod" >/dev/null 2>&1 || true
    "$@" >/dev/null 2>&1 && return 0
  fi
  die "kernel feature '$mod' unavailable (built in or loadable module needed)"
}
need_module overlay grep -qw overlay /proc/filesystems
need_module loop test -e /dev/loop-control
need_module fuse test -e /dev/fuse
# veth + bridge, probed in a throw-away network namespace (nothing is left on the host)
need_module veth unshare --net ip link add kvzsetup0 type veth peer name kvzsetup1
need_module bridge unshare --net ip link add kvzsetup0 type bridge

# 3. CRIU
bash hack/build-criu.sh

# 4. npm dependencies
command -v node >/dev/null || die "node not found (Node.js >= 20.18 needed)"
node_version=$(node --version); node_version=${node_version#v}
dpkg --compare-versions "$node_version" ge 20.18 || die "Node.js >= 20.18 needed, found $node_version"
mkdir -p .tmp
if [ -f package-lock.json ]; then
  if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ] \
     || [ package.json -nt node_modules/.package-lock.json ]; then
    echo "setup: npm ci"
    npm ci --no-audit --no-fund --loglevel=error >.tmp/npm.log 2>&1 || { tail -n 30 .tmp/npm.log >&2; die "npm ci failed (log: .tmp/npm.log)"; }
  fi
elif [ ! -d node_modules ] || [ package.json -nt node_modules ]; then
  echo "setup: npm install"
  npm install --no-audit --no-fund --loglevel=error >.tmp/npm.log 2>&1 || { tail -n 30 .tmp/npm.log >&2; die "npm install failed (log: .tmp/npm.log)"; }
fi
# npm may be configured to skip install scripts, leaving better-sqlite3 without its native addon.
sqlite_ok() { node -e "require('better-sqlite3')(':memory:').close()" >/dev/null 2>&1; }
if ! sqlite_ok; then
  echo "setup: npm rebuild better-sqlite3"
  npm rebuild better-sqlite3 --ignore-scripts=false --loglevel=error >.tmp/npm.log 2>&1 || true
  sqlite_ok || { tail -n 30 .tmp/npm.log >&2; die "better-sqlite3's native module does not load (log: .tmp/npm.log)"; }
fi

# 5. build, when a source is newer than the last successful build; then drop .js files whose .ts
# is gone (a deleted test must not keep running from dist/)
stamp=dist/.setup-build-stamp
if [ ! -f "$stamp" ] || [ -n "$(find src test bench crds tsconfig.json package.json package-lock.json -newer "$stamp" -print -quit 2>/dev/null)" ]; then
  echo "setup: tsc"
  started=$(mktemp .tmp/build-start.XXXXXX)   # its mtime marks the start: edits made during the build count next time
  if ! node_modules/.bin/tsc -p tsconfig.json >.tmp/tsc.log 2>&1; then
    rm -f "$started"; cat .tmp/tsc.log >&2; die "TypeScript build failed"
  fi
  while IFS= read -r js; do
    rel=${js#dist/}
    [ -f "${rel%.js}.ts" ] || rm -f "$js" "$js.map"
  done < <(find dist -name '*.js')
  mv "$started" "$stamp"
fi

# 6. the user-namespace helper (idmapped mounts, userns-owned netns: runc 1.1.5 cannot), from our source
helper=dist/native/kvz-idmap
if [ ! -x "$helper" ] || [ src/runtime/native/kvz-idmap.c -nt "$helper" ]; then
  echo "setup: gcc $helper"
  command -v gcc >/dev/null || die "gcc not found: it builds $helper from src/runtime/native/kvz-idmap.c (apt-get install gcc)"
  mkdir -p dist/native
  gcc -O2 -Wall -o "$helper.tmp" src/runtime/native/kvz-idmap.c || die "building $helper failed"
  mv "$helper.tmp" "$helper"
fi
