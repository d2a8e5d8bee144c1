// Suspend/resume and live migration with real runc + CRIU: a counter kept by a service that the
// VE's init started goes on after a restore, a TCP connection from the host survives, images are
// root-only, and a VE moves between two runtimes (two state dirs, one host, one bridge) with its
// disk copied block by block — privileged, and with a user namespace (CRIU makes its netns anew).

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, statfsSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { silentLogger } from '../../src/core/logger.js';
import { blockDigests, changedBlocks, createRuntime, dirDigest, hostVethName, readBlocks, writeBlock, type VEConfig } from '../../src/runtime/index.js';
import { KERNDAT_CACHE, ensureKerndatCache, removeKerndatCache } from '../../src/runtime/checkpoint.js';
import { execFileP, makeVEHost, type VEHost } from '../helpers/ve-host.js';
import { missingPrereqs, inCI } from '../helpers/prereq.js';

const missing = missingPrereqs({ root: true, binaries: ['runc', 'ip', '/usr/local/sbin/criu'] });
if (missing.length && inCI) throw new Error(`prerequisite missing under CI: ${missing.join(', ')}`);
const skip = missing.length ? `needs ${missing.join(', ')}` : false;

const stop = { timeoutMs: 5_000 };
let host: VEHost;
let config: VEConfig;

/** A service the VE's init starts: a counter in /tmp/c (its pid in /tmp/c.pid) and a TCP echo server on 7000. */
const SERVICE = `#!/bin/sh
case "$1" in
start)
  (i=0; while :; do i=$((i+1)); echo $i > /tmp/c; sleep 0.1; done) </dev/null >/dev/null 2>&1 &
  echo $! > /tmp/c.pid
  nc -ll -p 7000 -e cat </dev/null >/dev/null 2>&1 &
  ;;
esac
`;

async function counter(uid: string): Promise<{ n: number; pid: string }> {
  const c = await host.execOut(uid, ['cat', '/tmp/c', '/tmp/c.pid']).catch(() => ({ code: 1, out: '' }));
  const [n, pid] = c.out.trim().split('\n');
  return { n: Number(n), pid: pid ?? '' };
}

async function waitFor(what: string, fn: () => Promise<boolean>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await fn())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function echo(sock: Socket, line: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const onData = (d: Buffer) => {
      sock.off('error', reject);
      resolve(d.toString('utf8'));
    };
    sock.once('data', onData);
    sock.once('error', reject);
    sock.write(line);
  });
}

before(async () => {
  if (skip) return;
  host = makeVEHost('ckp', 219);
  config = host.config('ckp', { security: { userNamespace: false } });
  await host.rt.ensureRunning(config);
  const w = await host.execOut(config.uid, ['sh', '-c', `cat > /etc/init.d/S50counter <<'EOF'\n${SERVICE}EOF\nchmod +x /etc/init.d/S50counter`]);
  assert.equal(w.code, 0, w.out);
  // Restarted so that init starts the service (processes from `exec` are not checkpointed).
  await host.rt.ensureStopped(config.uid, stop);
  await host.rt.ensureRunning(config);
  await waitFor('the counter', async () => (await counter(config.uid)).n > 3);
});

after(async () => {
  if (host) await host.close();
});

test('suspend and resume: the counter and a TCP connection go on; images are root-only', { skip }, async () => {
  const { uid } = config;
  const ip = config.addresses[0]!.split('/')[0]!;
  const sock = connect(7000, ip);
  await new Promise<void>((resolve, reject) => sock.once('connect', resolve).once('error', reject));
  try {
    assert.equal(await echo(sock, 'one\n'), 'one\n');
    // The VE's tmpfs mounts (kubevz archives them itself, CarriedTmpfs) come back with their files.
    const probe = 'for f in /run/kvz-probe /dev/shm/kvz-probe; do cat $f; done; stat -f -c %T /run /dev/shm /dev; echo ok > /dev/null && head -c 3 /dev/zero | wc -c';
    assert.equal((await host.execOut(uid, ['sh', '-c', 'echo run-data > /run/kvz-probe && echo shm-data > /dev/shm/kvz-probe'])).code, 0);
    const probed = (await host.execOut(uid, ['sh', '-c', probe])).out;
    const c1 = await counter(uid);
    assert.equal(await host.rt.suspend(uid), 'updated');
    assert.equal((await host.rt.inspect(uid)).state, 'suspended');
    const cpDir = join(host.stateDir, 'ves', uid, 'checkpoints');
    const dumps = readdirSync(cpDir).filter((n) => !n.endsWith('.json'));
    assert.equal(dumps.length, 1);
    assert.equal(statSync(join(cpDir, dumps[0]!)).mode & 0o777, 0o700, 'images are 0700');
    assert.ok(readdirSync(join(cpDir, dumps[0]!)).some((f) => f.endsWith('.img')), 'CRIU images were written');

    assert.equal(await host.rt.resume(config), 'updated');
    assert.equal((await host.rt.inspect(uid)).state, 'running');
    assert.ok(!existsSync(join(cpDir, dumps[0]!)), 'a used suspend checkpoint is removed');
    await waitFor('the counter to go on', async () => (await counter(uid)).n > c1.n);
    const c2 = await counter(uid);
    assert.equal(c2.pid, c1.pid, 'the same counter process (restored, not restarted)');
    assert.ok(c2.n > c1.n, `counter went on (${c1.n} → ${c2.n})`);
    assert.equal(await echo(sock, 'two\n'), 'two\n', 'the same TCP connection works after resume');
    assert.equal(probed, 'run-data\nshm-data\ntmpfs\ntmpfs\ntmpfs\n3\n');
    assert.equal((await host.execOut(uid, ['sh', '-c', probe])).out, probed, '/run, /dev/shm and /dev: the same files, still tmpfs, devices work');
    // The host's own mounts of them go a moment after the restore (the VE's binds keep them).
    const carried = join(host.stateDir, 'ves', uid, 'criu-tmpfs');
    await waitFor('the host to drop its mounts of the VE\'s tmpfs', async () => !readFileSync('/proc/self/mountinfo', 'utf8').includes(`${carried}/`), 5_000);
  } finally {
    sock.destroy();
  }
});

