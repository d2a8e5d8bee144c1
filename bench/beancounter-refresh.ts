// Benchmark: the agent CPU one beancounter refresh pass costs for 200 VEs (target < 50 ms),
// through the real UsageReader, BeancounterRefresher and BeancounterMetrics. What is real and
// what is a fixture is printed with the figures:
// * cgroup counters: real cgroup v1 directories (memory, cpu, cpuacct, pids, blkio; empty, made
//   under a unique parent and removed after) when run as root on a v1 host, else fixture trees
//   laid out as the kernel has them (`--fixture` forces those); the limit files among them are
//   re-read every 10 s (LIMITS_MAX_AGE_MS: nobody calls readLimits here), like the disk figures;
// * fds and netns: 3 real processes per VE, counted through the real /proc: its own init
//   (`sleep`, in its own network namespace when root: the netns files are per VE, as on a real
//   node) and 2 sleepers shared by every VE; each VE's fds recounted every 10 s (FD_MAX_AGE_MS,
//   each VE at its own point of the interval), its netns files read every pass;
// * disk: the real disk-usage path (disk.json record + mount check) on unmounted fixture disks.
// The clock the refresher sees advances 2 s per pass (its default interval). Prints the CPU time
// (user+system) of each pass, median and mean, and wall time; asserts nothing.
// `node dist/bench/beancounter-refresh.js [ves] [rounds] [--fixture]`.

import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { VirtualEnvironment } from '../src/api/types.js';
import { silentLogger } from '../src/core/logger.js';
import type { ResourceClient } from '../src/core/resource-client.js';
import { BeancounterMetrics } from '../src/node-agent/metrics.js';
import { BeancounterRefresher } from '../src/node-agent/beancounters.js';
import { CgroupV1 } from '../src/runtime/cgroup-v1.js';
import { detectCgroupVersion, type CgroupReader } from '../src/runtime/cgroup.js';
import { diskPaths, diskUsageOf } from '../src/runtime/disk-image.js';
import { cgroupPath } from '../src/runtime/names.js';
import { UsageReader } from '../src/runtime/usage.js';
import type { VERuntime } from '../src/runtime/types.js';

const args = process.argv.slice(2).filter((a) => !a.startsWith('--'));
const count = Number(args[0] ?? 200);
const rounds = Number(args[1] ?? 15);
const root = mkdtempSync(join(tmpdir(), 'kvz-bench-bc-'));
const isRoot = process.getuid?.() === 0;
const realCgroups = isRoot && !process.argv.includes('--fixture') && detectCgroupVersion() === 'v1';
const CONTROLLERS = ['memory', 'cpu', 'cpuacct', 'pids', 'blkio'];
const parent = `/kvz-bench-bc-${process.pid}`;

function write(path: string, text: string): void {
  mkdirSync(join(path, '..'), { recursive: true });
  writeFileSync(path, text);
}

// Long sleepers stand for a VE's processes: one init per VE (in its own netns when we may make
// one) and two more shared by all.
const sleeper = (): ChildProcess => (isRoot ? spawn('unshare', ['--net', 'sleep', '600'], { stdio: 'ignore' }) : spawn('sleep', ['600'], { stdio: 'ignore' }));
const sleepers: ChildProcess[] = [sleeper(), sleeper()];
const inits = Array.from({ length: count }, () => sleeper());
sleepers.push(...inits);
const shared = [sleepers[0]!.pid!, sleepers[1]!.pid!];
const procsOf = (i: number) => [inits[i]!.pid!, ...shared];
// Every sleeper set up (unshare made its netns and exec'd sleep) before measuring: 200 netns
// being made on the other CPU would be measured too.
for (const deadline = Date.now() + 10_000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 50))) {
  if (sleepers.every((c) => c.exitCode !== null || readFileSync(`/proc/${c.pid}/comm`, 'utf8').trim() === 'sleep')) break;
}

