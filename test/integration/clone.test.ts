// Cloning a VE's disk on the real host (root): from a running source that keeps running (and
// keeps writing during the copy), and from a stopped one; the clone has the source's files but
// its own identity (hostname, address, MAC, its own host uid/gid range owning its files) and its
// writes do not reach the source.

import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test, type TestContext } from 'node:test';
import { diskPaths } from '../../src/runtime/disk-image.js';
import { macAddress, type VEConfig } from '../../src/runtime/index.js';
import { missingPrereqs, requirePrereqs } from '../helpers/prereq.js';
import { makeVEHost, type VEHost } from '../helpers/ve-host.js';

const prereqs = { root: true, binaries: ['runc', 'ip', 'mkfs.ext4', 'losetup', 'fsfreeze', 'cp'] };
const skip = missingPrereqs(prereqs).length > 0;
const MiB = 1024 ** 2;
const stop = { timeoutMs: 5_000 };

let h: VEHost;
let src: VEConfig;

before(() => {
  if (skip) return;
  h = makeVEHost('c', 217);
  src = h.config('src', { disk: { sizeBytes: 64 * MiB } });
});
after(async () => {
  if (!skip) await h.close();
});

const guard = (t: TestContext) => requirePrereqs(t, prereqs);

/** A file of a VE's upper layer (its own disk) as the host sees it. */
const upperFile = (uid: string, path: string) => statSync(join(diskPaths(join(h.stateDir, 'ves', uid)).upper, path));

/**
 * The clone has a host uid/gid range of its own (not the source's, no overlap); the files of its
 * disk, copied from the source, are owned by its range on the host, and look root-owned inside.
 */
async function assertOwnIds(cloneUid: string, srcUid: string): Promise<void> {
  const [s, c] = [(await h.rt.inspect(srcUid)).security?.uidRange, (await h.rt.inspect(cloneUid)).security?.uidRange];
  assert.ok(s && c, 'source and clone both run in a user namespace');
  assert.ok(c.hostId + c.size <= s.hostId || s.hostId + s.size <= c.hostId, `the clone's range ${c.hostId}+${c.size} does not overlap the source's ${s.hostId}+${s.size}`);
  assert.equal((await h.execOut(cloneUid, ['cat', '/proc/self/uid_map'])).out.trim().split(/\s+/).join(' '), `0 ${c.hostId} ${c.size}`);
  for (const path of ['etc/hostname', 'data/greeting', 'data']) {
    const st = upperFile(cloneUid, path);
    assert.deepEqual([st.uid, st.gid], [c.hostId, c.hostId], `${path} in the clone's upper layer is owned by the clone's root (host id ${c.hostId})`);
  }
  const src = upperFile(srcUid, 'data/greeting');
  assert.deepEqual([src.uid, src.gid], [s.hostId, s.hostId], "the source's own copy keeps the source's owner");
  assert.equal((await h.execOut(cloneUid, ['id', '-u'])).out.trim(), '0', "the clone's root is uid 0 inside");
  assert.equal((await h.execOut(cloneUid, ['stat', '-c', '%u:%g', '/etc/hostname', '/data/greeting', '/data'])).out.trim().split('\n').join(' '), '0:0 0:0 0:0', 'its files look root-owned inside');
}

