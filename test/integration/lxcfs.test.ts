// lxcfs with real runc (root): a VE's /proc/meminfo shows its memory limit (user namespace and
// privileged), follows a live change, /proc/cpuinfo and cpu/online follow the CPU quota; a killed
// lxcfs is restarted and put back into running VEs without restarting them; suspend/resume keeps
// the binds; a second runtime on the same state dir adopts the node's lxcfs; teardown leaves no
// mount and no process. Unique names; `after` removes everything.

import assert from 'node:assert/strict';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { silentLogger } from '../../src/core/logger.js';
import { blockDigests, changedBlocks, createRuntime, readBlocks, stopNodeServices, writeBlock, type VEConfig, type VERuntime } from '../../src/runtime/index.js';
import { execCapture, makeVEHost, type VEHost } from '../helpers/ve-host.js';
import { inCI, missingPrereqs } from '../helpers/prereq.js';

const missing = missingPrereqs({ root: true, binaries: ['runc', 'ip', 'busybox', 'lxcfs'] });
if (missing.length && inCI) throw new Error(`prerequisite missing under CI: ${missing.join(', ')}`);
const skip = missing.length ? `needs ${missing.join(', ')}` : false;

const MiB = 1 << 20;
let h: VEHost;
let userns: VEConfig;
let priv: VEConfig;

function lxcfsPid(): number | undefined {
  try {
    const pid = Number(readFileSync(join(h.stateDir, 'lxcfs', 'lxcfs.pid'), 'utf8').trim());
    return pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

function lxcfsMounts(stateDir = h.stateDir): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => l.includes(' - fuse.lxcfs ') && l.includes(`${stateDir}/`));
}

/** Devices (major:minor) of the lxcfs mounts a VE's init sees over its /proc files. */
function veLxcfsDevs(pid: number): string[] {
  return [...new Set(readFileSync(`/proc/${pid}/mountinfo`, 'utf8').split('\n').filter((l) => l.includes(' - fuse.lxcfs ')).map((l) => l.split(' ')[2]!))];
}

async function memTotalKb(uid: string): Promise<number> {
  const r = await h.execOut(uid, ['cat', '/proc/meminfo']);
  assert.equal(r.code, 0, `cat /proc/meminfo: ${r.out}`);
  const m = /^MemTotal:\s+(\d+) kB/m.exec(r.out);
  assert.ok(m, `MemTotal in ${r.out}`);
  return Number(m[1]);
}

async function waitFor(what: string, fn: () => Promise<boolean>, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await fn().catch(() => false))) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function initPid(rt: VERuntime, uid: string): Promise<number | undefined> {
  return (await rt.inspect(uid)).pid;
}

before(async () => {
  if (skip) return;
  h = makeVEHost('lx', 222);
  // The VE's mapped root walks down to its bind sources.
  chmodSync(h.stateDir, 0o711);
  await h.rt.startNodeServices!();
  userns = h.config('lxu', { limits: { memoryBytes: 256 * MiB, pids: 100 } });
  priv = h.config('lxp', { limits: { memoryBytes: 256 * MiB, pids: 100 }, security: { userNamespace: false } });
  await Promise.all([h.rt.ensureRunning(userns), h.rt.ensureRunning(priv)]);
});

after(async () => {
  if (skip || !h) return;
  await h.destroyAll();
  await stopNodeServices({ stateDir: h.stateDir });
  await h.close();
});

test('the node reports lxcfs, run from its state dir', { skip }, async () => {
  const f = (await h.rt.nodeFeatures()).lxcfs;
  assert.equal(f?.available, true, f?.reason);
  const pid = lxcfsPid();
  assert.ok(pid && alive(pid), 'lxcfs runs with its pid recorded in the state dir');
  assert.equal(lxcfsMounts().length, 1, 'one lxcfs mount for this node');
});