const cgRoot = realCgroups ? '/sys/fs/cgroup' : join(root, 'cg');
const ves: VirtualEnvironment[] = [];
const made: string[] = [];
for (let i = 0; i < count; i++) {
  // The cgroup path takes the uid's first 12 hex digits: vary those, or every VE shares one cgroup.
  const uid = `${i.toString(16).padStart(8, '0')}-0000-4000-8000-000000000000`;
  const p = `${parent}${cgroupPath(uid, '')}`;
  if (realCgroups) {
    for (const c of CONTROLLERS) {
      mkdirSync(join(cgRoot, c, p), { recursive: true });
      made.push(join(cgRoot, c, p));
    }
    writeFileSync(join(cgRoot, 'memory', p, 'memory.limit_in_bytes'), String(256 << 20));
    writeFileSync(join(cgRoot, 'pids', p, 'pids.max'), '100');
  } else {
    const f = (c: string, n: string, v: string) => write(join(cgRoot, c, p, n), `${v}\n`);
    f('memory', 'memory.usage_in_bytes', String(20 << 20));
    f('memory', 'memory.max_usage_in_bytes', String(30 << 20));
    f('memory', 'memory.limit_in_bytes', String(256 << 20));
    f('memory', 'memory.failcnt', '0');
    f('memory', 'memory.oom_control', 'oom_kill_disable 0\nunder_oom 0\noom_kill 0');
    f('memory', 'memory.memsw.usage_in_bytes', String(20 << 20));
    f('memory', 'memory.memsw.max_usage_in_bytes', String(30 << 20));
    f('memory', 'memory.memsw.limit_in_bytes', String(256 << 20));
    f('memory', 'memory.memsw.failcnt', '0');
    f('pids', 'pids.current', '3');
    f('pids', 'pids.max', '100');
    f('pids', 'pids.events', 'max 0');
    f('pids', 'cgroup.procs', procsOf(i).join('\n'));
    f('cpuacct', 'cpuacct.usage', String(i * 1_000_000));
    f('cpu', 'cpu.stat', 'nr_periods 0\nnr_throttled 0\nthrottled_time 0');
    f('blkio', 'blkio.throttle.io_service_bytes_recursive', '7:1 Read 0\n7:1 Write 4096\nTotal 4096');
    f('blkio', 'blkio.throttle.io_serviced_recursive', '7:1 Read 0\n7:1 Write 1\nTotal 1');
  }
  write(diskPaths(join(root, 'ves', uid)).record, JSON.stringify({ sizeBytes: 2 << 30, inodes: 131072 }));
  ves.push({ apiVersion: 'kubevz.io/v1alpha1', kind: 'VirtualEnvironment', metadata: { name: `ve${i}`, namespace: 'default', uid }, spec: { template: 'busybox', resources: { processes: 100, memory: { limit: '256Mi' } } }, status: { phase: 'Running', initPid: inits[i]!.pid! } });
}

const v1 = new CgroupV1(cgRoot);
// Real cgroups here are empty: the sleepers stand in as their processes.
const procsByPath = new Map(ves.map((ve, i) => [`${parent}${cgroupPath(ve.metadata.uid!, '')}`, procsOf(i)]));
const cgroup: CgroupReader = realCgroups ? Object.assign(Object.create(v1) as CgroupV1, { readUsage: async (path: string, o?: { initPid?: number }) => ({ ...(await v1.readUsage(path, o)), procs: procsByPath.get(path)! }) }) : v1;
const reader = new UsageReader(cgroup, '/proc');
const runtime = {
  readUsage: (uid: string, pid?: number) => reader.read({ cgroupPath: `${parent}${cgroupPath(uid, '')}`, pid }),
  diskUsage: (uid: string) => diskUsageOf(diskPaths(join(root, 'ves', uid))),
} as unknown as VERuntime;
let writes = 0;
const client = { patchStatus: async () => (writes++, {}) } as unknown as ResourceClient<VirtualEnvironment>;
let clock = 0;
const refresher = new BeancounterRefresher({ runtime, client, ves: () => ves, log: silentLogger, metrics: new BeancounterMetrics(), minPublishMs: 0, now: () => clock });

const cpu: number[] = [];
const wall: number[] = [];
try {
  for (let r = 0; r < rounds; r++) {
    clock += 2000;
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    const res = await refresher.refresh();
    wall.push(performance.now() - t0);
    const c = process.cpuUsage(c0);
    cpu.push((c.user + c.system) / 1000);
    if (res.failed) throw new Error(`${res.failed} VEs failed to read`);
  }
} finally {
  for (const c of sleepers) c.kill('SIGKILL');
  for (const d of made.reverse()) rmdirSync(d);
  if (realCgroups) for (const c of CONTROLLERS) if (existsSync(join(cgRoot, c, parent))) rmdirSync(join(cgRoot, c, parent));
  rmSync(root, { recursive: true, force: true });
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const steady = cpu.slice(1);
const mean = steady.reduce((a, b) => a + b, 0) / steady.length;
console.log(`beancounter refresh, ${count} VEs, ${rounds} passes; cgroup counters: ${realCgroups ? 'real v1 cgroups (empty)' : 'v1 fixture trees'}; fds and netns: 3 real processes per VE (own init${isRoot ? ' in its own netns' : ''}, 2 shared); disk: unmounted fixture disks (read every 5th pass)`);
console.log(`  agent CPU per pass: median ${median(cpu).toFixed(1)} ms, mean after the first ${mean.toFixed(1)} ms (first ${cpu[0]!.toFixed(1)} ms), ${(median(cpu) / count).toFixed(3)} ms per VE`);
console.log(`  wall per pass:      median ${median(wall).toFixed(1)} ms`);
console.log(`  target 50 ms CPU:   ${(median(cpu) / 50).toFixed(2)}× of target; status writes ${writes} (${count} on the first pass, then only changed rows)`);
