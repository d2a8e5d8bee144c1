// Benchmark: CPU share accuracy. Two busybox VEs pinned to the same CPU (cpuset), each running
// a busy loop; cpu.units set live to 1000 and R·1000 for several R; measured CPU ratio against
// requested. Prints the table; asserts nothing. Root: `node dist/bench/cpu-shares.js [seconds]`.

import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { silentLogger } from '../src/core/logger.js';
import { createRuntime, teardownNode, type VEConfig } from '../src/runtime/index.js';

const seconds = Number(process.argv[2] ?? 3);
const id = process.pid.toString(36);
const net = 200 + (process.pid % 50);
const bridge = `kvzs${id}`.slice(0, 15);
const stateDir = mkdtempSync(join(tmpdir(), 'kvz-bench-cpu-'));
const rt = createRuntime({ stateDir, bridge: { name: bridge, subnet: `10.213.${net}.0/24` }, log: silentLogger });
const cpu = String(availableParallelism() - 1);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const ves: VEConfig[] = [0, 1].map((i) => ({
  uid: randomUUID(), name: `bench/cpu${i}-${id}`, hostname: `cpu${i}`, template: 'busybox', addresses: [`10.213.${net}.${10 + i}/24`], limits: { cpuShares: 1000, cpuset: cpu },
}));
try {
  const pids: number[] = [];
  for (const c of ves) {
    await rt.ensureRunning(c);
    pids.push((await rt.inspect(c.uid)).pid!);
  }
  console.log(`CPU share accuracy: two VEs pinned to CPU ${cpu}, ${seconds} s of busy loops per ratio`);
  console.log('requested  measured  error   CPU(a)  CPU(b)');
  for (const r of [1, 2, 3, 4, 8]) {
    await rt.updateLimits(ves[1]!.uid, { cpuShares: 1000 * r, cpuset: cpu });
    const sink = new PassThrough().resume();
    const burns = ves.map((c) => rt.exec(c.uid, ['timeout', String(seconds + 1), 'sh', '-c', 'while :; do :; done'], { tty: false, stdin: 'ignore', stdout: sink, stderr: sink }).catch(() => 0));
    await sleep(500);
    const use = async () => Promise.all(ves.map(async (c, i) => (await rt.readUsage(c.uid, pids[i])).cpu.usageUs));
    const a = await use();
    const t0 = performance.now();
    await sleep(seconds * 1000 - 500);
    const b = await use();
    const wall = (performance.now() - t0) * 1000;
    await Promise.all(burns);
    const ua = (b[0]! - a[0]!) / wall;
    const ub = (b[1]! - a[1]!) / wall;
    const measured = ub / ua;
    console.log(`${`1:${r}`.padEnd(9)}  ${`1:${measured.toFixed(2)}`.padEnd(8)}  ${(((measured - r) / r) * 100).toFixed(1).padStart(5)}%  ${ua.toFixed(3)}   ${ub.toFixed(3)}`);
  }
} finally {
  for (const c of ves) await rt.destroy(c.uid, { timeoutMs: 3000 }).catch(() => undefined);
  await teardownNode({ bridge });
  rmSync(stateDir, { recursive: true, force: true });
}
