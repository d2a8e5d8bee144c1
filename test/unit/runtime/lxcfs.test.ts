import assert from 'node:assert/strict';
import { test } from 'node:test';
import { capsFromMask } from '../../../src/runtime/host-info.js';
import {
  LXCFS_FILES,
  devString,
  hostBinds,
  isLxcfsCmdline,
  lxcfsArgs,
  lxcfsBinds,
  lxcfsMountDev,
  lxcfsPaths,
  parseMountinfo,
  staleBinds,
} from '../../../src/runtime/lxcfs.js';
import { buildOciSpec } from '../../../src/runtime/oci-spec.js';

const MNT = '/var/lib/kubevz/lxcfs/mnt';

// A VE init's mountinfo (paths relative to its root): lxcfs binds of an lxcfs on 0:61, one of a dead one on 0:55.
const VE_MOUNTINFO = [
  '600 500 0:70 / / rw,relatime - overlay overlay rw,lowerdir=/x,upperdir=/y,workdir=/z',
  '601 600 0:71 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw',
  '602 601 0:61 /proc/meminfo /proc/meminfo rw,nosuid,nodev,noexec,relatime - fuse.lxcfs lxcfs rw,user_id=0,group_id=0,allow_other',
  '603 601 0:55 /proc/cpuinfo /proc/cpuinfo rw,nosuid,nodev,noexec,relatime - fuse.lxcfs lxcfs rw,user_id=0,group_id=0,allow_other',
  '604 601 0:71 /uptime /proc/uptime rw,nosuid,nodev,noexec,relatime - proc proc rw',
  '605 600 0:72 / /sys ro,nosuid,nodev,noexec,relatime - sysfs sysfs ro',
  '606 605 0:61 /sys/devices/system/cpu/online /sys/devices/system/cpu/online rw,nosuid - fuse.lxcfs lxcfs rw',
  '607 600 0:73 / /dir\\040with\\040space rw - tmpfs tmpfs rw',
  '',
].join('\n');

test('mountinfo: device, root, mount point (unescaped) and filesystem type per line', () => {
  const entries = parseMountinfo(VE_MOUNTINFO);
  assert.equal(entries.length, 8);
  assert.deepEqual(entries[2], { dev: '0:61', root: '/proc/meminfo', mountPoint: '/proc/meminfo', fsType: 'fuse.lxcfs' });
  assert.equal(entries[7]!.mountPoint, '/dir with space');
  // Optional fields before the separator do not shift the filesystem type.
  const shared = parseMountinfo('30 1 0:40 / /mnt rw shared:5 master:2 - fuse.lxcfs lxcfs rw');
  assert.equal(shared[0]!.fsType, 'fuse.lxcfs');
});

test('the live lxcfs is the topmost fuse.lxcfs mount at the mount point; a dead one under a tmpfs is not', () => {
  const host = parseMountinfo([
    `40 1 0:55 / ${MNT} rw - fuse.lxcfs lxcfs rw`,
    `41 40 0:61 / ${MNT} rw - fuse.lxcfs lxcfs rw`,
    `42 1 8:1 / /var/lib/kubevz rw - ext4 /dev/sda1 rw`,
  ].join('\n'));
  assert.equal(lxcfsMountDev(host, MNT), '0:61');
  assert.equal(lxcfsMountDev(host, '/elsewhere'), undefined);
  assert.equal(lxcfsMountDev(parseMountinfo(`43 1 0:80 / ${MNT} rw - tmpfs tmpfs rw`), MNT), undefined);
});

test('stale binds: the dead lxcfs\'s and the host\'s own files, never a path without a bind', () => {
  const entries = parseMountinfo(VE_MOUNTINFO);
  // meminfo and cpu/online are on the live lxcfs; cpuinfo is the dead one's; uptime a host-file bind (restore while lxcfs was down).
  assert.deepEqual(staleBinds(entries, '0:61'), ['/proc/cpuinfo', '/proc/uptime']);
  // After another restart (new device) every bind is stale.
  assert.deepEqual(staleBinds(entries, '0:99'), ['/proc/cpuinfo', '/proc/meminfo', '/proc/uptime', '/sys/devices/system/cpu/online']);
  // A VE started while lxcfs was down has no binds: nothing is injected (runc would not know the mounts and checkpoints would fail).
  assert.deepEqual(staleBinds(parseMountinfo(VE_MOUNTINFO.split('\n').slice(0, 2).join('\n')), '0:61'), []);
});

