import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { SuspendCheckpoints, checkpointFeature, criuConfigText, criuErrorLine, dirBytes, parseCriuVersion, prepareImageDir, usernsRefusal, versionAtLeast } from '../../../src/runtime/checkpoint.js';
import { scopedNetNames, containerId, hostVethName } from '../../../src/runtime/names.js';
import { buildOciSpec, CRIU_CONFIG_ANNOTATION } from '../../../src/runtime/oci-spec.js';

const dir = mkdtempSync(join(tmpdir(), 'kvz-ckpunit-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('CRIU versions: 4.2 and newer are enough', () => {
  assert.deepEqual(parseCriuVersion('Version: 4.2.1\n'), [4, 2, 1]);
  assert.deepEqual(parseCriuVersion('Version: 3.17'), [3, 17, 0]);
  assert.equal(parseCriuVersion('nope'), undefined);
  assert.ok(versionAtLeast([4, 2, 1], [4, 2]));
  assert.ok(versionAtLeast([5, 0, 0], [4, 2]));
  assert.ok(!versionAtLeast([4, 1, 1], [4, 2]));
  assert.ok(!versionAtLeast([3, 17, 0], [4, 2]));
});

test('the checkpoint feature says why when CRIU is missing or too old', () => {
  const none = checkpointFeature(join(dir, 'no-criu'));
  assert.equal(none.available, false);
  const old = join(dir, 'old-criu');
  writeFileSync(old, '#!/bin/sh\necho "Version: 3.17"\n', { mode: 0o755 });
  const f = checkpointFeature(old);
  assert.equal(f.available, false);
  assert.match(f.reason, /3\.17.*4\.2/);
  const good = join(dir, 'good-criu');
  writeFileSync(good, '#!/bin/sh\necho "Version: 4.2.1"\n', { mode: 0o755 });
  const g = checkpointFeature(good);
  assert.equal(g.available, true);
  assert.match(g.reason, /userNamespace: false/, 'the user-namespace limit is in the reason');
});

test('systemd VEs get irmap options; others an empty config', () => {
  assert.match(criuConfigText('systemd'), /^force-irmap$/m);
  assert.match(criuConfigText('systemd'), /^irmap-scan-path \/usr\/share\/dbus-1$/m);
  assert.doesNotMatch(criuConfigText('busybox'), /^[a-z]/m);
});

test('the bundle names the VE\'s CRIU config in org.criu.config', () => {
  const spec = buildOciSpec({
    config: { uid: 'u', name: 'n', hostname: 'h', template: 't', addresses: [], limits: {} },
    rootfs: '/r', netnsPath: '/run/netns/x', cgroupsPath: '/kubevz/x', init: ['/sbin/init'],
    host: { boundingCaps: ['CAP_CHOWN'], nofileHard: 1024 }, criuConfig: '/var/lib/kubevz/ves/u/criu.conf',
  });
  assert.equal(spec.annotations[CRIU_CONFIG_ANNOTATION], '/var/lib/kubevz/ves/u/criu.conf');
});

test('a user-namespace refusal is Unavailable and says the way out', () => {
  const e = usernsRefusal('default/web');
  assert.equal(e.code, 'Unavailable');
  assert.equal(e.details.reason, 'CheckpointFailed');
  assert.match(e.message, /spec\.security\.userNamespace: false/);
});

test('image dirs are 0700 and must be empty; sizes are summed', async () => {
  const d = join(dir, 'imgs');
  await prepareImageDir(d);
  assert.equal(statSync(d).mode & 0o777, 0o700);
  writeFileSync(join(d, 'a.img'), Buffer.alloc(10));
  writeFileSync(join(d, 'b.img'), Buffer.alloc(32));
  assert.equal(await dirBytes(d), 42);
  await assert.rejects(prepareImageDir(d), { code: 'Invalid' });
});

test('CRIU log tails give their error line', () => {
  assert.equal(criuErrorLine('(00.1) a\n(00.2) Error (criu/net.c:3): Can\'t setns 16/net: Operation not permitted\n(00.3) b'), 'Error (criu/net.c:3): Can\'t setns 16/net: Operation not permitted');
  assert.equal(criuErrorLine('all fine'), undefined);
});

test('suspend checkpoints: only completed ones count, newest first, retention', async () => {
  const ve = join(dir, 've1');
  mkdirSync(ve);
  const store = new SuspendCheckpoints(ve);
  assert.equal(await store.newest(), undefined);
  const made = [];
  for (let i = 0; i < 3; i++) {
    const c = await store.create();
    await store.complete({ ...c, createdAt: '', bytes: i, ms: 1 });
    made.push(c.name);
    await new Promise((r) => setTimeout(r, 2));
  }
  const unfinished = await store.create();
  assert.equal((await store.newest())?.name, made[2], 'an unfinished dump does not count');
  await store.prune(2);
  assert.deepEqual((await store.list()).map((c) => c.name), [made[2], made[1]]);
  assert.ok(!(await import('node:fs')).existsSync(unfinished.path), 'unfinished dumps are pruned');
  assert.equal(await store.removeAll(), true);
  assert.equal(await store.removeAll(), false);
});

test('scoped network names differ per state dir and from the primary names, and fit IFNAMSIZ', () => {
  const uid = '0b5e0f5a-1111-4222-8333-444455556666';
  const a = scopedNetNames(uid, '/var/lib/a');
  const b = scopedNetNames(uid, '/var/lib/b');
  assert.notEqual(a.netns, b.netns);
  assert.notEqual(a.veth, b.veth);
  assert.notEqual(a.netns, containerId(uid));
  assert.notEqual(a.veth, hostVethName(uid));
  assert.ok(a.veth.length <= 15);
  assert.deepEqual(scopedNetNames(uid, '/var/lib/a'), a, 'stable');
});
