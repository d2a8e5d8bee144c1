// Benchmark: time from applying a busybox VE to its Ready condition, through the whole stack
// (API server, controller, node agent, runtime), beside the same VE made by hand with raw
// runc and ip in the same run. Prints medians and their ratio; asserts nothing (machines are
// shared and noisy). Run as root: `node dist/bench/apply-to-ready.js [rounds]`.

import { execFile, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { VE_RESOURCE, type VirtualEnvironment } from '../src/api/types.js';
import { startStack } from '../src/cli/up.js';
import { pino } from 'pino';
import { silentLogger, type Logger } from '../src/core/logger.js';
import { loadKubeConfig, makeResourceClient } from '../src/core/kube-client.js';
import { createRuntime, teardownNode } from '../src/runtime/index.js';

const run = promisify(execFile);
const rounds = Number(process.argv[2] ?? 7);
const id = process.pid.toString(36);
const net = 200 + (process.pid % 50);
const subnet = `10.213.${net}.0/24`;

/** A detached container keeps its stdio: give it /dev/null, or the caller waits on the pipes forever. */
function runDetached(cmd: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: 'ignore' });
    p.on('error', reject);
    p.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${cmd} ${args.join(' ')} exited with ${code}`))));
  });
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

async function viaKubevz(stateDir: string, bridge: string): Promise<number[]> {
  const log = process.env.KVZ_BENCH_DEBUG ? (pino({ level: 'debug' }) as unknown as Logger) : silentLogger;
  const stack = await startStack({ stateDir, host: '127.0.0.1', port: 0, nodeName: `bench-${id}`, bridge, subnet }, log);
  const ves = makeResourceClient<VirtualEnvironment>(loadKubeConfig(stack.kubeconfigPath), { ...VE_RESOURCE, namespaced: true }, silentLogger);
  const times: number[] = [];
  try {
    // Warm-up: builds the template cache once, as a node would have it.
    for (let i = 0; i <= rounds; i++) {
      const name = `bench-${id}-${i}`;
      const ready = new Promise<number>((resolve) => {
        const informer = ves.inform({ namespace: 'default' }, (_t, o) => {
          if (o.metadata.name === name && o.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True')) {
            const at = performance.now();
            void informer.then((h) => h.stop());
            resolve(at);
          }
        });
      });
      await new Promise((r) => setTimeout(r, 50));
      const start = performance.now();
      await ves.create({ apiVersion: 'kubevz.io/v1alpha1', kind: 'VirtualEnvironment', metadata: { name, namespace: 'default' }, spec: { template: 'busybox', network: { addresses: [`10.213.${net}.${20 + i}/24`] }, resources: { memory: { limit: '64Mi' }, processes: 64 } } } as VirtualEnvironment);
      const end = await ready;
      if (i > 0) times.push(end - start);
      await ves.delete(name, 'default');
      while (await ves.get(name, 'default')) await new Promise((r) => setTimeout(r, 50));
    }
  } finally {
    await stack.stop();
  }
  return times;
}

/** The same VE by hand: netns, veth on the bridge, address, overlay root, runc run -d. */
async function byHand(stateDir: string, bridge: string, lower: string): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const name = `kvzh${id}${i}`.slice(0, 12);
    const dir = join(stateDir, 'byhand', name);
    for (const d of ['upper', 'work', 'rootfs']) mkdirSync(join(dir, d), { recursive: true });
    await run('runc', ['spec'], { cwd: dir });
    const spec = JSON.parse((await run('cat', [join(dir, 'config.json')])).stdout);
    spec.process.terminal = false;
    spec.process.args = ['/sbin/init'];
    spec.root = { path: join(dir, 'rootfs'), readonly: false };
    spec.hostname = name;
    spec.linux.cgroupsPath = `/kubevz-bench/${name}`;
    spec.linux.resources = { memory: { limit: 64 << 20 }, pids: { limit: 64 } };
    spec.linux.namespaces = spec.linux.namespaces.filter((n: { type: string }) => n.type !== 'network').concat([{ type: 'network', path: `/run/netns/${name}` }]);
    writeFileSync(join(dir, 'config.json'), JSON.stringify(spec));
    const runcRoot = join(stateDir, 'byhand-runc');
    try {
      const start = performance.now();
      await run('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${lower},upperdir=${join(dir, 'upper')},workdir=${join(dir, 'work')}`, join(dir, 'rootfs')]);
      await run('ip', ['netns', 'add', name]);
      await run('ip', ['link', 'add', `${name}h`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', name]);
      await run('ip', ['link', 'set', `${name}h`, 'master', bridge, 'up']);
      await run('ip', ['-n', name, 'addr', 'add', `10.213.${net}.${100 + i}/24`, 'dev', 'eth0']);
      await run('ip', ['-n', name, 'link', 'set', 'eth0', 'up']);
      await run('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
      await run('ip', ['-n', name, 'route', 'add', 'default', 'via', `10.213.${net}.1`]);
      await runDetached('runc', ['--root', runcRoot, 'run', '-d', '--bundle', dir, name]);
      times.push(performance.now() - start);
    } finally {
      // Undo every step even when one failed, so an interrupted run leaves nothing behind.
      await run('runc', ['--root', runcRoot, 'kill', name, 'KILL']).catch(() => {});
      for (let t = 0; t < 100; t++) {
        const st = await run('runc', ['--root', runcRoot, 'state', name]).then((r) => JSON.parse(r.stdout).status as string, () => 'gone');
        if (st !== 'running') break;
        await new Promise((r) => setTimeout(r, 10));
      }
      await run('runc', ['--root', runcRoot, 'delete', '-f', name]).catch(() => {});
      await run('ip', ['link', 'del', `${name}h`]).catch(() => {});
      await run('ip', ['netns', 'del', name]).catch(() => {});
      await run('umount', [join(dir, 'rootfs')]).catch(() => {});
    }
  }
  await run('rmdir', ['/sys/fs/cgroup/memory/kubevz-bench', '/sys/fs/cgroup/pids/kubevz-bench']).catch(() => {});
  return times;
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('run as root: the benchmark creates VEs, netns and mounts');
  const stateDir = mkdtempSync(join(tmpdir(), 'kvz-bench-'));
  const bridge = `kvzbb${id}`.slice(0, 15);
  try {
    const kvz = await viaKubevz(stateDir, bridge);
    const lower = (await createRuntime({ stateDir, bridge: { name: bridge, subnet }, log: silentLogger }).ensureTemplate('busybox')).rootfs;
    const hand = await byHand(stateDir, bridge, lower);
    const mk = median(kvz);
    const mh = median(hand);
    console.log(`apply → Ready (kubevz, ${kvz.length} rounds): median ${mk.toFixed(0)} ms  [${kvz.map((t) => t.toFixed(0)).join(', ')}]`);
    console.log(`by hand (ip + overlay + runc run -d, ${hand.length} rounds): median ${mh.toFixed(0)} ms  [${hand.map((t) => t.toFixed(0)).join(', ')}]`);
    console.log(`ratio kubevz / by hand: ${(mk / mh).toFixed(2)}x   (targets: median < 500 ms, ratio < 5x)`);
  } finally {
    await teardownNode({ bridge }).catch(() => {});
    rmSync(stateDir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
