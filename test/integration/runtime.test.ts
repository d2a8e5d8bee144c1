// The host runtime against the real kernel: runc, CNI bridge, overlay, cgroup v1. Root only.
// Every host object carries a unique suffix; `after` removes everything, bridge included.

import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, test, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { silentLogger } from '../../src/core/logger.js';
import { cgroupPath, containerId, createRuntime, hostVethName, macAddress, netnsName, teardownNode, type VEConfig, type VELimits, type VERuntime } from '../../src/runtime/index.js';
import { missingPrereqs, requirePrereqs, uniqueSuffix } from '../helpers/prereq.js';
import { execCapture } from '../helpers/ve-host.js';

const run = promisify(execFile);
const prereqs = { root: true, binaries: ['runc', 'ip', 'ping'] };
const skip = missingPrereqs(prereqs).length > 0;

const suffix = uniqueSuffix();
const bridge = `kvzt${suffix}`.slice(0, 15);
const net = 100 + (process.pid % 100);
const subnet = `10.213.${net}.0/24`;
const stateDir = skip ? '' : mkdtempSync(join(tmpdir(), 'kvz-rt-'));
const uid = randomUUID();
const address = `10.213.${net}.10`;
const config: VEConfig = {
  uid,
  name: `test/web-${suffix}`,
  hostname: `web-${suffix}`,
  template: 'busybox',
  addresses: [`${address}/24`],
  limits: { memoryBytes: 128 << 20, swapBytes: 32 << 20, cpuShares: 512, cpuQuotaUs: 50_000, cpuPeriodUs: 100_000, pids: 100 },
};
const stop = { timeoutMs: 5_000 };
let rt: VERuntime;

before(() => {
  if (skip) return;
  rt = createRuntime({ stateDir, bridge: { name: bridge, subnet }, log: silentLogger });
});

after(async () => {
  if (skip) return;
  await rt.destroy(uid, stop).catch(() => undefined);
  await rt.destroy(detachedUid, stop).catch(() => undefined);
  await teardownNode({ bridge });
  rmSync(stateDir, { recursive: true, force: true });
});

function guard(t: TestContext): boolean {
  return requirePrereqs(t, prereqs);
}

function execOut(id: string, argv: string[]): Promise<{ code: number; out: string }> {
  return execCapture(rt, id, argv);
}