test('a running VE is cloned consistently and keeps running', async (t) => {
  if (!guard(t)) return;
  await h.rt.ensureTemplate('busybox');
  await h.rt.ensureRunning(src);
  assert.equal((await h.execOut(src.uid, ['sh', '-c', 'mkdir -p /data && echo hello > /data/greeting && dd if=/dev/urandom of=/data/blob bs=1M count=4 2>/dev/null && md5sum /data/blob > /data/blob.md5'])).code, 0);
  // A writer that keeps appending while the copy is made (started by exec, so it is in the VE's cgroup).
  await h.execOut(src.uid, ['sh', '-c', '(while true; do date >> /data/log; sleep 0.01; done) >/dev/null 2>&1 &']);
  const pid = (await h.rt.inspect(src.uid)).pid;

  const clone = h.config('clone', { disk: { sizeBytes: 64 * MiB, cloneFrom: src.uid } });
  const t0 = performance.now();
  assert.equal(await h.rt.ensureRunning(clone), 'created');
  t.diagnostic(`clone of a running 64Mi VE (4 MiB written) to running: ${Math.round(performance.now() - t0)} ms`);

  const s = await h.rt.inspect(src.uid);
  assert.equal(s.state, 'running', 'the source keeps running');
  assert.equal(s.pid, pid, 'with the same init');
  assert.equal((await h.execOut(src.uid, ['cat', '/data/greeting'])).out.trim(), 'hello');

  assert.equal((await h.execOut(clone.uid, ['cat', '/data/greeting'])).out.trim(), 'hello', 'the clone has the source files');
  assert.equal((await h.execOut(clone.uid, ['md5sum', '-c', '/data/blob.md5'])).code, 0, 'and their content');
  assert.equal((await h.execOut(clone.uid, ['hostname'])).out.trim(), clone.hostname, 'its own hostname');
  assert.equal((await h.execOut(clone.uid, ['cat', '/etc/hostname'])).out.trim(), clone.hostname);
  assert.equal((await h.execOut(clone.uid, ['cat', '/sys/class/net/eth0/address'])).out.trim(), macAddress(clone.uid), 'its own MAC');
  assert.notEqual(macAddress(clone.uid), macAddress(src.uid));
  assert.match((await h.execOut(clone.uid, ['ip', '-4', 'addr', 'show', 'eth0'])).out, new RegExp(`inet ${clone.addresses[0]!.split('/')[0]!.replace(/\./g, '\\.')}/`));

  await assertOwnIds(clone.uid, src.uid);

  // Separate disks from here on.
  await h.execOut(clone.uid, ['sh', '-c', 'echo clone-only > /data/mine']);
  assert.equal(upperFile(clone.uid, 'data/mine').uid, (await h.rt.inspect(clone.uid)).security?.uidRange?.hostId, "a new file of the clone's root is its range's");
  assert.notEqual((await h.execOut(src.uid, ['cat', '/data/mine'])).code, 0, 'a clone write does not reach the source');
  assert.equal((await h.rt.diskUsage(clone.uid))?.sizeBytes, 64 * MiB);
});

test('a stopped VE is cloned into a bigger disk; a smaller disk and a missing source are refused', async (t) => {
  if (!guard(t)) return;
  await h.rt.ensureStopped(src.uid, stop);
  const big = h.config('big', { disk: { sizeBytes: 96 * MiB, cloneFrom: src.uid } });
  assert.equal(await h.rt.ensureRunning(big), 'created');
  assert.equal((await h.execOut(big.uid, ['cat', '/data/greeting'])).out.trim(), 'hello');
  assert.equal((await h.rt.diskUsage(big.uid))?.sizeBytes, 96 * MiB);
  assert.equal((await h.rt.inspect(src.uid)).state, 'absent', 'the stopped source stays stopped');
  // The stopped source's range is still its own (recorded): the clone gets another.
  await assertOwnIds(big.uid, src.uid);

  const small = h.config('small', { disk: { sizeBytes: 32 * MiB, cloneFrom: src.uid } });
  await assert.rejects(h.rt.ensureRunning(small), /smaller than its source/);
  assert.equal((await h.rt.diskUsage(small.uid)), undefined, 'the refused clone left no disk');
  assert.equal((await h.loopsUnderStateDir()).length, 3, "source (stopped, disk kept), clone and big: nothing for the refused one");

  const missing = h.config('orphan', { disk: { sizeBytes: 64 * MiB, cloneFrom: '00000000-0000-0000-0000-000000000000' } });
  await assert.rejects(h.rt.ensureRunning(missing), (err: Error & { code?: string }) => err.code === 'NotFound');
});
