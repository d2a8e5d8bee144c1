// Benchmark: creating a VE from a cached Debian template until it is running (the agent's Ready:
// disk image, overlay over the shared tree, netns, runc), and until its sysvinit reached runlevel
// 2, beside copying the template tree with `cp -a` (what LXC's dir backend does) in the same run.
// Prints medians and the ratio; asserts nothing (shared, noisy machines).
// Root: `node dist/bench/debian-create.js [--rounds N] [--state-dir DIR]` — the template is the
// shipped manifests/examples/vet-debian-12-sysvinit.yaml, built from the node's mirror on first
// use (minutes); pass a kept --state-dir to reuse the cache between runs.

import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { parseArgs, promisify } from 'node:util';
import { parse as parseYaml } from 'yaml';
import type { VETemplateSpec } from '../src/api/index.js';
import { silentLogger, type Logger } from '../src/core/logger.js';
import { recipeFromSpec } from '../src/node-agent/template-reconciler.js';
import { createRuntime, teardownNode, type VERuntime } from '../src/runtime/index.js';

const run = promisify(execFile);
const { values } = parseArgs({ options: { rounds: { type: 'string', default: '7' }, 'state-dir': { type: 'string' } } });
const rounds = Number(values.rounds);
const keep = values['state-dir'];
const stateDir = keep ?? mkdtempSync(join(tmpdir(), 'kvz-bench-deb-'));
mkdirSync(stateDir, { recursive: true });
const id = process.pid.toString(36);
const bridge = `kvzbd${id}`.slice(0, 15);
const net = 100 + (process.pid % 100);

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

async function runlevel(rt: VERuntime, uid: string): Promise<string> {
  const out = new PassThrough();
  const chunks: Buffer[] = [];
  out.on('data', (c: Buffer) => chunks.push(c));
  await rt.exec(uid, ['runlevel'], { tty: false, stdin: 'ignore', stdout: out, stderr: out }).catch(() => 1);
  return Buffer.concat(chunks).toString('utf8');
}

const repo = join(import.meta.dirname, '..', '..');
const example = parseYaml(readFileSync(join(repo, 'manifests/examples/vet-debian-12-sysvinit.yaml'), 'utf8')) as { metadata: { name: string }; spec: VETemplateSpec };
// The runtime logs one line per create with its step timings (`ms`): keep them for the breakdown.
const steps: Record<string, number[]> = {};
const stepLogger: Logger = {
  ...silentLogger,
  info(obj) {
    const ms = typeof obj === 'object' ? (obj as { ms?: Record<string, number> }).ms : undefined;
    if (ms && 'bundle' in ms) for (const [k, v] of Object.entries(ms)) (steps[k] ??= []).push(v);
  },
  child: () => stepLogger,
};
const rt = createRuntime({ stateDir, bridge: { name: bridge, subnet: `10.214.${net}.0/24` }, log: stepLogger });
const uids: string[] = [];
try {
  const b0 = performance.now();
  const info = await rt.ensureTemplate(example.metadata.name, recipeFromSpec(example.metadata.name, example.spec));
  console.log(`template ${example.metadata.name}: ${(info.unpackedBytes / 1024 ** 2).toFixed(0)} MiB unpacked (ready in ${Math.round(performance.now() - b0)} ms)`);
  const ready: number[] = [];
  const booted: number[] = [];
  const copy: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const uid = randomUUID();
    uids.push(uid);
    const t0 = performance.now();
    await rt.ensureRunning({ uid, name: `bench/deb-${id}-${i}`, hostname: `deb-${i}`, template: example.metadata.name, addresses: [`10.214.${net}.${10 + i}/24`], limits: { memoryBytes: 256 * 1024 ** 2, pids: 512 } });
    ready.push(performance.now() - t0);
    while (!/\b2$/m.test((await runlevel(rt, uid)).trim())) await new Promise((r) => setTimeout(r, 20));
    booted.push(performance.now() - t0);
    await rt.destroy(uid, { timeoutMs: 10_000 });
    uids.pop();

    const target = join(stateDir, `copy-${i}`);
    const c0 = performance.now();
    await run('cp', ['-a', info.rootfs, target]);
    copy.push(performance.now() - c0);
    rmSync(target, { recursive: true, force: true });
  }
  const f = (ms: number) => `${ms.toFixed(0)} ms`;
  console.log(`rounds ${rounds}, medians (2Gi image, own user namespace, bridged address)`);
  console.log(`  kubevz create → running (Ready):   ${f(median(ready))}`);
  console.log(`  kubevz create → runlevel 2:        ${f(median(booted))}`);
  console.log(`  cp -a of the template tree (LXC dir backend): ${f(median(copy))}`);
  console.log(`  create steps (median ms): ${Object.entries(steps).map(([k, v]) => `${k} ${median(v)}`).join(', ')}`);
  console.log(`  ratio copy / create: ${(median(copy) / median(ready)).toFixed(1)}x (target ≥ 5x; create target < 1000 ms)`);
} finally {
  for (const uid of uids) await rt.destroy(uid, { timeoutMs: 10_000 }).catch(() => undefined);
  await teardownNode({ bridge });
  if (!keep) rmSync(stateDir, { recursive: true, force: true });
}