async function waitFor(what: string, fn: () => Promise<boolean>, ms = 5_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await fn())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** readLimits without openFiles (init's RLIMIT_NOFILE, host-dependent default): the cgroup part. */
function cgroupLimits(l: VELimits): VELimits {
  const { openFiles: _nofile, ...rest } = l;
  return rest;
}

function cgroupFile(controller: string, file: string): string {
  return readFileSync(`/sys/fs/cgroup/${controller}${cgroupPath(uid)}/${file}`, 'utf8').trim();
}

test('a VE starts from the busybox template and is idempotent', async (t) => {
  if (!guard(t)) return;
  const t0 = performance.now();
  assert.equal(await rt.ensureRunning(config), 'created');
  t.diagnostic(`create+start incl. template build: ${Math.round(performance.now() - t0)} ms`);
  const st = await rt.inspect(uid);
  assert.equal(st.state, 'running');
  assert.ok(st.pid && st.pid > 1);
  assert.equal(st.prepared, true);
  assert.deepEqual(st.addresses, [`${address}/24`]);
  assert.deepEqual(st.config, config);
  assert.equal(await rt.ensureRunning(config), 'unchanged');
  assert.equal((await rt.inspect(uid)).pid, st.pid);
});

test('the VE sees only its own processes, init is PID 1', async (t) => {
  if (!guard(t)) return;
  const { code, out } = await execOut(uid, ['ps', '-o', 'pid,comm']);
  assert.equal(code, 0);
  const rows = out.trim().split('\n').slice(1).map((l) => l.trim().split(/\s+/));
  assert.deepEqual(rows[0], ['1', 'init']);
  assert.ok(rows.length <= 4, `only the VE's processes: ${out}`);
  assert.ok(!rows.some((r) => r[1] === 'node'));
});

test('the VE has its hostname, address and MAC, and is reachable from the host (a netns we made)', async (t) => {
  if (!guard(t)) return;
  assert.equal((await execOut(uid, ['hostname'])).out.trim(), config.hostname);
  assert.equal((await execOut(uid, ['cat', '/sys/class/net/eth0/address'])).out.trim(), macAddress(uid));
  const addr = await execOut(uid, ['ip', '-4', 'addr', 'show', 'eth0']);
  assert.match(addr.out, new RegExp(`inet ${address.replace(/\./g, '\\.')}/24`));
  const { stdout } = await run('ping', ['-c', '1', '-W', '2', address]);
  assert.match(stdout, /1 (packets )?received/);
  assert.ok(existsSync(`/sys/class/net/${hostVethName(uid)}`), 'host veth has the VE-derived name');
});

test('cgroup files hold the declared limits', async (t) => {
  if (!guard(t)) return;
  assert.equal(cgroupFile('memory', 'memory.limit_in_bytes'), String(128 << 20));
  assert.equal(cgroupFile('memory', 'memory.memsw.limit_in_bytes'), String(160 << 20));
  assert.equal(cgroupFile('cpu', 'cpu.shares'), '512');
  assert.equal(cgroupFile('cpu', 'cpu.cfs_quota_us'), '50000');
  assert.equal(cgroupFile('pids', 'pids.max'), '100');
  assert.deepEqual(cgroupLimits(await rt.readLimits(uid)), config.limits);
});

test('a limit change lands live; init keeps its PID', async (t) => {
  if (!guard(t)) return;
  const pid = (await rt.inspect(uid)).pid;
  const limits = { memoryBytes: 256 << 20, cpuShares: 2048, pids: 200 };
  assert.equal(await rt.updateLimits(uid, limits), 'updated');
  assert.equal(await rt.updateLimits(uid, limits), 'unchanged');
  assert.deepEqual(cgroupLimits(await rt.readLimits(uid)), { memoryBytes: 256 << 20, swapBytes: 0, cpuShares: 2048, cpuPeriodUs: 100_000, pids: 200 });
  assert.equal(cgroupFile('cpu', 'cpu.cfs_quota_us'), '-1', 'a dropped quota is cleared');
  assert.equal((await rt.inspect(uid)).pid, pid);
  // drift made behind the runtime's back is put right by ensureRunning
  await run('runc', ['--root', join(stateDir, 'runc'), 'update', '--pids-limit', '7', containerId(uid)]);
  assert.equal(await rt.ensureRunning({ ...config, limits }), 'updated');
  assert.equal(cgroupFile('pids', 'pids.max'), '200');
  // through ensureRunning too: only limits differ → live update, same init
  assert.equal(await rt.ensureRunning(config), 'updated');
  assert.deepEqual(cgroupLimits(await rt.readLimits(uid)), config.limits);
  assert.equal((await rt.inspect(uid)).pid, pid);
});

test('init reaps orphaned children', async (t) => {
  if (!guard(t)) return;
  await execOut(uid, ['sh', '-c', '(sleep 0.1 &); (sleep 0.1 &); (sleep 0.1 &)']);
  await new Promise((r) => setTimeout(r, 400));
  const { out } = await execOut(uid, ['ps', '-o', 'pid,stat,comm']);
  assert.ok(!/\sZ\s/.test(out), `no zombies: ${out}`);
});

test('stop is graceful (SIGTERM to init) and start brings it back', async (t) => {
  if (!guard(t)) return;
  const t0 = performance.now();
  // A long timeout: finishing well before it means init obeyed SIGTERM (no SIGKILL needed).
  assert.equal(await rt.ensureStopped(uid, { timeoutMs: 15_000 }), 'updated');
  const ms = performance.now() - t0;
  t.diagnostic(`graceful stop: ${Math.round(ms)} ms`);
  assert.ok(ms < 10_000, `init stopped on SIGTERM without waiting for SIGKILL (${ms} ms)`);
  const st = await rt.inspect(uid);
  assert.equal(st.state, 'absent');
  assert.equal(st.prepared, true, 'disk and netns kept');
  assert.equal(await rt.ensureStopped(uid, stop), 'unchanged');
  await assert.rejects(rt.exec(uid, ['true'], { tty: false }), { code: 'Conflict' });

  const t1 = performance.now();
  assert.equal(await rt.ensureRunning(config), 'updated');
  t.diagnostic(`start of a prepared VE: ${Math.round(performance.now() - t1)} ms`);
  assert.equal((await rt.inspect(uid)).state, 'running');
  assert.equal((await execOut(uid, ['hostname'])).out.trim(), config.hostname);
});

test('a dead init is detected and ensureRunning recovers', async (t) => {
  if (!guard(t)) return;
  const pid = (await rt.inspect(uid)).pid!;
  process.kill(pid, 'SIGKILL');
  await waitFor('stopped state', async () => (await rt.inspect(uid)).state === 'stopped');
  assert.equal(await rt.ensureRunning(config), 'updated');
  const st = await rt.inspect(uid);
  assert.equal(st.state, 'running');
  assert.notEqual(st.pid, pid);
});

test('a half-torn-down VE (netns gone) is redone by ensureRunning', async (t) => {
  if (!guard(t)) return;
  await rt.ensureStopped(uid, stop);
  await run('ip', ['link', 'del', hostVethName(uid)]);
  await run('ip', ['netns', 'del', netnsName(uid)]);
  assert.equal((await rt.inspect(uid)).prepared, false);
  assert.equal(await rt.ensureRunning(config), 'updated');
  await run('ping', ['-c', '1', '-W', '2', address]);
});

test('init shuts down on SIGPWR and SIGINT too', async (t) => {
  if (!guard(t)) return;
  for (const sig of ['PWR', 'INT']) {
    await rt.ensureRunning(config);
    await run('runc', ['--root', join(stateDir, 'runc'), 'kill', containerId(uid), sig]);
    await waitFor(`stop on SIG${sig}`, async () => (await rt.inspect(uid)).state === 'stopped', 3_000);
  }
  assert.equal(await rt.ensureRunning(config), 'updated');
});

test('a failed create undoes its partial steps', async (t) => {
  if (!guard(t)) return;
  const bad: VEConfig = { ...config, uid: randomUUID(), hostname: 'bad', addresses: ['10.99.0.10/24'] };
  await assert.rejects(rt.ensureRunning(bad), { code: 'Invalid' });
  assert.ok(!existsSync(join(stateDir, 'ves', bad.uid)), 'no VE dir');
  assert.ok(!existsSync(`/run/netns/${netnsName(bad.uid)}`), 'no netns');
  assert.ok(!readFileSync('/proc/self/mountinfo', 'utf8').includes(bad.uid), 'no mount');
  assert.equal((await rt.inspect(bad.uid)).state, 'absent');
});

const detachedUid = randomUUID();

test('VEs outlive the process that started them; list() finds them', async (t) => {
  if (!guard(t)) return;
  const index = resolve(fileURLToPath(import.meta.url), '../../../src/runtime/index.js');
  const other: VEConfig = { ...config, uid: detachedUid, name: 'test/other', hostname: 'other', addresses: [`10.213.${net}.11/24`] };
  const script = `
    const { createRuntime } = await import(${JSON.stringify(index)});
    const log = { debug() {}, info() {}, warn() {}, error() {}, child() { return log; } };
    const rt = createRuntime({ stateDir: ${JSON.stringify(stateDir)}, bridge: { name: ${JSON.stringify(bridge)}, subnet: ${JSON.stringify(subnet)} }, log });
    await rt.ensureRunning(${JSON.stringify(other)});
  `;
  execFileSync(process.execPath, ['--input-type=module', '-e', script], { stdio: 'ignore', timeout: 20_000 });
  const st = await rt.inspect(detachedUid);
  assert.equal(st.state, 'running');
  await run('ping', ['-c', '1', '-W', '2', '10.213.' + net + '.11']);
  const all = await rt.list();
  assert.deepEqual(all.map((v) => v.uid).sort(), [uid, detachedUid].sort());
  assert.equal(await rt.destroy(detachedUid, stop), 'deleted');
});

test('destroy leaves nothing behind', async (t) => {
  if (!guard(t)) return;
  const id = containerId(uid);
  assert.equal(await rt.destroy(uid, stop), 'deleted');
  assert.equal((await rt.inspect(uid)).state, 'absent');
  assert.ok(!existsSync(`/run/netns/${netnsName(uid)}`), 'netns gone');
  assert.ok(!existsSync(`/sys/class/net/${hostVethName(uid)}`), 'veth gone');
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8');
  assert.ok(!mounts.includes(stateDir), 'no mounts under the state dir');
  for (const c of ['memory', 'cpu', 'cpuacct', 'pids', 'freezer', 'devices', 'blkio', 'cpuset', 'systemd', 'unified']) {
    assert.ok(!existsSync(`/sys/fs/cgroup/${c}/kubevz/${id}`), `cgroup ${c} gone`);
  }
  assert.ok(!existsSync(join(stateDir, 'ves', uid)), 'VE state dir gone');
  const { stdout } = await run('runc', ['--root', join(stateDir, 'runc'), 'list', '-q']);
  assert.equal(stdout.trim(), '');
  assert.equal(await rt.destroy(uid, stop), 'unchanged');
  assert.deepEqual(await rt.list(), []);
});