test('a dump that fails after the freeze (no room for its images) leaves the VE running, thawed, with its TCP connection', { skip }, async () => {
  const { uid } = config;
  const full = mkdtempSync(join(tmpdir(), 'kvz-ckp-full-'));
  const sock = await connected(config.addresses[0]!.split('/')[0]!);
  let mounted = false;
  try {
    // 64 KiB: room for the small files written before CRIU starts, not for the VE's pages.
    const m = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=64k,mode=700', 'kvz-ckp-full', full]);
    assert.equal(m.status, 0, m.stderr?.toString());
    mounted = true;
    const c1 = await counter(uid);
    await assert.rejects(host.rt.migration.checkpoint(uid, { imageDir: join(full, 'images') }), (err: Error) => {
      assert.match(err.message, /checkpoint of VE .* failed: .*; the VE keeps running/);
      return true;
    });
    assert.equal((await host.rt.inspect(uid)).state, 'running', 'running, not left frozen (paused)');
    await waitFor('the counter to go on', async () => (await counter(uid)).n > c1.n + 2);
    assert.equal((await counter(uid)).pid, c1.pid, 'the same processes');
    assert.equal(await echo(sock, 'still\n'), 'still\n', 'the TCP connection works: its host link is up again');
    assert.deepEqual(readdirSync(join(full, 'images')), [], 'no partial images left');
  } finally {
    sock.destroy();
    if (mounted) spawnSync('umount', [full]);
    rmSync(full, { recursive: true, force: true });
  }
});

/** A VE (default: user namespace) running SERVICE from its init, counting. */
async function serviceVE(name: string, extra: Partial<VEConfig> = {}): Promise<VEConfig> {
  const c = host.config(name, extra);
  await host.rt.ensureRunning(c);
  const w = await host.execOut(c.uid, ['sh', '-c', `cat > /etc/init.d/S50counter <<'EOF'\n${SERVICE}EOF\nchmod +x /etc/init.d/S50counter`]);
  assert.equal(w.code, 0, w.out);
  await host.rt.ensureStopped(c.uid, stop);
  await host.rt.ensureRunning(c);
  await waitFor('the counter', async () => (await counter(c.uid)).n > 3);
  return c;
}

async function connected(ip: string): Promise<Socket> {
  const sock = connect(7000, ip);
  await new Promise<void>((resolve, reject) => sock.once('connect', resolve).once('error', reject));
  return sock;
}

