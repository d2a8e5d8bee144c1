// The per-VE disk against the real kernel (root): sparse ext4 image on a loop device under the
// overlay, ENOSPC at the size and at the inode count, grow (online where capable, else at the
// next start), quota refusal, agent restart re-using the mount, and no leaks after many cycles.

import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test, type TestContext } from 'node:test';
import { silentLogger } from '../../src/core/logger.js';
import { createRuntime, type VEConfig } from '../../src/runtime/index.js';
import { missingPrereqs, requirePrereqs } from '../helpers/prereq.js';
import { execFileP, makeVEHost, type VEHost } from '../helpers/ve-host.js';

const prereqs = { root: true, binaries: ['runc', 'ip', 'mkfs.ext4', 'losetup', 'resize2fs', 'e2fsck'] };
const skip = missingPrereqs(prereqs).length > 0;
const MiB = 1024 ** 2;
const stop = { timeoutMs: 5_000 };

let h: VEHost;
let config: VEConfig;

before(() => {
  if (skip) return;
  h = makeVEHost('d', 216);
  config = h.config('disk', { disk: { sizeBytes: 32 * MiB, inodes: 4096 } });
});
after(async () => {
  if (!skip) await h.close();
});

const guard = (t: TestContext) => requirePrereqs(t, prereqs);
const veDir = (uid: string) => join(h.stateDir, 'ves', uid);

test('a VE root is an overlay on its own sparse ext4 image; no template file is copied', async (t) => {
  if (!guard(t)) return;
  await h.rt.ensureTemplate('busybox');
  const t0 = performance.now();
  assert.equal(await h.rt.ensureRunning(config), 'created');
  t.diagnostic(`create+start with a fresh disk: ${Math.round(performance.now() - t0)} ms`);

  const image = join(veDir(config.uid), 'disk.img');
  const st = statSync(image);
  assert.equal(st.size, 32 * MiB, 'image has the asked size');
  assert.ok(st.blocks * 512 < 8 * MiB, `image is sparse (${st.blocks * 512} bytes allocated)`);
  const loops = await h.loopsUnderStateDir();
  assert.equal(loops.length, 1, `one loop device: ${loops.join('; ')}`);
  const { stdout: fstype } = await execFileP('findmnt', ['-n', '-o', 'FSTYPE', join(veDir(config.uid), 'disk')]);
  assert.equal(fstype.trim(), 'ext4');
  // The upper layer holds only what the VE wrote (its identity files), nothing of the template.
  const upper = await readdir(join(veDir(config.uid), 'disk', 'upper'), { recursive: true });
  assert.deepEqual(upper.sort(), ['etc', 'etc/hostname', 'etc/hosts', 'etc/resolv.conf']);

  const usage = await h.rt.diskUsage(config.uid);
  assert.equal(usage?.sizeBytes, 32 * MiB);
  assert.equal(usage?.inodes, 4096);
  assert.equal(usage?.mounted, true);
  assert.ok((usage?.inodesUsed ?? 0) > 0 && (usage?.usedBytes ?? 0) > 0);
});

test('writing past the size gives ENOSPC inside the VE, nothing outside', async (t) => {
  if (!guard(t)) return;
  const { code, out } = await h.execOut(config.uid, ['dd', 'if=/dev/zero', 'of=/fill', 'bs=1M', 'count=64']);
  assert.notEqual(code, 0);
  assert.match(out, /No space left on device/);
  assert.equal(statSync(join(veDir(config.uid), 'disk.img')).size, 32 * MiB, 'the image did not grow');
  const df = await h.execOut(config.uid, ['df', '-k', '/']);
  const avail = Number(df.out.trim().split('\n')[1]?.trim().split(/\s+/)[3]);
  assert.ok(avail < 1024, `the VE's disk is full: ${df.out}`);
  // Free it again; the VE keeps working.
  assert.equal((await h.execOut(config.uid, ['rm', '/fill'])).code, 0);
  assert.equal((await h.execOut(config.uid, ['sh', '-c', 'echo kept > /kept'])).code, 0);
});

test('running out of inodes gives ENOSPC too', async (t) => {
  if (!guard(t)) return;
  const { code, out } = await h.execOut(config.uid, ['sh', '-c', 'mkdir /many && cd /many && seq 1 5000 | xargs touch']);
  assert.notEqual(code, 0);
  assert.match(out, /No space left on device/);
  const usage = await h.rt.diskUsage(config.uid);
  assert.equal(usage?.inodesUsed, 4096, 'every inode is used');
  assert.equal((await h.execOut(config.uid, ['rm', '-rf', '/many'])).code, 0);
});

test('second-level quota is reported unavailable here and such a config is refused', async (t) => {
  if (!guard(t)) return;
  const f = await h.rt.nodeFeatures();
  assert.equal(typeof f.diskQuotaUgid?.available, 'boolean');
  if (f.diskQuotaUgid?.available) return t.skip('this kernel supports ext4 quotas');
  assert.match(f.diskQuotaUgid?.reason ?? '', /quota/i);
  const c = h.config('quota', { disk: { sizeBytes: 16 * MiB, quotaUgidLimit: 100 } });
  await assert.rejects(h.rt.ensureRunning(c), (err: Error & { code?: string }) => err.code === 'Invalid' && /quotaUgidLimit 100/.test(err.message));
  assert.equal((await h.rt.inspect(c.uid)).state, 'absent', 'nothing was made');
});

