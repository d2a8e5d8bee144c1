// Benchmark (issue 5): 1,000 VEs applied at once with `kubectl apply --server-side` against a
// running `kvz up` (API server, controller and node agent in one process), all Stopped so the
// runtime costs nothing. Measures the time until every VE is observed and has its status written
// (phase Stopped at its current generation), and the peak memory of the kvz up process (VmHWM)
// and of the kubectl run. Targets: under 30 s and under 300 MB. Prints; asserts nothing.
// Also prints the CPU seconds the kvz up process spent (utime+stime), which is steadier than wall
// time on a shared machine. Run as root: `node dist/bench/thousand-ves.js [count]`; with
// KVZ_BENCH_CPU_PROF=DIR the kvz up process writes a V8 CPU profile into DIR when it stops, and
// with KVZ_BENCH_LOGS=FILE it logs at debug level (default: info, as `kvz up` does) into FILE.

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

/** CPU seconds (user + system) a process has used so far, from /proc/PID/stat. */
function cpuSecondsOf(pid: number): number {
  // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // USER_HZ is 100 on Linux
}

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
  const profDir = process.env.KVZ_BENCH_CPU_PROF;
  const stack = await startKvzUp({
    extraArgs: ['--subnet', `10.${200 + (process.pid % 50)}.0.0/16`],
    nodeArgs: profDir ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`] : [],
    // The level `kvz up` runs at by default (test stacks log at debug, which costs CPU per request).
    logLevel: process.env.KVZ_BENCH_LOGS ? 'debug' : 'info',
  });
  const pid = stack.proc.pid!;
  try {
    const ns = `bench-${process.pid.toString(36)}`;
    const file = join(stack.stateDir, 'thousand.yaml');
    writeFileSync(file, manifest(ns, COUNT));
    const ves = makeResourceClient<VirtualEnvironment>(loadKubeConfig(stack.kubeconfig), { ...VE_RESOURCE, namespaced: true }, silentLogger);
    const idle = memoryOf(pid);
    const cpuBefore = cpuSecondsOf(pid);

    // Observed through a watch (as `kubectl wait` would), not by polling: listing 1,000 objects
    // several times a second would load the very process being measured. A final list checks it.
    const isDone = (v: VirtualEnvironment) => v.status?.phase === 'Stopped' && v.status.observedGeneration === v.metadata.generation;
    const doneNames = new Set<string>();
    let doneAt: number | undefined;
    let cpuAtDone: number | undefined;
    let allDone!: () => void;
    const finished = new Promise<void>((r) => (allDone = r));
    const informer = await ves.inform({ namespace: ns }, (type, v) => {
      if (type !== 'DELETED' && isDone(v)) doneNames.add(v.metadata.name);
      else doneNames.delete(v.metadata.name);
      if (doneNames.size === COUNT && doneAt === undefined) {
        doneAt = performance.now();
        cpuAtDone = cpuSecondsOf(pid);
        allDone();
      }
    });

    const start = performance.now();
    await stack.kubectl(['apply', '--server-side', '--field-manager', 'bench', '-f', file]);
    const applied = performance.now() - start;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([finished, new Promise<void>((r) => (timer = setTimeout(r, 10 * TARGET_MS)))]);
    clearTimeout(timer);
    const total = (doneAt ?? performance.now()) - start;
    await informer.stop();

    const items = await ves.list({ namespace: ns });
    const observed = items.length;
    const done = items.filter(isDone).length;
    if (done < COUNT) {
      // Say why the rest are not done: phase and Ready/Scheduled reasons, counted.
      const why = new Map<string, number>();
      for (const v of items) {
        const c = (t: string) => v.status?.conditions?.find((x) => x.type === t);
        const k = `phase=${v.status?.phase ?? '-'} scheduled=${c('Scheduled')?.reason ?? '-'} ready=${c('Ready')?.reason ?? '-'}`;
        why.set(k, (why.get(k) ?? 0) + 1);
      }
      for (const [k, n] of why) console.log(`  ${n} × ${k}`);
    }
    const mem = memoryOf(pid);
    const cpu = (cpuAtDone ?? cpuSecondsOf(pid)) - cpuBefore;

    const row = (what: string, value: string, target: string) => console.log(`${what.padEnd(44)} ${value.padStart(12)}   target ${target}`);
    console.log(`kubevz: ${COUNT} Stopped VEs applied at once (kubectl apply --server-side), kvz up pid ${pid}`);
    row('kubectl apply returned after', `${(applied / 1000).toFixed(2)} s`, '-');
    row(`all ${COUNT} observed, status written after`, done === COUNT && doneAt !== undefined ? `${(total / 1000).toFixed(2)} s` : `TIMEOUT (${done}/${COUNT}, ${observed} seen)`, `< ${TARGET_MS / 1000} s`);
    row('kvz up CPU time until done (user+sys)', `${cpu.toFixed(2)} s`, '-');
    row('kvz up memory before (RSS)', `${idle.nowMb.toFixed(0)} MiB`, '-');
    row('kvz up memory after (RSS)', `${mem.nowMb.toFixed(0)} MiB`, '-');
    row('kvz up peak memory (VmHWM)', `${mem.peakMb.toFixed(0)} MiB`, `< ${TARGET_MB} MB`);
    row('ratio time/target', (total / TARGET_MS).toFixed(2), '< 1');
    row('ratio peak memory/target', ((mem.peakMb * 1.048576) / TARGET_MB).toFixed(2), '< 1');
    await stack.kubectl(['delete', 'namespace', ns, '--wait=false'], { allowFail: true });
    await stack.kubectl(['delete', 've', '--all', '-n', ns, '--wait=false'], { allowFail: true });
    // Stop the stack only once the agent has removed them (a stop cut short leaves work behind).
    const gone = Date.now() + 120_000;
    while ((await ves.list({ namespace: ns })).length > 0 && Date.now() < gone) await new Promise((r) => setTimeout(r, 1000));
  } finally {
    if (process.env.KVZ_BENCH_LOGS) writeFileSync(process.env.KVZ_BENCH_LOGS, stack.logs.join(''));
    await stack.stop();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