test('/proc/meminfo in a VE shows its memory limit: user namespace and privileged', { skip }, async () => {
  assert.equal(await memTotalKb(userns.uid), 262144);
  assert.equal(await memTotalKb(priv.uid), 262144);
  // The VE's own uptime, not the host's.
  const up = await h.execOut(userns.uid, ['cat', '/proc/uptime']);
  const hostUp = Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]);
  assert.ok(Number(up.out.split(' ')[0]) < hostUp - 1 || hostUp < 120, `VE uptime ${up.out.trim()} vs host ${hostUp}`);
});

test('a live memory limit change shows at once', { skip }, async () => {
  await h.rt.updateLimits(userns.uid, { ...userns.limits, memoryBytes: 128 * MiB });
  assert.equal(await memTotalKb(userns.uid), 131072);
  userns.limits = { ...userns.limits, memoryBytes: 128 * MiB };
});

test('a CPU quota of one CPU shows as one CPU in /proc/cpuinfo and cpu/online', { skip }, async (t) => {
  const hostCpus = (readFileSync('/proc/cpuinfo', 'utf8').match(/^processor\s*:/gm) ?? []).length;
  if (hostCpus < 2) return t.skip('needs a host with 2 or more CPUs to tell a quota from the host');
  const count = async () => Number((await h.execOut(priv.uid, ['grep', '-c', '^processor', '/proc/cpuinfo'])).out.trim());
  assert.equal(await count(), hostCpus, 'no quota: every host CPU');
  await h.rt.updateLimits(priv.uid, { ...priv.limits, cpuQuotaUs: 100_000, cpuPeriodUs: 100_000 });
  priv.limits = { ...priv.limits, cpuQuotaUs: 100_000, cpuPeriodUs: 100_000 };
  assert.equal(await count(), 1);
  assert.equal((await h.execOut(priv.uid, ['cat', '/sys/devices/system/cpu/online'])).out.trim(), '0');
});

test('a killed lxcfs is restarted and put back into running VEs, which keep their init', { skip }, async () => {
  const before = lxcfsPid()!;
  const inits = [await initPid(h.rt, userns.uid), await initPid(h.rt, priv.uid)];
  process.kill(before, 'SIGKILL');
  await waitFor('a new lxcfs', async () => {
    const now = lxcfsPid();
    return now !== undefined && now !== before && alive(now);
  });
  // The VEs' binds pointed at the dead mount; the supervisor swaps them in their mount namespaces.
  await waitFor('meminfo through the new lxcfs in both VEs', async () => (await memTotalKb(userns.uid)) === 131072 && (await memTotalKb(priv.uid)) === 262144);
  assert.deepEqual([await initPid(h.rt, userns.uid), await initPid(h.rt, priv.uid)], inits, 'same init PIDs: no VE was restarted');
  assert.equal(lxcfsMounts().length, 1, 'the dead mount is gone from the host');
  assert.equal((await h.rt.nodeFeatures()).lxcfs?.available, true);
});

test('a second runtime on the same state dir adopts the running lxcfs', { skip }, async () => {
  const pid = lxcfsPid();
  const again = createRuntime({ stateDir: h.stateDir, bridge: { name: `kvzlx${h.suffix}`.slice(0, 15), subnet: '10.222.0.0/24' }, log: silentLogger });
  await again.startNodeServices!();
  again.releaseNodeServices!();
  assert.equal(lxcfsPid(), pid, 'the same lxcfs');
  assert.equal(lxcfsMounts().length, 1, 'no second mount');
  // The first runtime supervises again (start handed supervision to the second).
  await h.rt.startNodeServices!();
});

