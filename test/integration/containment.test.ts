// Containment on the real kernel (root, runc, cgroup v1 here): a VE's memory hog, fork bomb,
// CPU appetite and disk reads and writes (bandwidth and IOPS) stay inside its own limits while neighbours and the host carry
// on, and every limit changes live while init keeps its PID. Each test prints what it measured.
// Every host object carries a unique suffix; `after` removes the VEs and the bridge.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test, type TestContext } from 'node:test';
import { silentLogger } from '../../src/core/logger.js';
import { CgroupV1, cgroupPath, createRuntime, detectCgroupVersion, teardownNode, type VEConfig, type VELimits, type VERuntime } from '../../src/runtime/index.js';
import { missingPrereqs, requirePrereqs, uniqueSuffix } from '../helpers/prereq.js';
import { execCapture } from '../helpers/ve-host.js';

const prereqs = { root: true, binaries: ['runc', 'ip'] };
const skip = missingPrereqs(prereqs).length > 0;
const suffix = uniqueSuffix();
const bridge = `kvzq${suffix}`.slice(0, 15);
const net = 230 + (process.pid % 25);
const subnet = `10.213.${net}.0/24`;
const stateDir = skip ? '' : mkdtempSync(join(tmpdir(), 'kvz-contain-'));
const stop = { timeoutMs: 3_000 };
const created: string[] = [];
let rt: VERuntime;
let nextHost = 10;

before(() => {
  if (!skip) rt = createRuntime({ stateDir, bridge: { name: bridge, subnet }, log: silentLogger });
});

after(async () => {
  if (skip) return;
  for (const uid of created) await rt.destroy(uid, stop).catch(() => undefined);
  await teardownNode({ bridge });
  rmSync(stateDir, { recursive: true, force: true });
});

function guard(t: TestContext): boolean {
  return requirePrereqs(t, prereqs);
}

async function startVE(name: string, limits: VELimits): Promise<{ uid: string; pid: number; config: VEConfig }> {
  const uid = randomUUID();
  const config: VEConfig = { uid, name: `test/${name}-${suffix}`, hostname: `${name}-${suffix}`.slice(0, 60), template: 'busybox', addresses: [`10.213.${net}.${nextHost++}/24`], limits };
  created.push(uid);
  await rt.ensureRunning(config);
  const st = await rt.inspect(uid);
  assert.equal(st.state, 'running');
  return { uid, pid: st.pid!, config };
}

function execOut(uid: string, argv: string[]): Promise<{ code: number; out: string }> {
  return execCapture(rt, uid, argv);
}

