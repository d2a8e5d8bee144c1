// The default seccomp profile: host-reaching syscalls fail with EPERM, the rest is allowed.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { defaultSeccompProfile, seccompArchitectures } from '../../../src/runtime/seccomp.js';
import { buildOciSpec } from '../../../src/runtime/oci-spec.js';

test('the profile allows by default and denies module loading, kexec, clock, keyring and bpf with EPERM', () => {
  const p = defaultSeccompProfile('x64');
  assert.equal(p.defaultAction, 'SCMP_ACT_ALLOW');
  assert.deepEqual(p.architectures, ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32']);
  const denied = p.syscalls.flatMap((s) => (s.action === 'SCMP_ACT_ERRNO' && s.errnoRet === 1 ? s.names : []));
  for (const s of ['init_module', 'finit_module', 'delete_module', 'kexec_load', 'clock_settime', 'adjtimex', 'keyctl', 'bpf', 'open_by_handle_at']) {
    assert.ok(denied.includes(s), s);
  }
  for (const s of ['mount', 'unshare', 'clone', 'ptrace', 'reboot']) assert.ok(!denied.includes(s), `${s} stays allowed (init systems need it)`);
  assert.deepEqual(seccompArchitectures('arm64'), ['SCMP_ARCH_AARCH64', 'SCMP_ARCH_ARM']);
});

test('the bundle carries seccomp, the user namespace by path with mappings, and no host-reaching capability', () => {
  const spec = buildOciSpec({
    config: { uid: 'u1', name: 'ns/a', hostname: 'a', template: 'busybox', addresses: [], limits: {} },
    rootfs: '/r', netnsPath: '/run/netns/x', cgroupsPath: '/kubevz/x', init: ['/sbin/init'],
    host: { boundingCaps: ['CAP_CHOWN', 'CAP_SYS_ADMIN', 'CAP_SYS_MODULE', 'CAP_SYS_TIME', 'CAP_SYS_RAWIO', 'CAP_NET_ADMIN'], nofileHard: 1024 },
    userns: { path: '/state/ves/u1/userns', range: { hostId: 2_000_000, size: 65536 } },
  });
  assert.ok(spec.linux.seccomp?.syscalls[0]?.names.includes('init_module'));
  assert.deepEqual(spec.linux.namespaces.find((n) => n.type === 'user'), { type: 'user', path: '/state/ves/u1/userns' });
  assert.deepEqual(spec.linux.uidMappings, [{ containerID: 0, hostID: 2_000_000, size: 65536 }]);
  assert.deepEqual(spec.linux.gidMappings, [{ containerID: 0, hostID: 2_000_000, size: 65536 }]);
  assert.deepEqual(spec.process.capabilities.bounding, ['CAP_CHOWN', 'CAP_SYS_ADMIN', 'CAP_NET_ADMIN']);
  assert.ok(spec.linux.namespaces.some((n) => n.type === 'cgroup'));
  assert.ok(spec.linux.maskedPaths.includes('/proc/kcore'));
  const priv = buildOciSpec({
    config: { uid: 'u2', name: 'ns/b', hostname: 'b', template: 'busybox', addresses: [], limits: {} },
    rootfs: '/r', netnsPath: '/run/netns/y', cgroupsPath: '/kubevz/y', init: ['/sbin/init'], host: { boundingCaps: ['CAP_CHOWN'], nofileHard: 1024 },
  });
  assert.equal(priv.linux.namespaces.some((n) => n.type === 'user'), false, 'privileged mode: no user namespace');
  assert.equal(priv.linux.uidMappings, undefined);
});