test('growing: online when the agent holds CAP_SYS_RESOURCE, else at the next start', async (t) => {
  if (!guard(t)) return;
  const online = (await h.rt.nodeFeatures()).diskOnlineGrow?.available;
  const capEff = /^CapEff:\s*([0-9a-f]+)$/m.exec(await import('node:fs').then((fs) => fs.readFileSync('/proc/self/status', 'utf8')))?.[1] ?? '0';
  assert.equal(online, ((BigInt(`0x${capEff}`) >> 24n) & 1n) === 1n, 'feature follows CapEff bit 24');
  const pid = (await h.rt.inspect(config.uid)).pid;
  const bigger = { ...config, disk: { ...config.disk!, sizeBytes: 64 * MiB } };
  const res = await h.rt.ensureRunning(bigger);
  assert.equal((await h.rt.inspect(config.uid)).pid, pid, 'the VE kept running');
  if (online) {
    assert.equal(res, 'updated');
    assert.equal((await h.rt.diskUsage(config.uid))?.sizeBytes, 64 * MiB);
  } else {
    assert.equal(res, 'unchanged');
    assert.equal((await h.rt.diskUsage(config.uid))?.sizeBytes, 32 * MiB, 'not grown while running');
    assert.equal(await h.rt.ensureStopped(config.uid, stop), 'updated');
    const t0 = performance.now();
    assert.equal(await h.rt.ensureRunning(bigger), 'updated');
    t.diagnostic(`start with offline grow: ${Math.round(performance.now() - t0)} ms`);
  }
  const usage = await h.rt.diskUsage(config.uid);
  assert.equal(usage?.sizeBytes, 64 * MiB);
  // ext4 adds inodes per added block group (128 MiB here): this grow stays in the first group.
  assert.ok((usage?.inodes ?? 0) >= 4096, 'inodes are kept');
  const df = await h.execOut(config.uid, ['df', '-k', '/']);
  const total = Number(df.out.trim().split('\n')[1]?.trim().split(/\s+/)[1]);
  assert.ok(total > 50 * 1024, `the VE sees the bigger disk: ${df.out}`);
  assert.equal((await h.execOut(config.uid, ['cat', '/kept'])).out.trim(), 'kept', 'data survived');
  // Asking for less than it has never shrinks it.
  await h.rt.ensureStopped(config.uid, stop);
  await h.rt.ensureRunning(config);
  assert.equal((await h.rt.diskUsage(config.uid))?.sizeBytes, 64 * MiB, 'never shrunk');
});

test('an agent restart re-uses the mounted disk and an attached loop device', async (t) => {
  if (!guard(t)) return;
  const rt2 = createRuntime({ stateDir: h.stateDir, bridge: h.bridge, log: silentLogger });
  const c64 = { ...config, disk: { ...config.disk!, sizeBytes: 64 * MiB } };
  assert.equal(await rt2.ensureRunning(c64), 'unchanged');
  assert.equal((await h.loopsUnderStateDir()).length, 1);
  // Crash between attach and mount: the loop device is attached but nothing is mounted.
  await rt2.ensureStopped(config.uid, stop);
  const dir = veDir(config.uid);
  await execFileP('umount', [join(dir, 'rootfs')]);
  await execFileP('umount', [join(dir, 'disk')]);
  assert.equal((await h.loopsUnderStateDir()).length, 0, 'autoclear detached the loop on unmount');
  await execFileP('losetup', ['-f', join(dir, 'disk.img')]);
  assert.equal(await rt2.ensureRunning(c64), 'updated');
  assert.equal((await h.loopsUnderStateDir()).length, 1, 'the attached loop device was re-used, not doubled');
  assert.equal((await h.execOut(config.uid, ['cat', '/kept'])).out.trim(), 'kept');
});

test('destroy removes image, mounts and loop device', async (t) => {
  if (!guard(t)) return;
  assert.equal(await h.rt.destroy(config.uid, stop), 'deleted');
  assert.deepEqual(await h.loopsUnderStateDir(), []);
  assert.deepEqual(h.mountsUnderStateDir(), []);
  assert.equal(await h.rt.diskUsage(config.uid), undefined);
});

test('nothing leaks after many create/destroy cycles', async (t) => {
  if (!guard(t)) return;
  const cycles = Number(process.env.KVZ_DISK_CYCLES ?? 50);
  const times: number[] = [];
  for (let i = 0; i < cycles; i++) {
    const c = h.config(`cyc${i}`, { disk: { sizeBytes: 16 * MiB } });
    const t0 = performance.now();
    await h.rt.ensureRunning(c);
    times.push(performance.now() - t0);
    await h.rt.destroy(c.uid, stop);
  }
  times.sort((a, b) => a - b);
  t.diagnostic(`${cycles} cycles; create+start median ${Math.round(times[Math.floor(times.length / 2)] ?? 0)} ms`);
  assert.deepEqual(await h.loopsUnderStateDir(), []);
  assert.deepEqual(h.mountsUnderStateDir(), []);
  assert.deepEqual(await readdir(join(h.stateDir, 'ves')), []);
});
