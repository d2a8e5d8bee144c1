import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, lstatSync, mkdtempSync, mkdirSync, readFileSync, readlinkSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { CarriedTmpfs, CgroupfsLayout, DumpMarks, NetnsHandoff, SuspendCheckpoints, thawVE, criuActionScript, criuActionScriptPath, checkpointableBundle, checkpointFeature, criuConfigText, criuErrorLine, maskedDirs, dirBytes, parseCriuVersion, prepareImageDir, versionAtLeast } from '../../../src/runtime/checkpoint.js';
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
  assert.match(g.reason, /4\.2\.1/);
});

test('systemd VEs get irmap options; others an empty config', () => {
  assert.match(criuConfigText('systemd'), /^force-irmap$/m);
  assert.match(criuConfigText('systemd'), /^irmap-scan-path \/usr\/share\/dbus-1$/m);
  assert.doesNotMatch(criuConfigText('busybox'), /^[a-z]/m);
});

test('a VE whose host link is the network lock skips CRIU\'s; masked directories are external mounts bound to an empty dir on restore', () => {
  assert.match(criuConfigText('busybox', { ownNetworkLock: true }), /^network-lock skip$/m);
  assert.doesNotMatch(criuConfigText('busybox', { ownNetworkLock: false }), /network-lock/);
  const text = criuConfigText('busybox', { masks: { dirs: ['/proc/acpi', '/sys/firmware'], source: '/v/criu-mask' } });
  assert.match(text, /^external mnt\[\/proc\/acpi\]:kvz-mask$/m, 'dump: the mountpoint gets the key');
  assert.match(text, /^external mnt\[\/sys\/firmware\]:kvz-mask$/m);
  assert.match(text, /^external mnt\[kvz-mask\]:\/v\/criu-mask$/m, 'restore: the key gets the host dir');
  assert.doesNotMatch(criuConfigText('busybox', { masks: { dirs: [], source: '/v/criu-mask' } }), /external/);
});

test('a v1 cgroup tmpfs is an external mount: the dump names it, the restore binds the rebuilt dir', () => {
  const text = criuConfigText('busybox', { cgroupfs: '/v/criu-cgroupfs' });
  assert.match(text, /^external mnt\[\/sys\/fs\/cgroup\]:kvz-cgroupfs$/m);
  assert.match(text, /^external mnt\[kvz-cgroupfs\]:\/v\/criu-cgroupfs$/m);
  assert.doesNotMatch(criuConfigText('busybox'), /cgroupfs/);
});

test('CgroupfsLayout rebuilds the saved mount points and symlinks, an empty dir without a layout, and refuses names leaving the dir', async () => {
  const base = mkdtempSync(join(tmpdir(), 'kvz-cgfs-'));
  try {
    const images = join(base, 'images');
    mkdirSync(images);
    const layout = new CgroupfsLayout(join(base, 'criu-cgroupfs'));
    await layout.rebuild(images);
    assert.deepEqual(readdirSync(layout.dir), []);
    writeFileSync(join(images, CgroupfsLayout.FILE), JSON.stringify({ mode: 0o555, entries: [{ name: 'memory', mode: 0o755 }, { name: 'cpu,cpuacct', mode: 0o755 }, { name: 'cpu', mode: 0o777, link: 'cpu,cpuacct' }] }));
    mkdirSync(join(layout.dir, 'stale'));
    await layout.rebuild(images);
    assert.deepEqual(readdirSync(layout.dir).sort(), ['cpu', 'cpu,cpuacct', 'memory']);
    assert.equal(readlinkSync(join(layout.dir, 'cpu')), 'cpu,cpuacct');
    assert.ok(lstatSync(join(layout.dir, 'memory')).isDirectory());
    assert.equal(statSync(layout.dir).mode & 0o777, 0o555);
    writeFileSync(join(images, CgroupfsLayout.FILE), JSON.stringify({ mode: 0o755, entries: [{ name: '../escape', mode: 0o755 }] }));
    await assert.rejects(layout.rebuild(images), /bad cgroupfs entry/);
    assert.ok(!existsSync(join(base, 'escape')));
  } finally {
    rmSync(base, { recursive: true, force: true });
  }
});

