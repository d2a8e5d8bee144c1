// Benchmark (issue 5): 1,000 VEs applied at once with `kubectl apply --server-side` against a
// running `kvz up` (API server, controller and node agent in one process), all Stopped so the
// runtime costs nothing. Measures the time until every VE is observed and has its status written
// (phase Stopped at its current generation), and the peak memory of the kvz up process (VmHWM)
// and of the kubectl run. Targets: under 30 s and under 300 MB. Prints; asserts nothing.
// Run as root: `node dist/bench/thousand-ves.js [count]`.

import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { VE_RESOURCE, type VirtualEnvironment } from '../src/api/types.js';
import { silentLogger } from '../src/core/logger.js';
import { loadKubeConfig, makeResourceClient } from '../src/core/kube-client.js';
import { startKvzUp } from '../test/helpers/kvz-up.js';

const COUNT = Number(process.argv[2] ?? 1000);
const TARGET_MS = 30_000;
const TARGET_MB = 300;

/** Peak and current resident memory of a process, in MiB (from /proc/PID/status). */
function memoryOf(pid: number): { peakMb: number; nowMb: number } {
  const text = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? NaN);
  return { peakMb: kb('VmHWM') / 1024, nowMb: kb('VmRSS') / 1024 };
}

function manifest(ns: string, count: number): string {
  const docs = [`apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ${ns}\n`];
  for (let i = 0; i < count; i++) {
    docs.push(
      [
        'apiVersion: kubevz.io/v1alpha1',
        'kind: VirtualEnvironment',
        'metadata:',
        `  name: ve-${i}`,
        `  namespace: ${ns}`,
        'spec:',
        '  template: busybox',
        '  powerState: Stopped',
        // Small enough that 1,000 fit one node's capacity (the scheduler reserves it for stopped
        // VEs too, so that each can start).
        '  resources:',
        '    memory: {limit: 16Mi}',
        '    processes: 64',
        '    disk: {space: 16Mi}',
        '',
      ].join('\n'),
    );
  }
  return docs.join('---\n');
}

async function main(): Promise<void> {
  // A /16: every VE gets an address from the node's pool, stopped or not.
  const stack = await startKvzUp({ extraArgs: ['--subnet', `10.${200 + (process.pid % 50)}.0.0/16`] });
  const pid = stack.proc.pid!;
  try {
    const ns = `bench-${process.pid.toString(36)}`;
    const file = join(stack.stateDir, 'thousand.yaml');
    writeFileSync(file, manifest(ns, COUNT));
    const ves = makeResourceClient<VirtualEnvironment>(loadKubeConfig(stack.kubeconfig), { ...VE_RESOURCE, namespaced: true }, silentLogger);
    const idle = memoryOf(pid);

    const start = performance.now();
    await stack.kubectl(['apply', '--server-side', '--field-manager', 'bench', '-f', file]);
    const applied = performance.now() - start;

    let done = 0;
    let observed = 0;
    const deadline = start + 10 * TARGET_MS;
    for (;;) {
      const items = await ves.list({ namespace: ns });
      observed = items.length;
      done = items.filter((v) => v.status?.phase === 'Stopped' && v.status.observedGeneration === v.metadata.generation).length;
      if (done === COUNT || performance.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    const total = performance.now() - start;
    if (done < COUNT) {
      // Say why the rest are not done: phase and Ready/Scheduled reasons, counted.
      const why = new Map<string, number>();
      for (const v of await ves.list({ namespace: ns })) {
        const c = (t: string) => v.status?.conditions?.find((x) => x.type === t);
        const k = `phase=${v.status?.phase ?? '-'} scheduled=${c('Scheduled')?.reason ?? '-'} ready=${c('Ready')?.reason ?? '-'}`;
        why.set(k, (why.get(k) ?? 0) + 1);
      }
      for (const [k, n] of why) console.log(`  ${n} × ${k}`);
    }
    const mem = memoryOf(pid);

    const row = (what: string, value: string, target: string) => console.log(`${what.padEnd(44)} ${value.padStart(12)}   target ${target}`);
    console.log(`kubevz: ${COUNT} Stopped VEs applied at once (kubectl apply --server-side), kvz up pid ${pid}`);
    row('kubectl apply returned after', `${(applied / 1000).toFixed(2)} s`, '-');
    row(`all ${COUNT} observed, status written after`, done === COUNT ? `${(total / 1000).toFixed(2)} s` : `TIMEOUT (${done}/${COUNT}, ${observed} seen)`, `< ${TARGET_MS / 1000} s`);
    row('kvz up memory before (RSS)', `${idle.nowMb.toFixed(0)} MiB`, '-');
    row('kvz up memory after (RSS)', `${mem.nowMb.toFixed(0)} MiB`, '-');
    row('kvz up peak memory (VmHWM)', `${mem.peakMb.toFixed(0)} MiB`, `< ${TARGET_MB} MB`);
    row('ratio time/target', (total / TARGET_MS).toFixed(2), '< 1');
    row('ratio peak memory/target', ((mem.peakMb * 1.048576) / TARGET_MB).toFixed(2), '< 1');
    await stack.kubectl(['delete', 'namespace', ns, '--wait=false'], { allowFail: true });
    await stack.kubectl(['delete', 've', '--all', '-n', ns, '--wait=false'], { allowFail: true });
  } finally {
    await stack.stop();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