test('a VE with a user namespace suspends and resumes with its TCP connection, and its root still owns its network', { skip }, async () => {
  const c = await serviceVE('ckpu');
  const { uid } = c;
  assert.equal((await host.rt.inspect(uid)).security?.userNamespace, true, 'the VE has a user namespace');
  const sock = await connected(c.addresses[0]!.split('/')[0]!);
  try {
    assert.equal(await echo(sock, 'one\n'), 'one\n');
    const c1 = await counter(uid);
    // What the VE's root set in its own netns (its netns is made anew on restore): a firewall
    // rule (iptables from the host, as the busybox VE has none), an address and a route.
    const pid = (await host.rt.inspect(uid)).pid!;
    await execFileP('nsenter', [`--net=/proc/${pid}/ns/net`, 'iptables', '-A', 'INPUT', '-p', 'tcp', '--dport', '9', '-j', 'DROP']);
    assert.equal((await host.execOut(uid, ['ip', 'addr', 'add', '192.0.2.8/32', 'dev', 'eth0'])).code, 0);
    assert.equal((await host.execOut(uid, ['ip', 'route', 'add', '198.51.100.0/24', 'dev', 'eth0', 'src', '192.0.2.8'])).code, 0);
    assert.equal(await host.rt.suspend(uid), 'updated');
    assert.equal((await host.rt.inspect(uid)).state, 'suspended');
    assert.equal(await host.rt.resume(c), 'updated');
    assert.equal((await host.rt.inspect(uid)).state, 'running');
    await waitFor('the counter to go on', async () => (await counter(uid)).n > c1.n);
    assert.equal((await counter(uid)).pid, c1.pid, 'the same counter process (restored, not restarted)');
    assert.equal(await echo(sock, 'two\n'), 'two\n', 'the same TCP connection works after resume');
    const pid2 = (await host.rt.inspect(uid)).pid!;
    const rules = await execFileP('nsenter', [`--net=/proc/${pid2}/ns/net`, 'iptables-save']);
    assert.match(rules.stdout, /-A INPUT -p tcp -m tcp --dport 9 -j DROP/, 'the VE\'s firewall rule is back');
    assert.match((await host.execOut(uid, ['ip', 'addr', 'show', 'dev', 'eth0'])).out, /192\.0\.2\.8\/32/, 'its extra address is back');
    assert.match((await host.execOut(uid, ['ip', 'route'])).out, /198\.51\.100\.0\/24 dev eth0 .*src 192\.0\.2\.8/, 'its route is back');
    // The restored netns is owned by the VE's (restored) user namespace: its root administers it.
    const admin = await host.execOut(uid, ['ip', 'addr', 'add', '192.0.2.7/32', 'dev', 'lo']);
    assert.equal(admin.code, 0, `the VE's root configures its own network after resume: ${admin.out}`);
    const ids = await host.execOut(uid, ['cat', '/proc/self/uid_map']);
    assert.match(ids.out, /^\s*0\s+\d+\s+65536/m, 'still a mapped user namespace');
    // And it suspends again (the userns pin and netns follow the restored VE).
    assert.equal(await host.rt.suspend(uid), 'updated');
    assert.equal(await host.rt.resume(c), 'updated');
    assert.equal(await echo(sock, 'three\n'), 'three\n', 'the connection survives a second suspend');
  } finally {
    sock.destroy();
    assert.equal(await host.rt.destroy(uid, stop), 'deleted');
  }
});

test('destroy removes a suspended VE with its checkpoints', { skip }, async () => {
  const other = host.config('ckpd', { security: { userNamespace: false } });
  await host.rt.ensureRunning(other);
  assert.equal(await host.rt.suspend(other.uid), 'updated');
  assert.equal(await host.rt.destroy(other.uid, stop), 'deleted');
  assert.ok(!existsSync(join(host.stateDir, 'ves', other.uid)), 'VE dir with checkpoints gone');
  assert.equal((await host.rt.inspect(other.uid)).state, 'absent');
  assert.ok(!(await host.loopsUnderStateDir()).some((l) => l.includes(other.uid)), 'no loop device left');
});

/**
 * Moves `config` from the suite's runtime A to a runtime B (own state dir, A's bridge) by dump,
 * block copy and restore, with a TCP connection from the host open all along.
 */
