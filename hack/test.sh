#!/usr/bin/env bash
# Runs the test suite from the built tree: unit, then integration (root, real runc/CNI), then
# end-to-end (kvz up + kubectl). `hack/test.sh unit|integration|e2e` runs one layer.
set -euo pipefail
cd "$(dirname "$0")/.."
layers=("${@:-unit integration e2e}")
files=()
for layer in ${layers[@]}; do
  while IFS= read -r f; do files+=("$f"); done < <(find "dist/test/$layer" -name '*.test.js' 2>/dev/null | sort)
done
if [ ${#files[@]} -eq 0 ]; then echo "no test files found under dist/test (did the build run?)" >&2; exit 1; fi
# The kubectl version matrix (test/integration/apiserver-kubectl-matrix.test.ts) also runs the
# kubectl 1.20 that hack/install-deps.sh unpacks; under CI it fails when that binary is missing.
old_kubectl=/var/cache/kubevz/kubectl-1.20/kubectl
if [ -x "$old_kubectl" ] && [[ ":${KVZ_EXTRA_KUBECTL:-}:" != *":$old_kubectl:"* ]]; then
  export KVZ_EXTRA_KUBECTL="${KVZ_EXTRA_KUBECTL:+$KVZ_EXTRA_KUBECTL:}$old_kubectl"
fi
# Integration and e2e tests share host resources (bridges, ports): run files one at a time.
exec node --test --test-concurrency=1 --test-reporter=spec "${files[@]}"
