#!/usr/bin/env bash
# Multi-node kubevz on one machine, for development and tests: one embedded API server,
# `kvz controller`, and N real `kvz node-agent`s, each in its own network namespace as its host
# (own state dir, own node bridge `kvzbr0` that the agent attaches to as an existing bridge),
# with an uplink into a shared fabric bridge in the root namespace. Every VE is reachable from
# the root namespace at its address (root routes each node's 10.213.x.0/24 via its uplink).
#
#   hack/multinode.sh up [N] [DIR]   start N nodes (default 3) in DIR (default /tmp/kvz-multinode)
#   hack/multinode.sh up-shared [N] [DIR]   the same on ONE L2 segment and VE subnet (node bridges
#                                    bridged to the fabric; VEs keep their address when migrated:
#                                    give them addresses .2-.199 of the printed subnet)
#   hack/multinode.sh down [DIR]     stop everything and remove every host object and DIR
#
# Then: kubectl --kubeconfig DIR/api/kubeconfig get ven,ve -A   (logs: DIR/*.log, DIR/nodes/*/agent.log)
# Needs root, runc, iproute2, nsenter, containernetworking-plugins; run `npm run build` first.
# Agents run under `nsenter --net` (not `ip netns exec`, whose private mount namespace and fresh
# /sys would hide cgroups and keep VE mounts from the host): see test/helpers/multinode.ts.
set -euo pipefail
cd "$(dirname "$0")/.."
helper=dist/test/helpers/multinode.js
[ -f "$helper" ] || { echo "error: $helper missing; run: npx tsc -p tsconfig.json" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "error: needs root (network namespaces, cgroups, mounts): sudo $0 $*" >&2; exit 1; }
cmd=${1:-}
case "$cmd" in
  up|up-shared)
    shared=
    [ "$cmd" = up-shared ] && shared=--shared
    n=${2:-3}
    dir=${3:-/tmp/kvz-multinode}
    if [ -f "$dir/cluster.json" ]; then echo "error: $dir already holds a cluster; run: $0 down $dir" >&2; exit 1; fi
    mkdir -p "$dir"
    # The serve process holds the API server and supervises nothing else: agents and the
    # controller are their own processes, all recorded by PID in $dir/cluster.json.
    setsid node "$helper" serve --nodes "$n" --dir "$dir" $shared --heartbeat 2s --node-grace 10s >"$dir/serve.log" 2>&1 < /dev/null &
    pid=$!
    for _ in $(seq 1 1200); do
      [ -f "$dir/ready" ] && break
      if ! kill -0 "$pid" 2>/dev/null; then echo "error: the harness exited; see $dir/serve.log:" >&2; tail -n 30 "$dir/serve.log" >&2; exit 1; fi
      sleep 0.1
    done
    [ -f "$dir/ready" ] || { echo "error: not ready after 120 s; see $dir/serve.log; clean up with: $0 down $dir" >&2; exit 1; }
    echo "kubevz multi-node is up: $n nodes${shared:+ on one L2 segment, VE subnet $(sed -n 's/.*"subnet": "\([^"]*\)".*/\1/p' "$dir/cluster.json" | head -n 1)}"
    echo "  kubectl --kubeconfig $dir/api/kubeconfig get ven,ve -A"
    echo "  stop and clean:  $0 down $dir"
    ;;
  down)
    dir=${2:-/tmp/kvz-multinode}
    [ -f "$dir/cluster.json" ] || { echo "nothing to do: no $dir/cluster.json"; exit 0; }
    node "$helper" down --dir "$dir"
    echo "removed the cluster in $dir"
    ;;
  *)
    sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