async function migrateBetweenRuntimes(config: VEConfig): Promise<void> {
  const { uid } = config;
  const a = host.rt;
  const ip = config.addresses[0]!.split('/')[0]!;
  // Runtime B: its own state dir, attached to A's bridge (an L2 neighbour, like another node).
  const bridge = `kvzckp${host.suffix}`.slice(0, 15);
  const subnet = `${config.addresses[0]!.split('.').slice(0, 3).join('.')}.0/24`;
  const bDir = mkdtempSync(join(tmpdir(), 'kvz-ckpb-'));
  const b = createRuntime({ stateDir: bDir, bridge: { name: bridge, subnet }, log: silentLogger });
  const sock = await connected(ip);
  try {
    assert.equal(await echo(sock, 'before\n'), 'before\n');
    const c1 = await counter(uid);
    const images = join(host.stateDir, `migration-out-${uid}`);
    const t0 = Date.now();
    const cp = await a.migration.checkpoint(uid, { imageDir: images });
    assert.ok(cp.bytes > 0 && cp.imageDir === images);
    // The VE's action script marked the freeze and took its host link off the LAN at that moment.
    assert.ok(cp.frozenAt !== undefined && cp.frozenAt >= t0 && cp.frozenAt <= Date.now(), `frozenAt ${cp.frozenAt} within the checkpoint call`);
    const veth = JSON.parse((await execFileP('ip', ['-j', 'link', 'show', 'dev', hostVethName(uid)])).stdout) as { flags: string[] }[];
    assert.ok(!veth[0]!.flags.includes('UP'), `A's host veth is down after the dump: ${veth[0]!.flags.join(',')}`);
    assert.equal(statSync(images).mode & 0o777, 0o700);
    assert.notEqual((await a.inspect(uid)).state, 'running', 'the dump stopped the VE on A');
    await a.migration.releaseDisk(uid);
    await a.migration.releaseDisk(uid);
    assert.deepEqual((await host.loopsUnderStateDir()).filter((l) => l.includes(uid)), [], 'A released the image');

    // The target keeps the VE's host id range (its files are owned by it), as the agents do.
    const sec = (await a.inspect(uid)).security;
    const incoming: VEConfig = sec?.uidRange ? { ...config, security: { userNamespace: true, uidRange: sec.uidRange } } : config;
    await b.migration.prepareIncoming(incoming);
    const src = a.migration.diskImagePath(uid);
    const dst = b.migration.diskImagePath(uid);
    assert.equal(statSync(dst).size, statSync(src).size, 'the incoming image has the size of the source');
    const want = changedBlocks(await blockDigests(src), await blockDigests(dst));
    assert.ok(want.length > 0, 'the empty image differs from the source');
    for await (const { index, data } of readBlocks(src, want)) await writeBlock(dst, index, data);
    assert.deepEqual(await blockDigests(dst), await blockDigests(src), 'the copy matches block for block');
    const inB = join(bDir, 'incoming-images');
    mkdirSync(inB, { mode: 0o700 });
    for (const f of readdirSync(images)) copyFileSync(join(images, f), join(inB, f));
    assert.equal(await dirDigest(inB), await dirDigest(images), 'images arrive intact');

    const res = await b.migration.restore(incoming, inB);
    assert.ok(res.ms >= 0);
    assert.equal((await b.inspect(uid)).state, 'running', 'the VE runs on B');
    // A releases: its copy (netns with the same address) goes; only B answers from now on.
    assert.equal(await a.destroy(uid, stop), 'deleted');
    await execFileP('ping', ['-c', '1', '-W', '2', ip]);
    const out = await (async () => {
      const { PassThrough } = await import('node:stream');
      const s = new PassThrough();
      const chunks: Buffer[] = [];
      s.on('data', (d: Buffer) => chunks.push(d));
      await b.exec(uid, ['cat', '/tmp/c.pid'], { tty: false, stdin: 'ignore', stdout: s, stderr: s });
      return Buffer.concat(chunks).toString().trim();
    })();
    assert.equal(out, c1.pid, 'the counter process moved with the VE');
    assert.equal(await echo(sock, 'after\n'), 'after\n', 'the TCP connection moved with the VE');
    assert.equal(await b.destroy(uid, stop), 'deleted');
    assert.equal(await b.migration.abortIncoming(uid), undefined, 'abortIncoming is idempotent on nothing');
  } finally {
    sock.destroy();
    await b.destroy(uid, stop).catch(() => undefined);
    await a.destroy(uid, stop).catch(() => undefined);
    rmSync(bDir, { recursive: true, force: true });
  }
}

test('live migration between two runtimes on one host: checkpoint, disk by blocks, restore', { skip }, async () => {
  await migrateBetweenRuntimes(config);
});

test('live migration of a VE with a user namespace between two runtimes, with its TCP connection', { skip }, async () => {
  const c = await serviceVE('ckpm');
  assert.equal((await host.rt.inspect(c.uid)).security?.userNamespace, true);
  await migrateBetweenRuntimes(c);
});

test("CRIU's kernel probe cache: installed where /run is not a tmpfs, loaded by CRIU, removed by the node's teardown", { skip }, async () => {
  const criu = '/usr/local/sbin/criu';
  const ownedByCriu = statfsSync('/run').type === 0x01021994;
  await removeKerndatCache();
  await ensureKerndatCache(criu, silentLogger);
  const work = mkdtempSync(join(tmpdir(), 'kvz-kdat-'));
  try {
    // On a tmpfs /run CRIU writes the cache itself, at its first run.
    const check = spawnSync(criu, ['check', '-v4', '-W', work, '-o', 'check.log'], { encoding: 'utf8' });
    assert.equal(check.status, 0, check.stderr);
    const st = statSync(KERNDAT_CACHE);
    assert.equal(st.mode & 0o777, 0o600, 'root only');
    assert.ok(st.size > 0);
    if (!ownedByCriu) {
      assert.match(readFileSync(join(work, 'check.log'), 'utf8'), /Loaded kdat cache from \/run\/criu\.kdat/);
      await removeKerndatCache();
      assert.equal(existsSync(KERNDAT_CACHE), false, 'teardown removes the cache kubevz installed');
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});