test('the process check accepts only an lxcfs serving this mount point', () => {
  assert.equal(isLxcfsCmdline(`/usr/bin/lxcfs\0-f\0-l\0-p\0/x/lxcfs.pid\0${MNT}\0`, MNT), true);
  assert.equal(isLxcfsCmdline(`lxcfs\0-f\0${MNT}\0`, MNT), true);
  assert.equal(isLxcfsCmdline(`/usr/bin/lxcfs\0-f\0/var/lib/lxcfs\0`, MNT), false, 'another lxcfs (the distribution\'s own)');
  assert.equal(isLxcfsCmdline(`/bin/sleep\0${MNT}\0`, MNT), false, 'a reused pid');
  assert.equal(isLxcfsCmdline('', MNT), false);
});

test('lxcfs runs in the foreground with its own pidfile, load average and CFS-aware CPU views', () => {
  const p = lxcfsPaths('/var/lib/kubevz');
  assert.equal(p.mnt, MNT);
  const args = lxcfsArgs(p.mnt, p.pidfile);
  assert.equal(args[0], '-f');
  assert.equal(args.at(-1), MNT);
  assert.deepEqual(args.slice(args.indexOf('-p'), args.indexOf('-p') + 2), ['-p', '/var/lib/kubevz/lxcfs/lxcfs.pid']);
  assert.ok(args.includes('-l') && args.includes('--enable-cfs'));
  assert.ok(!args.includes('-u'), 'swap stays virtualized');
});

test('binds: every lxcfs file over the same VE path; the host fallback binds the same destinations', () => {
  const binds = lxcfsBinds(MNT);
  assert.equal(binds.length, LXCFS_FILES.length);
  assert.deepEqual(binds.find((b) => b.destination === '/proc/meminfo'), { source: `${MNT}/proc/meminfo`, destination: '/proc/meminfo' });
  assert.ok(binds.some((b) => b.destination === '/sys/devices/system/cpu/online'));
  assert.deepEqual(hostBinds().map((b) => b.destination), binds.map((b) => b.destination));
  assert.deepEqual(hostBinds().find((b) => b.destination === '/proc/stat'), { source: '/proc/stat', destination: '/proc/stat' });
});

test('OCI spec: lxcfs binds come after /proc and /sys, and only when given', () => {
  const base = {
    config: { uid: 'u1', name: 'default/a', hostname: 'a', template: 'busybox', addresses: [], limits: {} },
    rootfs: '/r', netnsPath: '/run/netns/n', cgroupsPath: '/kubevz/a', init: ['/sbin/init'],
    host: { boundingCaps: capsFromMask('1fffeffffff'), nofileHard: 20_000 },
  };
  const without = buildOciSpec(base);
  assert.ok(!without.mounts.some((m) => m.type === 'bind'));
  const spec = buildOciSpec({ ...base, procBinds: lxcfsBinds(MNT) });
  const dests = spec.mounts.map((m) => m.destination);
  const meminfo = spec.mounts.find((m) => m.destination === '/proc/meminfo');
  assert.deepEqual(meminfo, { destination: '/proc/meminfo', type: 'bind', source: `${MNT}/proc/meminfo`, options: ['bind', 'nosuid', 'nodev', 'noexec'] });
  assert.ok(dests.indexOf('/proc/meminfo') > dests.indexOf('/proc'));
  assert.ok(dests.indexOf('/sys/devices/system/cpu/online') > dests.indexOf('/sys'));
  assert.equal(spec.mounts.filter((m) => m.type === 'bind').length, LXCFS_FILES.length);
});

test('a stat() device number reads as mountinfo\'s major:minor', () => {
  assert.equal(devString(61), '0:61');
  assert.equal(devString(0x801), '8:1');
  // Minors above 255 and majors above 4095 use the high bits.
  assert.equal(devString(0x100023), '0:291');
  assert.equal(devString(259 * 256 + 3), '259:3');
});