function cg(controller: string, uid: string, file: string): string {
  return readFileSync(`/sys/fs/cgroup/${controller}${cgroupPath(uid)}/${file}`, 'utf8').trim();
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function cpuSeconds(uid: string, pid: number): Promise<number> {
  return (await rt.readUsage(uid, pid)).cpu.usageUs / 1e6;
}

/** CPU seconds each VE used per wall second between two readings, after a warm-up. */
async function measureCpu(ves: { uid: string; pid: number }[], warmupMs: number, windowMs: number): Promise<number[]> {
  await sleep(warmupMs);
  const a = await Promise.all(ves.map((v) => cpuSeconds(v.uid, v.pid)));
  const t0 = performance.now();
  await sleep(windowMs);
  const b = await Promise.all(ves.map((v) => cpuSeconds(v.uid, v.pid)));
  const secs = (performance.now() - t0) / 1000;
  return b.map((x, i) => (x - a[i]!) / secs);
}

/** A CPU-bound loop inside the VE for `seconds` (busybox timeout ends it). */
function burn(uid: string, seconds: number): Promise<unknown> {
  return execOut(uid, ['timeout', String(seconds), 'sh', '-c', 'while :; do :; done']).catch(() => undefined);
}

test('a memory hog is OOM-killed inside its own VE; the neighbour keeps running', async (t) => {
  if (!guard(t)) return;
  const hog = await startVE('hog', { memoryBytes: 32 << 20, pids: 64 });
  const neighbour = await startVE('nbr', { memoryBytes: 64 << 20, pids: 64 });
  const before = await rt.readUsage(hog.uid, hog.pid);
  const t0 = performance.now();
  const { code } = await execOut(hog.uid, ['tail', '/dev/zero']);
  const ms = Math.round(performance.now() - t0);
  const afterUsage = await rt.readUsage(hog.uid, hog.pid);
  const raw = ['memory.failcnt', 'memory.memsw.failcnt'].map((f) => `${f} ${existsSync(`/sys/fs/cgroup/memory${cgroupPath(hog.uid)}/${f}`) ? cg('memory', hog.uid, f) : 'absent'}`).join(', ');
  t.diagnostic(`hog: exit ${code} after ${ms} ms; memory failcnt ${before.memory.failcnt} → ${afterUsage.memory.failcnt} (kernel files: ${raw}), OOM kills ${before.memory.oomKills} → ${afterUsage.memory.oomKills}, peak ${(afterUsage.memory.maxheld ?? 0) >> 20} MiB of 32 MiB`);
  assert.equal(code, 137, 'tail was SIGKILLed by the OOM killer');
  assert.ok(afterUsage.memory.oomKills > before.memory.oomKills, 'the OOM kill is counted');
  assert.ok(afterUsage.memory.failcnt > before.memory.failcnt, 'failcnt counts the refusal (at least the OOM kill)');
  assert.ok((afterUsage.memory.maxheld ?? 0) <= 32 << 20, 'never above the limit');
  assert.equal((await rt.inspect(hog.uid)).pid, hog.pid, "the hog VE's init survives");
  const n = await rt.inspect(neighbour.uid);
  assert.equal(n.state, 'running');
  assert.equal(n.pid, neighbour.pid, "the neighbour's init was not touched");
  assert.equal((await rt.readUsage(neighbour.uid, neighbour.pid)).memory.oomKills, 0);
  assert.equal((await execOut(neighbour.uid, ['true'])).code, 0, 'the neighbour still runs commands');
});

test('a fork bomb hits its processes limit; the host and the neighbour still fork', async (t) => {
  if (!guard(t)) return;
  const bomb = await startVE('bomb', { pids: 20, memoryBytes: 128 << 20 });
  const neighbour = await startVE('nbr2', { pids: 64 });
  const run = execOut(bomb.uid, ['sh', '-c', 'i=0; while [ $i -lt 200 ]; do sleep 3 & i=$((i+1)); done; wait']);
  let peak = 0;
  const deadline = Date.now() + 1500;
  while (Date.now() < deadline) {
    peak = Math.max(peak, Number(cg('pids', bomb.uid, 'pids.current')));
    await sleep(50);
  }
  const usage = await rt.readUsage(bomb.uid, bomb.pid);
  const host = spawnSync('sh', ['-c', 'for i in 1 2 3 4 5 6 7 8 9 10; do /bin/true & done; wait; echo ok'], { encoding: 'utf8' });
  const nbr = await execOut(neighbour.uid, ['sh', '-c', 'for i in 1 2 3 4 5 6 7 8 9 10; do true & done; wait; echo ok']);
  t.diagnostic(`fork bomb: peak ${peak} processes (limit 20), pids.events max ${usage.processes.failcnt}; host fork ${host.stdout.trim()}, neighbour fork ${nbr.out.trim()}`);
  assert.ok(peak <= 20, `pids.current never above the limit (${peak})`);
  assert.ok(usage.processes.failcnt > 0, 'refused forks are counted');
  assert.equal(host.stdout.trim(), 'ok');
  assert.equal(nbr.out.trim(), 'ok');
  await run;
});

test('cpu units 1000 vs 3000 on one shared CPU share about 1:3', async (t) => {
  if (!guard(t)) return;
  const cpu = String(availableParallelism() - 1);
  const a = await startVE('cpua', { cpuShares: 1000, cpuset: cpu });
  const b = await startVE('cpub', { cpuShares: 3000, cpuset: cpu });
  const burns = [burn(a.uid, 4), burn(b.uid, 4)];
  const [ua, ub] = await measureCpu([a, b], 700, 2500);
  await Promise.all(burns);
  const ratio = ub! / ua!;
  t.diagnostic(`CPU ${cpu}: units 1000 → ${ua!.toFixed(3)} CPU, units 3000 → ${ub!.toFixed(3)} CPU; ratio ${ratio.toFixed(2)} (requested 3.00); sum ${(ua! + ub!).toFixed(2)}`);
  // Other load on a shared test machine may take part of the CPU; the ratio is what matters.
  assert.ok(ua! > 0.05 && ub! > 0.15, 'both were busy on the shared CPU');
  assert.ok(ratio > 2.2 && ratio < 4.2, `ratio ${ratio.toFixed(2)} is about 3`);
});

test('cpu.limit 50% never takes more than half a CPU', async (t) => {
  if (!guard(t)) return;
  const v = await startVE('cap', { cpuQuotaUs: 50_000, cpuPeriodUs: 100_000 });
  const before = await rt.readUsage(v.uid, v.pid);
  const burns = [burn(v.uid, 3), burn(v.uid, 3)];
  const [used] = await measureCpu([v], 500, 2000);
  await Promise.all(burns);
  const afterUsage = await rt.readUsage(v.uid, v.pid);
  const throttled = afterUsage.cpu.throttledPeriods - before.cpu.throttledPeriods;
  t.diagnostic(`two busy loops under cpu.limit 50%: ${(used! * 100).toFixed(1)}% of one CPU; throttled periods +${throttled}`);
  assert.ok(used! <= 0.56, `at most ~half a CPU (${used})`);
  assert.ok(used! >= 0.35, `but it did run (${used})`);
  assert.ok(throttled > 0, 'throttling is counted (cpu failcnt)');
});

test('write throughput is throttled to writeBps (O_DIRECT inside the VE)', async (t) => {
  if (!guard(t)) return;
  const v = await startVE('io', {});
  const dd = async () => {
    const t0 = performance.now();
    const r = await execOut(v.uid, ['dd', 'if=/dev/zero', 'of=/ddtest', 'bs=256k', 'count=12', 'oflag=direct']);
    const secs = (performance.now() - t0) / 1000;
    return { code: r.code, out: r.out, mibPerSec: 3 / secs, secs };
  };
  const free = await dd();
  const limit = 1 << 20;
  assert.equal(await rt.updateLimits(v.uid, { writeBps: limit }), 'updated');
  const dev = cg('blkio', v.uid, 'blkio.throttle.write_bps_device');
  const slow = await dd();
  t.diagnostic(`dd 3 MiB O_DIRECT: unthrottled ${free.mibPerSec.toFixed(1)} MiB/s; writeBps 1Mi (${dev}) → ${slow.mibPerSec.toFixed(2)} MiB/s in ${slow.secs.toFixed(2)} s`);
  assert.equal(free.code, 0, free.out);
  assert.equal(slow.code, 0, slow.out);
  assert.match(dev, new RegExp(`^\\d+:\\d+ ${limit}$`), 'the throttle names the VE disk device');
  assert.ok(slow.mibPerSec < 1.35, `throttled to about 1 MiB/s (${slow.mibPerSec.toFixed(2)})`);
  assert.ok(slow.mibPerSec < free.mibPerSec / 2, 'clearly slower than unthrottled');
});

/** One direction of a VE's blkio counters on its disk device ("7:2"): requests and bytes so far. */
function blkioCount(uid: string, dev: string, dir: 'Read' | 'Write'): { ops: number; bytes: number } {
  const pick = (file: string) => Number(new RegExp(`^${dev} ${dir} (\\d+)$`, 'm').exec(cg('blkio', uid, file))?.[1] ?? 0);
  return { ops: pick('blkio.throttle.io_serviced'), bytes: pick('blkio.throttle.io_service_bytes') };
}

/**
 * Runs busybox dd inside the VE and times it there (/proc/uptime before and after, 10 ms
 * ticks), so runc exec's start-up is not part of the rate. The floor of one tick can only
 * understate a fast unthrottled rate, which keeps "clearly below unthrottled" conservative.
 */
async function ddSeconds(uid: string, ddArgs: string[]): Promise<number> {
  const r = await execOut(uid, ['sh', '-c', `cat /proc/uptime; dd ${ddArgs.join(' ')} 2>&1 >/dev/null || echo "dd failed $?"; cat /proc/uptime`]);
  const t = [...r.out.matchAll(/^(\d+\.\d+) \d+\.\d+$/gm)].map((m) => Number(m[1]));
  assert.ok(r.code === 0 && !/dd failed/.test(r.out) && t.length === 2, `dd ${ddArgs.join(' ')}: ${r.out}`);
  return Math.max(t[1]! - t[0]!, 0.01);
}

test('read throughput is throttled to readBps (O_DIRECT reads inside the VE)', async (t) => {
  if (!guard(t)) return;
  const v = await startVE('rio', {});
  // 16 MiB on the VE's disk, written with O_DIRECT so no page of it is cached in the VE's fs.
  await ddSeconds(v.uid, ['if=/dev/zero', 'of=/rtest', 'bs=1M', 'count=16', 'oflag=direct']);
  const freeSecs = await ddSeconds(v.uid, ['if=/rtest', 'of=/dev/null', 'bs=256k', 'count=64', 'iflag=direct']);
  const free = 16 / freeSecs;
  const limit = 2 << 20;
  assert.equal(await rt.updateLimits(v.uid, { readBps: limit }), 'updated');
  const throttle = cg('blkio', v.uid, 'blkio.throttle.read_bps_device');
  const dev = throttle.split(' ')[0]!;
  const before = blkioCount(v.uid, dev, 'Read');
  const secs = await ddSeconds(v.uid, ['if=/rtest', 'of=/dev/null', 'bs=256k', 'count=24', 'iflag=direct']);
  const device = (blkioCount(v.uid, dev, 'Read').bytes - before.bytes) / 2 ** 20;
  const slow = 6 / secs;
  t.diagnostic(`dd O_DIRECT reads: unthrottled ${free.toFixed(1)} MiB/s (16 MiB in ${freeSecs.toFixed(2)} s; 10 ms clock); readBps 2Mi (${throttle}) → ${slow.toFixed(2)} MiB/s (6 MiB in ${secs.toFixed(2)} s), ${(device / secs).toFixed(2)} MiB/s read from ${dev} by the VE's cgroup`);
  assert.match(throttle, new RegExp(`^\\d+:\\d+ ${limit}$`), 'the throttle names the VE disk device');
  assert.ok(slow <= 2 * 1.3, `at most ~2 MiB/s (${slow.toFixed(2)})`);
  assert.ok(device / secs <= 2 * 1.3, `the device saw at most ~2 MiB/s from the VE (${(device / secs).toFixed(2)})`);
  assert.ok(device >= 6, `the reads reached the device, not a cache (${device.toFixed(2)} MiB)`);
  assert.ok(slow < free / 2, 'clearly slower than unthrottled');
});

test('read and write IOPS are throttled to readIops/writeIops, each in its own direction (4 KiB O_DIRECT)', async (t) => {
  if (!guard(t)) return;
  const v = await startVE('iops', {});
  await ddSeconds(v.uid, ['if=/dev/zero', 'of=/itest', 'bs=1M', 'count=8', 'oflag=direct']);
  // Overwrites in place (conv=notrunc): no block allocation, so one 4 KiB request per dd block.
  const reads = (count: number) => ddSeconds(v.uid, ['if=/itest', 'of=/dev/null', 'bs=4k', `count=${count}`, 'iflag=direct']);
  const writes = (count: number) => ddSeconds(v.uid, ['if=/dev/zero', 'of=/itest', 'bs=4k', `count=${count}`, 'oflag=direct', 'conv=notrunc']);
  const freeReadSecs = await reads(2048);
  const freeWriteSecs = await writes(2048);
  const freeRead = 2048 / freeReadSecs;
  const freeWrite = 2048 / freeWriteSecs;
  const limits = { readIops: 60, writeIops: 40 };
  assert.equal(await rt.updateLimits(v.uid, limits), 'updated');
  const throttles = [cg('blkio', v.uid, 'blkio.throttle.read_iops_device'), cg('blkio', v.uid, 'blkio.throttle.write_iops_device')];
  const dev = throttles[0]!.split(' ')[0]!;
  const measure = async (dir: 'Read' | 'Write', count: number, run: (n: number) => Promise<number>) => {
    const before = blkioCount(v.uid, dev, dir).ops;
    const secs = await run(count);
    const ops = blkioCount(v.uid, dev, dir).ops - before;
    return { dd: count / secs, device: ops / secs, ops, secs };
  };
  const r = await measure('Read', 180, reads);
  const w = await measure('Write', 120, writes);
  t.diagnostic(
    `4 KiB O_DIRECT: unthrottled ${Math.round(freeRead)} reads/s, ${Math.round(freeWrite)} writes/s (2048 each in ${freeReadSecs.toFixed(2)} s, ${freeWriteSecs.toFixed(2)} s; 10 ms clock); ` +
      `readIops 60 / writeIops 40 (${throttles.join(', ')}) → ${r.dd.toFixed(1)} reads/s (device ${r.device.toFixed(1)}, ${r.secs.toFixed(2)} s), ` +
      `${w.dd.toFixed(1)} writes/s (device ${w.device.toFixed(1)}, ${w.secs.toFixed(2)} s)`,
  );
  assert.match(throttles[0]!, /^\d+:\d+ 60$/);
  assert.match(throttles[1]!, /^\d+:\d+ 40$/);
  for (const [what, got, limit, free] of [['reads', r, limits.readIops, freeRead], ['writes', w, limits.writeIops, freeWrite]] as const) {
    assert.ok(got.dd <= limit * 1.3, `${what}: at most ~${limit}/s (${got.dd.toFixed(1)})`);
    assert.ok(got.device <= limit * 1.3, `${what}: the device saw at most ~${limit}/s from the VE (${got.device.toFixed(1)})`);
    assert.ok(got.ops >= (what === 'reads' ? 180 : 120), `${what}: every request reached the device (${got.ops})`);
    assert.ok(got.dd < free / 2, `${what}: clearly fewer than unthrottled (${Math.round(free)}/s)`);
  }
});

test('every limit changes live: the cgroup files change while init keeps its PID; openFiles waits for a restart', async (t) => {
  if (!guard(t)) return;
  const cpus = availableParallelism();
  const first: VELimits = { memoryBytes: 64 << 20, swapBytes: 0, memoryGuaranteeBytes: 16 << 20, cpuShares: 500, cpuQuotaUs: 50_000, cpuPeriodUs: 100_000, pids: 50, openFiles: 1024, ioWeight: 200 };
  const v = await startVE('live', first);
  const nofile = () => Number(/^Max open files\s+(\d+)/m.exec(readFileSync(`/proc/${v.pid}/limits`, 'utf8'))?.[1]);
  assert.equal(nofile(), 1024, 'openFiles applied at start');
  const second: VELimits = {
    memoryBytes: 96 << 20, swapBytes: 32 << 20, memoryGuaranteeBytes: 48 << 20, cpuShares: 3000, cpuQuotaUs: 150_000, cpuPeriodUs: 100_000,
    cpuset: cpus > 1 ? '1' : '0', pids: 77, openFiles: 2048, ioWeight: 700, readBps: 5 << 20, writeBps: 3 << 20, readIops: 300, writeIops: 200,
  };
  const t0 = performance.now();
  assert.equal(await rt.updateLimits(v.uid, second), 'updated');
  t.diagnostic(`live update of 13 fields: ${Math.round(performance.now() - t0)} ms`);
  const files = {
    'memory.limit_in_bytes': cg('memory', v.uid, 'memory.limit_in_bytes'),
    'memory.memsw.limit_in_bytes': cg('memory', v.uid, 'memory.memsw.limit_in_bytes'),
    'memory.soft_limit_in_bytes': cg('memory', v.uid, 'memory.soft_limit_in_bytes'),
    'cpu.shares': cg('cpu', v.uid, 'cpu.shares'),
    'cpu.cfs_quota_us': cg('cpu', v.uid, 'cpu.cfs_quota_us'),
    'cpuset.cpus': cg('cpuset', v.uid, 'cpuset.cpus'),
    'pids.max': cg('pids', v.uid, 'pids.max'),
    'blkio.bfq.weight': cg('blkio', v.uid, 'blkio.bfq.weight'),
    'blkio.throttle.read_bps_device': cg('blkio', v.uid, 'blkio.throttle.read_bps_device'),
    'blkio.throttle.write_bps_device': cg('blkio', v.uid, 'blkio.throttle.write_bps_device'),
    'blkio.throttle.read_iops_device': cg('blkio', v.uid, 'blkio.throttle.read_iops_device'),
    'blkio.throttle.write_iops_device': cg('blkio', v.uid, 'blkio.throttle.write_iops_device'),
  };
  t.diagnostic(JSON.stringify(files));
  assert.equal(files['memory.limit_in_bytes'], String(96 << 20));
  assert.equal(files['memory.memsw.limit_in_bytes'], String(128 << 20));
  assert.equal(files['memory.soft_limit_in_bytes'], String(48 << 20));
  assert.equal(files['cpu.shares'], '3000');
  assert.equal(files['cpu.cfs_quota_us'], '150000');
  assert.equal(files['cpuset.cpus'], second.cpuset);
  assert.equal(files['pids.max'], '77');
  assert.match(files['blkio.bfq.weight'], /(^|\s)700$/);
  assert.match(files['blkio.throttle.read_bps_device'], new RegExp(` ${5 << 20}$`));
  assert.match(files['blkio.throttle.write_bps_device'], new RegExp(` ${3 << 20}$`));
  assert.match(files['blkio.throttle.read_iops_device'], / 300$/);
  assert.match(files['blkio.throttle.write_iops_device'], / 200$/);
  assert.equal((await rt.inspect(v.uid)).pid, v.pid, 'init kept its PID');
  const read = await rt.readLimits(v.uid);
  assert.deepEqual({ ...read, openFiles: undefined }, { ...second, openFiles: undefined }, 'readLimits reads every live field back');
  assert.equal(read.openFiles, 1024, 'RLIMIT_NOFILE of the running init is unchanged (needs a restart)');

  // Back to fewer limits: cleared fields go back to unlimited/defaults.
  assert.equal(await rt.updateLimits(v.uid, { memoryBytes: 64 << 20, openFiles: 2048 }), 'updated');
  assert.equal(cg('cpuset', v.uid, 'cpuset.cpus'), cpus > 1 ? `0-${cpus - 1}` : '0', 'cpuset widened again');
  assert.equal(cg('blkio', v.uid, 'blkio.throttle.write_bps_device'), '', 'throttle cleared');
  assert.equal(cg('cpu', v.uid, 'cpu.cfs_quota_us'), '-1');
  assert.equal(cg('memory', v.uid, 'memory.soft_limit_in_bytes'), '9223372036854771712');
  assert.equal((await rt.inspect(v.uid)).pid, v.pid);

  // openFiles lands at the next start.
  assert.equal((await rt.readUsage(v.uid, v.pid)).memory.limit, 64 << 20, 'usage read with the counter files kept open');
  assert.equal((await rt.readUsage(v.uid, v.pid)).processes.limit, undefined, 'pids limit cleared');
  await rt.ensureStopped(v.uid, stop);
  await rt.ensureRunning({ ...v.config, limits: { memoryBytes: 64 << 20, openFiles: 2048, pids: 33 } });
  assert.equal((await rt.readLimits(v.uid)).openFiles, 2048, 'applied after the restart');
  // The restart made a new cgroup at the same path: the kept descriptors must not read the old one.
  const pid = (await rt.inspect(v.uid)).pid!;
  const u = await rt.readUsage(v.uid, pid);
  assert.equal(u.processes.limit, 33, 'the new cgroup is read');
  assert.ok(u.processes.held >= 1);
});

test("kept-open counter files on the kernel's cgroupfs: a removed cgroup reads NotFound, a recreated one is read anew", async (t) => {
  if (!guard(t)) return;
  if (detectCgroupVersion() !== 'v1') return t.skip('this check creates v1 cgroups');
  const path = `/kvz-counters-${suffix}`;
  const controllers = ['memory', 'cpu', 'cpuacct', 'pids', 'blkio'];
  const dirs = controllers.map((c) => `/sys/fs/cgroup/${c}${path}`);
  const make = (pids: string) => {
    for (const d of dirs) mkdirSync(d);
    writeFileSync(`/sys/fs/cgroup/pids${path}/pids.max`, pids);
  };
  const remove = () => {
    for (const d of dirs) if (existsSync(d)) rmdirSync(d);
  };
  const ours = () => readdirSync('/proc/self/fd').filter((fd) => {
    try {
      return readlinkSync(`/proc/self/fd/${fd}`).includes(`${path}/`);
    } catch {
      return false;
    }
  }).length;
  const r = new CgroupV1();
  try {
    make('11');
    assert.equal((await r.readUsage(path)).processes.limit, 11);
    const held = ours();
    writeFileSync(`/sys/fs/cgroup/pids${path}/pids.max`, '12');
    await r.readLimits(path); // usage reads cache limits until the agent reads them back (or LIMITS_MAX_AGE_MS)
    assert.equal((await r.readUsage(path)).processes.limit, 12, 'pread at offset 0 sees the new value');
    assert.equal(ours(), held, 'nothing reopened');
    remove(); // rmdir works while we hold descriptors in the directory
    await assert.rejects(r.readUsage(path), (err: Error & { code?: string }) => err.code === 'NotFound');
    assert.equal(ours(), 0, 'the stale descriptors (ENODEV) were closed');
    make('13');
    assert.equal((await r.readUsage(path)).processes.limit, 13, 'the new cgroup at the same path is read');
    t.diagnostic(`${held} counter files kept open per cgroup`);
  } finally {
    r.forget();
    remove();
  }
});
