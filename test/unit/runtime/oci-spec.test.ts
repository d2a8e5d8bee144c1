import assert from 'node:assert/strict';
import { test } from 'node:test';
import { capsFromMask, parseNofileHard, parseProcStatusCapBnd } from '../../../src/runtime/host-info.js';
import { buildOciSpec, DROPPED_CAPS, type OciSpecInput } from '../../../src/runtime/oci-spec.js';
import type { VEConfig } from '../../../src/runtime/types.js';

const config: VEConfig = {
  uid: '0b5e0f5a-1111-4222-8333-444455556666',
  name: 'default/web1',
  hostname: 'web1',
  template: 'busybox',
  addresses: ['10.213.0.10/24'],
  limits: { memoryBytes: 512 << 20, swapBytes: 256 << 20, cpuShares: 1000, cpuQuotaUs: 150_000, cpuPeriodUs: 100_000, pids: 256 },
};

function input(over: Partial<OciSpecInput> = {}): OciSpecInput {
  return {
    config,
    rootfs: '/var/lib/kubevz/ves/x/rootfs',
    netnsPath: '/run/netns/kvz-0b5e0f5a1111',
    cgroupsPath: '/kubevz/kvz-0b5e0f5a1111',
    init: ['/sbin/init'],
    host: { boundingCaps: capsFromMask('1fffeffffff'), nofileHard: 20_000 },
    ...over,
  };
}

test('system container: init as PID 1, hostname, all namespaces, the agent netns by path', () => {
  const spec = buildOciSpec(input());
  assert.deepEqual(spec.process.args, ['/sbin/init']);
  assert.equal(spec.process.terminal, false);
  assert.ok(spec.process.env.includes('container=kubevz'));
  assert.equal(spec.hostname, 'web1');
  assert.equal(spec.root.path, '/var/lib/kubevz/ves/x/rootfs');
  assert.deepEqual(
    spec.linux.namespaces.map((n) => n.type).sort(),
    ['cgroup', 'ipc', 'mount', 'network', 'pid', 'uts'],
  );
  assert.deepEqual(spec.linux.namespaces.find((n) => n.type === 'network'), { type: 'network', path: '/run/netns/kvz-0b5e0f5a1111' });
  assert.equal(spec.linux.cgroupsPath, '/kubevz/kvz-0b5e0f5a1111');
  assert.equal(spec.annotations['io.kubevz.uid'], config.uid);
});

test('limits land in linux.resources', () => {
  const r = buildOciSpec(input()).linux.resources;
  assert.deepEqual(r.memory, { limit: 512 << 20, swap: 768 << 20, reservation: -1 });
  assert.deepEqual(r.cpu, { shares: 1000, quota: 150_000, period: 100_000 });
  assert.deepEqual(r.pids, { limit: 256 });
  assert.deepEqual(r.devices[0], { allow: false, access: 'rwm' }, 'deny all first');
  assert.ok(r.devices.some((d) => d.allow && d.major === 136), 'pts allowed');
  assert.ok(!r.devices.some((d) => d.allow && d.type === 'b'), 'no block devices');
});

test('capabilities: host-dangerous ones dropped, SYS_BOOT kept, only what the host bounding set has', () => {
  const caps = buildOciSpec(input()).process.capabilities;
  for (const c of DROPPED_CAPS) assert.ok(!caps.bounding.includes(c), c);
  assert.ok(caps.bounding.includes('CAP_SYS_BOOT'));
  assert.ok(caps.bounding.includes('CAP_NET_ADMIN'));
  // mask 1fffeffffff lacks bit 24 = CAP_SYS_RESOURCE
  assert.ok(!caps.bounding.includes('CAP_SYS_RESOURCE'));
  assert.deepEqual(caps.effective, caps.bounding);
  const full = buildOciSpec(input({ host: { boundingCaps: capsFromMask('1ffffffffff'), nofileHard: 20_000 } })).process.capabilities;
  assert.ok(full.bounding.includes('CAP_SYS_RESOURCE'));
});

test('RLIMIT_NOFILE never exceeds the host hard limit', () => {
  assert.deepEqual(buildOciSpec(input()).process.rlimits, [{ type: 'RLIMIT_NOFILE', hard: 20_000, soft: 20_000 }]);
  const big = buildOciSpec(input({ host: { boundingCaps: [], nofileHard: Infinity } })).process.rlimits[0];
  assert.equal(big?.hard, 1_048_576);
});

test('mounts: proc, tmpfs /dev, devpts, shm, mqueue, read-only sysfs and cgroup; masked and read-only paths', () => {
  const spec = buildOciSpec(input());
  const byDest = new Map(spec.mounts.map((m) => [m.destination, m]));
  assert.equal(byDest.get('/proc')?.type, 'proc');
  assert.equal(byDest.get('/dev')?.type, 'tmpfs');
  assert.equal(byDest.get('/dev/pts')?.type, 'devpts');
  assert.equal(byDest.get('/dev/shm')?.type, 'tmpfs');
  assert.equal(byDest.get('/dev/mqueue')?.type, 'mqueue');
  assert.ok(byDest.get('/sys')?.options.includes('ro'));
  assert.ok(byDest.get('/sys/fs/cgroup')?.options.includes('ro'));
  assert.ok(spec.linux.maskedPaths.includes('/proc/kcore'));
  assert.ok(spec.linux.readonlyPaths.includes('/proc/sysrq-trigger'));
});

test('host facts are parsed from /proc text', () => {
  assert.ok(parseProcStatusCapBnd('Name:\tx\nCapBnd:\t000001fffeffffff\n').includes('CAP_SYS_ADMIN'));
  assert.ok(!parseProcStatusCapBnd('CapBnd:\t000001fffeffffff\n').includes('CAP_SYS_RESOURCE'));
  assert.equal(parseNofileHard('Limit Soft Limit Hard Limit Units\nMax open files            1024                 20000                files\n'), 20_000);
  assert.equal(parseNofileHard('Max open files            unlimited            unlimited            files\n'), Infinity);
});
