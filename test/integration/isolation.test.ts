// Isolation and hardening against the real kernel (root): per-VE user namespaces with their own
// host id ranges, what a VE cannot do (modules, host processes, other VEs' files and loopback,
// denied syscalls), privileged mode, exclusive device grants. Unique names; `after` removes all.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test, type TestContext } from 'node:test';
import { silentLogger } from '../../src/core/logger.js';
import { createRuntime, teardownNode, type VEConfig, type VERuntime } from '../../src/runtime/index.js';
import { rootfsPaths } from '../../src/runtime/rootfs.js';
import { FIRST_HOST_ID, rangesOverlap } from '../../src/runtime/userns.js';
import { missingPrereqs, requirePrereqs, uniqueSuffix } from '../helpers/prereq.js';
import { execCapture } from '../helpers/ve-host.js';

const prereqs = { root: true, binaries: ['runc', 'ip', 'busybox', 'mknod'] };
const skip = missingPrereqs(prereqs).length > 0;
const suffix = uniqueSuffix();
const bridge = `kvzi${suffix}`.slice(0, 15);
const net = 100 + ((process.pid + 37) % 100);
const stateDir = skip ? '' : mkdtempSync(join(tmpdir(), 'kvz-iso-'));
const stop = { timeoutMs: 5_000 };
const testDevice = `/dev/kvz-test-${suffix}`;
let rt: VERuntime;
const made: string[] = [];

function ve(name: string, host: number, extra: Partial<VEConfig> = {}): VEConfig {
  const c: VEConfig = {
    uid: randomUUID(),
    name: `test/${name}-${suffix}`,
    hostname: `${name}-${suffix}`,
    template: 'busybox',
    addresses: [`10.213.${net}.${host}/24`],
    limits: { memoryBytes: 64 << 20, pids: 100 },
    ...extra,
  };
  made.push(c.uid);
  return c;
}

const a = ve('a', 11);
const b = ve('b', 12);
const priv = ve('priv', 13, { security: { userNamespace: false } });

before(async () => {
  if (skip) return;
  rt = createRuntime({ stateDir, bridge: { name: bridge, subnet: `10.213.${net}.0/24` }, log: silentLogger });
  await Promise.all([rt.ensureRunning(a), rt.ensureRunning(b), rt.ensureRunning(priv)]);
});

after(async () => {
  if (skip) return;
  for (const uid of made) await rt.destroy(uid, stop).catch(() => undefined);
  await teardownNode({ bridge });
  rmSync(testDevice, { force: true });
  rmSync(stateDir, { recursive: true, force: true });
});

function guard(t: TestContext): boolean {
  return requirePrereqs(t, prereqs);
}

function sh(uid: string, script: string): Promise<{ code: number; out: string }> {
  return execCapture(rt, uid, ['sh', '-c', script]);
}

async function pidOf(uid: string): Promise<number> {
  const pid = (await rt.inspect(uid)).pid;
  assert.ok(pid, `VE ${uid} runs`);
  return pid;
}

test('each VE has its own user namespace: uid_map on the host shows its recorded range', async (t) => {
  if (!guard(t)) return;
  const [sa, sb] = [(await rt.inspect(a.uid)).security, (await rt.inspect(b.uid)).security];
  assert.ok(sa?.userNamespace && sa.uidRange && !sa.privileged, 'user namespace is the default');
  assert.ok(sb?.uidRange);
  assert.ok(sa.uidRange.hostId >= FIRST_HOST_ID && sa.uidRange.size === 65536);
  assert.ok(!rangesOverlap(sa.uidRange, sb.uidRange), 'two VEs never share ids');
  const map = readFileSync(`/proc/${await pidOf(a.uid)}/uid_map`, 'utf8').trim().split(/\s+/).map(Number);
  assert.deepEqual(map, [0, sa.uidRange.hostId, 65536]);
  const gid = readFileSync(`/proc/${await pidOf(a.uid)}/gid_map`, 'utf8').trim().split(/\s+/).map(Number);
  assert.deepEqual(gid, [0, sa.uidRange.hostId, 65536]);
  // The record survives a new runtime object (an agent restart) and keeps the range.
  const again = createRuntime({ stateDir, bridge: { name: bridge, subnet: `10.213.${net}.0/24` }, log: silentLogger });
  assert.deepEqual((await again.inspect(a.uid)).security?.uidRange, sa.uidRange);
  assert.equal(await again.ensureRunning(a), 'unchanged');
});

test('the VE sees its template as its own root\'s; files its root makes are the range base on the host disk', async (t) => {
  if (!guard(t)) return;
  const r = await sh(a.uid, 'id -u; stat -c %u /bin/busybox /etc/hostname /; touch /made-by-root && mkdir -p /root && echo ok');
  assert.equal(r.code, 0, r.out);
  assert.deepEqual(r.out.trim().split('\n'), ['0', '0', '0', '0', 'ok'], 'root, template files, identity files and / are root\'s inside');
  const base = (await rt.inspect(a.uid)).security?.uidRange?.hostId;
  const upper = rootfsPaths(join(stateDir, 'ves', a.uid)).upper;
  assert.equal(statSync(join(upper, 'made-by-root')).uid, base, 'in the VE\'s disk (overlay upper)');
  assert.equal(statSync(join(upper, 'made-by-root')).gid, base);
});