test('maskedDirs keeps only the directories that exist here', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kvz-masks-'));
  try {
    mkdirSync(join(dir, 'd'));
    writeFileSync(join(dir, 'f'), '');
    assert.deepEqual(maskedDirs([join(dir, 'd'), join(dir, 'f'), join(dir, 'absent')]), [join(dir, 'd')]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the bundle names the VE\'s CRIU config in org.criu.config', () => {
  const spec = buildOciSpec({
    config: { uid: 'u', name: 'n', hostname: 'h', template: 't', addresses: [], limits: {} },
    rootfs: '/r', netnsPath: '/run/netns/x', cgroupsPath: '/kubevz/x', init: ['/sbin/init'],
    host: { boundingCaps: ['CAP_CHOWN'], nofileHard: 1024 }, criuConfig: '/var/lib/kubevz/ves/u/criu.conf',
  });
  assert.equal(spec.annotations[CRIU_CONFIG_ANNOTATION], '/var/lib/kubevz/ves/u/criu.conf');
});

test('a VE with a user namespace: its CRIU config runs the handoff script; its bundle makes netns and restores the userns', () => {
  assert.match(criuConfigText('busybox', { actionScript: '/v/criu-action.sh' }), /^action-script \/v\/criu-action\.sh$/m);
  assert.match(criuActionScript("/v/it's"), /d='\/v\/it'\\''s'/, 'the dir is shell-quoted');
  const base = {
    config: { uid: 'u', name: 'n', hostname: 'h', template: 't', addresses: [], limits: {} },
    rootfs: '/r', cgroupsPath: '/kubevz/x', init: ['/sbin/init'], host: { boundingCaps: ['CAP_CHOWN'], nofileHard: 1024 },
  };
  const range = { hostId: 1 << 20, size: 65536 };
  const boot = buildOciSpec({ ...base, userns: { path: '/v/userns', range } });
  assert.deepEqual(boot.linux.namespaces.find((n) => n.type === 'network'), { type: 'network' }, 'runc makes the netns inside the userns');
  assert.deepEqual(boot.linux.namespaces.find((n) => n.type === 'user'), { type: 'user', path: '/v/userns' });
  const restore = buildOciSpec({ ...base, userns: { range } });
  assert.deepEqual(restore.linux.namespaces.find((n) => n.type === 'user'), { type: 'user' }, 'CRIU makes the userns from the images');
  assert.equal(restore.linux.uidMappings?.[0]?.hostID, range.hostId);
});

test('a user-namespace VE still joining an agent-made netns (started before) is refused; others pass', async () => {
  const write = (name: string, namespaces: unknown[]) => {
    const f = join(dir, name);
    writeFileSync(f, JSON.stringify({ linux: { namespaces } }));
    return f;
  };
  await assert.rejects(checkpointableBundle(write('old.json', [{ type: 'user', path: '/p' }, { type: 'network', path: '/run/netns/x' }]), 'ns/old'), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'Unavailable');
    assert.match(err.message, /Restart it once/);
    return true;
  });
  await checkpointableBundle(write('new.json', [{ type: 'user', path: '/p' }, { type: 'network' }]), 'ns/new');
  await checkpointableBundle(write('priv.json', [{ type: 'network', path: '/run/netns/x' }]), 'ns/priv');
});

/** Runs the VE's action script for one CRIU action, as CRIU does. */
function runAction(script: string, action: string, env: Record<string, string> = {}): number {
  const r = spawnSync('/bin/sh', [script], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', CRTOOLS_SCRIPT_ACTION: action, ...env }, timeout: 10_000 });
  return r.status ?? -1;
}

test('the action script: network-lock marks the freeze; a privileged restore does not wait; other actions do nothing', async () => {
  const veDir = join(dir, 'marks-ve');
  const hd = join(veDir, 'criu-handoff');
  mkdirSync(veDir, { recursive: true });
  const marks = new DumpMarks(hd, veDir);
  assert.equal(await marks.arm(), false, 'no action script (a VE booted by an older kubevz): not armed');
  writeFileSync(criuActionScriptPath(veDir), 'setup-namespaces) old script\n');
  assert.equal(await marks.arm(), false, 'an action script without network-lock: not armed');
  const script = criuActionScriptPath(veDir);
  writeFileSync(script, criuActionScript(hd), { mode: 0o700 });
  assert.equal(await marks.arm(), true);
  const before = Date.now();
  assert.equal(runAction(script, 'network-lock'), 0);
  const at = await marks.finish();
  // A file's mtime comes from the kernel's coarse clock (one tick behind at most).
  assert.ok(at !== undefined && at >= before - 20 && at <= Date.now() + 5, `the freeze in ms since the epoch (${at}, armed at ${before})`);
  assert.equal(await marks.finish(), at, 'the mark stays until the next arm');
  await marks.arm();
  assert.equal(await marks.finish(), undefined, 'arm clears the last mark');
  writeFileSync(join(hd, 'frozen-at'), '1795689166505097481\n');
  assert.equal(await marks.finish(), 1795689166505, 'the ns mark of an older script still counts');
  await marks.arm();
  assert.equal(runAction(script, 'setup-namespaces', { CRTOOLS_INIT_PID: '77' }), 0, 'nothing asked: no wait');
  assert.ok(!existsSync(join(hd, 'netns.pid')));
  assert.equal(runAction(script, 'post-dump'), 0);

  // A user-namespace restore asks (reset): the script hands the pid over and waits for the answer.
  const h = new NetnsHandoff(hd);
  await h.reset();
  const child = spawn('/bin/sh', [script], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', CRTOOLS_SCRIPT_ACTION: 'setup-namespaces', CRTOOLS_INIT_PID: '78' } });
  const exited = new Promise<number | null>((r) => child.on('exit', r));
  while (!existsSync(join(hd, 'netns.pid'))) await new Promise((r) => setTimeout(r, 5));
  assert.equal(readFileSync(join(hd, 'netns.pid'), 'utf8'), '78\n');
  writeFileSync(join(hd, 'netns.done'), '');
  assert.equal(await exited, 0);
  await h.clear();
  assert.equal(runAction(script, 'setup-namespaces', { CRTOOLS_INIT_PID: '79' }), 0, 'cleared: the next restore does not wait');
});

test('carried tmpfs: the bundle\'s tmpfs mounts are external in the CRIU config, keyed by mount point', () => {
  const carried = CarriedTmpfs.fromSpec('/v', [
    { destination: '/proc', type: 'proc', options: [] },
    { destination: '/dev', type: 'tmpfs', options: ['nosuid', 'mode=755'] },
    { destination: '/dev/shm', type: 'tmpfs', options: ['nosuid', 'size=65536k'] },
  ]);
  assert.deepEqual(carried.mounts.map((m) => m.destination), ['/dev', '/dev/shm']);
  assert.equal(CarriedTmpfs.key(carried.mounts[1]!), 'kvz-tmpfs-dev-shm');
  assert.equal(carried.hostDir(carried.mounts[1]!), '/v/criu-tmpfs/dev-shm');
  const text = criuConfigText('busybox', { tmpfs: carried });
  assert.match(text, /^external mnt\[\/dev\/shm\]:kvz-tmpfs-dev-shm$/m, 'dump: the mount point gets the key');
  assert.match(text, /^external mnt\[kvz-tmpfs-dev-shm\]:\/v\/criu-tmpfs\/dev-shm$/m, 'restore: the key gets the host dir');
  assert.equal(carried.request(42, '/img'), '42\n/img\n/dev kvz-tmpfs-dev.tar\n/dev/shm kvz-tmpfs-dev-shm.tar\n');
});

test('carried tmpfs: a list from images (another node) names plain absolute mount points only', async () => {
  const images = mkdtempSync(join(tmpdir(), 'kvz-tmpfs-list-'));
  try {
    const put = (mounts: unknown) => writeFileSync(join(images, CarriedTmpfs.LIST), JSON.stringify(mounts));
    put([{ destination: '/run', options: ['nosuid'] }]);
    assert.deepEqual((await CarriedTmpfs.read(images)).mounts, [{ destination: '/run', options: ['nosuid'] }]);
    for (const bad of ['..', '/..', '/run/../..', 'run', '/', '/a//b', '/a b']) {
      put([{ destination: bad, options: [] }]);
      await assert.rejects(CarriedTmpfs.read(images), /bad tmpfs entry/, bad);
    }
    put([{ destination: '/run' }]);
    await assert.rejects(CarriedTmpfs.read(images), /bad tmpfs entry/, 'options missing');
    rmSync(join(images, CarriedTmpfs.LIST));
    assert.deepEqual((await CarriedTmpfs.read(images)).mounts, [], 'no list: nothing carried (images of an older kubevz)');
  } finally {
    rmSync(images, { recursive: true, force: true });
  }
});

test('the action script archives the carried tmpfs from network-lock on; post-dump waits and fails the dump (the VE runs on) when it could not', async () => {
  const veDir = join(dir, 'tmpfs-ve');
  const hd = join(veDir, 'criu-handoff');
  const images = join(dir, 'tmpfs-images');
  const src = join(dir, 'tmpfs-src');
  mkdirSync(join(src, 'sub'), { recursive: true });
  mkdirSync(images, { recursive: true });
  writeFileSync(join(src, 'pidfile'), '7\n');
  writeFileSync(join(src, 'sub', 'data'), 'x');
  const script = criuActionScriptPath(veDir);
  mkdirSync(veDir, { recursive: true });
  writeFileSync(script, criuActionScript(hd), { mode: 0o700 });
  const marks = new DumpMarks(hd, veDir);
  // This process stands in for the VE's init: its /proc/PID/root is the host's root.
  const carried = new CarriedTmpfs(veDir, [{ destination: src, options: [] }]);
  assert.equal(await marks.arm({ tmpfs: carried.request(process.pid, images) }), true);
  assert.equal(runAction(script, 'network-lock'), 0);
  assert.equal(runAction(script, 'post-dump'), 0);
  assert.equal(await marks.tmpfsError(), undefined);
  const archive = CarriedTmpfs.archive(images, carried.mounts[0]!);
  const listed = spawnSync('tar', ['-tf', archive], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean).sort();
  assert.deepEqual(listed, ['./', './pidfile', './sub/', './sub/data']);
  await marks.finish();

  const gone = new CarriedTmpfs(veDir, [{ destination: join(dir, 'no-such-mount'), options: [] }]);
  await marks.arm({ disk: { mount: join(dir, 'not-a-mount'), image: join(dir, 'no-image') }, tmpfs: gone.request(process.pid, images) });
  assert.equal(runAction(script, 'network-lock'), 0);
  assert.equal(runAction(script, 'post-dump'), 1, 'a tmpfs that cannot be archived fails the dump');
  assert.match((await marks.tmpfsError()) ?? '', /no-such-mount/);
  assert.ok(!existsSync(join(hd, 'disk-frozen')), 'nor is the disk frozen then');
  await marks.arm();
  assert.equal(runAction(script, 'network-lock'), 0, 'nothing asked: nothing archived');
  assert.equal(runAction(script, 'post-dump'), 0);
  assert.equal(await marks.tmpfsError(), undefined);
});

test('post-dump freezes the disk only when asked, and never fails (CRIU would let the VE run on)', async () => {
  const veDir = join(dir, 'freeze-ve');
  const hd = join(veDir, 'criu-handoff');
  mkdirSync(veDir, { recursive: true });
  const script = criuActionScriptPath(veDir);
  writeFileSync(script, criuActionScript(hd), { mode: 0o700 });
  const marks = new DumpMarks(hd, veDir);
  await marks.arm({ disk: { mount: join(dir, 'not-a-mount'), image: join(dir, 'no-image') } });
  assert.equal(runAction(script, 'post-dump'), 0);
  assert.equal(await marks.frozenDisk(), undefined, 'fsfreeze failed: not frozen, and the caller freezes it itself');
  await marks.arm();
  assert.equal(runAction(script, 'post-dump'), 0);
  assert.equal(await marks.frozenDisk(), undefined);
});

test('pre-dump freezes the VE when asked (v1 and v2 freezers), marks the freeze, and thaws it and fails when it does not freeze', async () => {
  const veDir = join(dir, 'predump-ve');
  const hd = join(veDir, 'criu-handoff');
  mkdirSync(veDir, { recursive: true });
  const script = criuActionScriptPath(veDir);
  writeFileSync(script, criuActionScript(hd), { mode: 0o700 });
  const marks = new DumpMarks(hd, veDir);
  // Plain files stand in for the cgroup's: what the script writes is what it reads back.
  const v1 = join(dir, 'predump-v1');
  mkdirSync(v1, { recursive: true });
  writeFileSync(join(v1, 'freezer.state'), 'THAWED\n');
  const before = Date.now();
  assert.equal(await marks.arm({ freezer: { version: 'v1', dir: v1 } }), true);
  assert.equal(marks.freezesVE, true);
  assert.equal(runAction(script, 'pre-dump'), 0);
  assert.equal(readFileSync(join(v1, 'freezer.state'), 'utf8'), 'FROZEN\n');
  const at = await marks.finish();
  assert.ok(at !== undefined && at >= before - 20, 'the freeze is marked at pre-dump');
  assert.ok(!existsSync(join(hd, 'freeze-cgroup')), 'finish clears the request');

  // v2: frozen when cgroup.events says so; here it never does, so the script gives up, thaws, fails.
  const v2 = join(dir, 'predump-v2');
  mkdirSync(v2, { recursive: true });
  writeFileSync(join(v2, 'cgroup.freeze'), '0\n');
  writeFileSync(join(v2, 'cgroup.events'), 'populated 1\nfrozen 0\n');
  await marks.arm({ freezer: { version: 'v2', dir: v2, timeoutMs: 50 } });
  assert.equal(runAction(script, 'pre-dump'), 1, 'not frozen in time: the dump fails');
  assert.equal(readFileSync(join(v2, 'cgroup.freeze'), 'utf8'), '0\n', 'and the VE is thawed again');
  writeFileSync(join(v2, 'cgroup.events'), 'populated 1\nfrozen 1\n');
  await marks.arm({ freezer: { version: 'v2', dir: v2 } });
  assert.equal(runAction(script, 'pre-dump'), 0);
  assert.equal(readFileSync(join(v2, 'cgroup.freeze'), 'utf8'), '1\n');
  await thawVE({ version: 'v2', dir: v2 });
  assert.equal(readFileSync(join(v2, 'cgroup.freeze'), 'utf8'), '0');
  await thawVE({ version: 'v1', dir: join(dir, 'no-such-cgroup') });

  // Not asked (a dump that leaves the VE running): pre-dump does nothing; network-lock marks the freeze.
  await marks.arm({});
  assert.equal(marks.freezesVE, false);
  assert.equal(runAction(script, 'pre-dump'), 0);
  assert.equal(await marks.finish(), undefined);
  assert.equal(runAction(script, 'network-lock'), 0);
  assert.ok((await marks.finish()) !== undefined);
  // A script of an older kubevz (no pre-dump branch) is not asked to freeze: CRIU does.
  writeFileSync(script, criuActionScript(hd).replace('pre-dump)', 'unknown)'), { mode: 0o700 });
  await marks.arm({ freezer: { version: 'v1', dir: v1 } });
  assert.equal(marks.freezesVE, false);
});

test('the netns handoff: the agent wires the pid the script wrote, then answers done; a failed wiring fails the restore', async () => {
  const hd = join(dir, 'handoff');
  const h = new NetnsHandoff(hd);
  await h.reset();
  let release!: () => void;
  const restoring = new Promise<void>((r) => (release = r));
  const wired: number[] = [];
  const served = h.serve(restoring, async (pid) => {
    wired.push(pid);
  });
  writeFileSync(join(hd, 'netns.pid'), '4242\n');
  while (!existsSync(join(hd, 'netns.done'))) await new Promise((r) => setTimeout(r, 5));
  release();
  await served;
  assert.deepEqual(wired, [4242]);

  await h.reset();
  let fail!: (e: Error) => void;
  const restoring2 = new Promise<void>((_r, j) => (fail = j));
  const served2 = h.serve(restoring2, async () => {
    throw new Error('CNI ADD failed: no bridge');
  });
  writeFileSync(join(hd, 'netns.pid'), '4243\n');
  while (!existsSync(join(hd, 'netns.failed'))) await new Promise((r) => setTimeout(r, 5));
  fail(new Error('runc restore exited 1'));
  await assert.rejects(served2, /no bridge/, 'the wiring error is the one reported');

  await h.reset();
  await assert.rejects(h.serve(Promise.reject(new Error('criu failed early')), async () => assert.fail('not asked')), /early/);
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