test('suspend and resume keep the VE on lxcfs', { skip }, async (t) => {
  const cp = (await h.rt.nodeFeatures()).checkpoint;
  if (!cp?.available) return t.skip(`checkpoint unavailable: ${cp?.reason}`);
  await h.rt.suspend(priv.uid);
  assert.equal((await h.rt.inspect(priv.uid)).state, 'suspended');
  await h.rt.resume(priv);
  assert.equal((await h.rt.inspect(priv.uid)).state, 'running');
  assert.equal(await memTotalKb(priv.uid), 262144);
  // Resumed while lxcfs is down: the host's own files stand in (the image holds binds there),
  // and the next lxcfs takes their place in the running VE.
  await h.rt.suspend(priv.uid);
  await stopNodeServices({ stateDir: h.stateDir });
  await h.rt.resume(priv);
  assert.notEqual(await memTotalKb(priv.uid), 262144, 'the host\'s figures while lxcfs is down');
  const init = await initPid(h.rt, priv.uid);
  await h.rt.startNodeServices!();
  assert.equal(await memTotalKb(priv.uid), 262144);
  assert.equal(await initPid(h.rt, priv.uid), init);
});

test('a VE moved to another node (runtime) by dump and restore reads that node\'s lxcfs', { skip }, async (t) => {
  const cp = (await h.rt.nodeFeatures()).checkpoint;
  if (!cp?.available) return t.skip(`checkpoint unavailable: ${cp?.reason}`);
  const a = h.rt;
  const c = h.config('lxm', { limits: { memoryBytes: 192 * MiB, pids: 100 } });
  const { uid } = c;
  await a.ensureRunning(c);
  assert.equal(await memTotalKb(uid), 196608);
  const bDir = mkdtempSync(join(tmpdir(), 'kvz-lxcfs-b-'));
  chmodSync(bDir, 0o711);
  const subnet = `${c.addresses[0]!.split('.').slice(0, 3).join('.')}.0/24`;
  const b = createRuntime({ stateDir: bDir, bridge: { name: `kvzlx${h.suffix}`.slice(0, 15), subnet }, log: silentLogger });
  try {
    await b.startNodeServices!();
    const images = join(h.stateDir, `out-${uid}`);
    await a.migration.checkpoint(uid, { imageDir: images });
    await a.migration.releaseDisk(uid);
    const sec = (await a.inspect(uid)).security;
    const incoming: VEConfig = sec?.uidRange ? { ...c, security: { userNamespace: true, uidRange: sec.uidRange } } : c;
    await b.migration.prepareIncoming(incoming);
    const src = a.migration.diskImagePath(uid);
    const dst = b.migration.diskImagePath(uid);
    for await (const { index, data } of readBlocks(src, changedBlocks(await blockDigests(src), await blockDigests(dst)))) await writeBlock(dst, index, data);
    const inB = join(bDir, 'incoming-images');
    mkdirSync(inB, { mode: 0o700 });
    for (const f of readdirSync(images)) copyFileSync(join(images, f), join(inB, f));
    await a.destroy(uid, { timeoutMs: 5_000 });
    await b.migration.restore(incoming, inB);
    const pid = (await b.inspect(uid)).pid!;
    assert.ok(pid > 0, 'the VE runs on B');
    const bDev = lxcfsMounts(bDir)[0]?.split(' ')[2];
    assert.ok(bDev, 'B runs its own lxcfs');
    assert.deepEqual(veLxcfsDevs(pid), [bDev], 'every lxcfs file of the restored VE is B\'s');
    const r = await execCapture(b, uid, ['cat', '/proc/meminfo']);
    assert.match(r.out, /^MemTotal:\s+196608 kB$/m, 'the limit, read on B');
  } finally {
    await b.destroy(uid, { timeoutMs: 5_000 }).catch(() => undefined);
    await a.destroy(uid, { timeoutMs: 5_000 }).catch(() => undefined);
    await stopNodeServices({ stateDir: bDir });
    rmSync(bDir, { recursive: true, force: true, maxRetries: 10, retryDelay: 50 });
  }
});

test('teardown ends lxcfs and leaves no mount', { skip }, async () => {
  const pid = lxcfsPid()!;
  await h.destroyAll();
  await stopNodeServices({ stateDir: h.stateDir });
  assert.equal(alive(pid), false, 'lxcfs ended');
  assert.deepEqual(lxcfsMounts(), []);
  assert.equal(existsSync(join(h.stateDir, 'lxcfs')), false);
});