test('a process inside cannot load a kernel module', async (t) => {
  if (!guard(t)) return;
  for (const uid of [a.uid, priv.uid]) {
    const r = await sh(uid, 'printf "\\177ELFjunk" > /tmp-mod.ko; insmod /tmp-mod.ko');
    assert.notEqual(r.code, 0, r.out);
    assert.match(r.out, /not permitted/i, `init_module is refused (EPERM): ${r.out}`);
  }
});

test('seccomp blocks a denied syscall that needs no privilege (adjtimex, read-only)', async (t) => {
  if (!guard(t)) return;
  execFileSync('busybox', ['adjtimex'], { stdio: 'ignore' }); // allowed on the host: the refusal below is the filter's
  for (const uid of [a.uid, priv.uid]) {
    const r = await sh(uid, 'adjtimex');
    assert.notEqual(r.code, 0, r.out);
    assert.match(r.out, /not permitted/i, r.out);
  }
});

test('a VE sees only its own processes', async (t) => {
  if (!guard(t)) return;
  const r = await sh(a.uid, 'ps -o pid,comm');
  assert.equal(r.code, 0, r.out);
  const rows = r.out.trim().split('\n').slice(1).map((l) => l.trim().split(/\s+/));
  assert.ok(rows.length <= 4, `only init, sh and ps: ${r.out}`);
  assert.ok(rows.some(([pid]) => pid === '1'), 'init is PID 1');
  assert.ok(!rows.some(([, comm]) => comm === 'node' || comm === 'runc'), r.out);
});

test('a file written in one VE is absent in another VE\'s root', async (t) => {
  if (!guard(t)) return;
  assert.equal((await sh(a.uid, `echo secret > /only-in-a-${suffix}`)).code, 0);
  assert.equal((await sh(a.uid, `test -f /only-in-a-${suffix}`)).code, 0, 'present in A');
  assert.notEqual((await sh(b.uid, `test -e /only-in-a-${suffix}`)).code, 0, 'absent in B');
  assert.ok(!existsSync(join(stateDir, 'ves', b.uid, 'rootfs', `only-in-a-${suffix}`)));
});

test('a listener on loopback in VE A is not reachable from VE B', async (t) => {
  if (!guard(t)) return;
  const port = 7000 + (process.pid % 1000);
  const start = await sh(a.uid, `(nc -ll -p ${port} -e echo hello-from-a </dev/null >/dev/null 2>&1 &) ; sleep 0.3`);
  assert.equal(start.code, 0, start.out);
  const inA = await sh(a.uid, `nc -w 2 127.0.0.1 ${port} </dev/null`);
  assert.match(inA.out, /hello-from-a/, 'the listener answers inside A');
  const inB = await sh(b.uid, `nc -w 2 127.0.0.1 ${port} </dev/null`);
  assert.doesNotMatch(inB.out, /hello-from-a/, `B's loopback is its own: ${inB.out}`);
});

test('the VE root administers its own network (netns owned by its user namespace)', async (t) => {
  if (!guard(t)) return;
  const r = await sh(a.uid, 'ip link add kvzdummy0 type dummy 2>/dev/null || ip link set lo mtu 65000 && echo ok');
  assert.match(r.out, /ok/, r.out);
  const sys = await sh(a.uid, 'grep -c " /sys sysfs" /proc/mounts');
  assert.equal(sys.out.trim(), '1', 'a real sysfs is mounted');
});

test('privileged mode has no user namespace and says so', async (t) => {
  if (!guard(t)) return;
  const st = await rt.inspect(priv.uid);
  assert.equal(st.security?.privileged, true);
  assert.equal(st.security?.userNamespace, false);
  assert.equal(st.security?.uidRange, undefined);
  const map = readFileSync(`/proc/${await pidOf(priv.uid)}/uid_map`, 'utf8').trim().split(/\s+/).map(Number);
  assert.deepEqual(map, [0, 0, 4294967295], 'the initial user namespace');
  await assert.rejects(rt.ensureRunning({ ...priv, security: { userNamespace: true } }), /fixed for a VE's lifetime/);
});

test('a host device granted to one VE is refused to another', async (t) => {
  if (!guard(t)) return;
  execFileSync('mknod', ['-m', '0666', testDevice, 'c', '1', '3']);
  const holder = ve('dev1', 14, { devices: [{ path: testDevice }] });
  const other = ve('dev2', 15, { devices: [{ path: testDevice, access: 'rw' }] });
  await rt.ensureRunning(holder);
  const r = await sh(holder.uid, `echo x > ${testDevice} && echo written`);
  assert.match(r.out, /written/, `the granted node works inside: ${r.out}`);
  await assert.rejects(rt.ensureRunning(other), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'Conflict');
    assert.match(err.message, new RegExp(`already granted to VE ${holder.name}`));
    return true;
  });
  assert.equal((await rt.inspect(other.uid)).state, 'absent');
  await rt.destroy(holder.uid, stop);
  assert.notEqual(await rt.ensureRunning(other), 'unchanged', 'free again once the holder is gone');
});
