// The v1 and v2 cgroup readers on fixture trees: limits, usage and failure counters, I/O
// throttle writes, and host detection. The v2 tree (test/fixtures/cgroup-v2) is laid out as a
// v2 host has it, since this project's CI host is v1.

import assert from 'node:assert/strict';
import { closeSync, cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { cachedLimits, CounterFiles, createCgroupReader, LIMITS_MAX_AGE_MS } from '../../../src/runtime/cgroup.js';
import { CgroupV1 } from '../../../src/runtime/cgroup-v1.js';
import { CgroupV2, parseIoMax } from '../../../src/runtime/cgroup-v2.js';
import { limitsDiff, sharesToWeight } from '../../../src/runtime/limits.js';
import { FD_MAX_AGE_MS, UsageReader, numberAfter, parseNetDev } from '../../../src/runtime/usage.js';
import { heldUnder } from '../../helpers/open-fds.js';

const V2 = resolve(dirname(fileURLToPath(import.meta.url)), '../../../../test/fixtures/cgroup-v2');
const tmp = mkdtempSync(join(tmpdir(), 'kvz-cgusage-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

function tree(root: string, files: Record<string, string>): void {
  for (const [path, value] of Object.entries(files)) {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), value);
  }
}

const v1root = join(tmp, 'v1');
const p = '/kubevz/kvz-a';
tree(v1root, {
  'cpuset/cpuset.cpus': '0-3\n',
  [`cpuset${p}/cpuset.cpus`]: '1,2\n',
  [`memory${p}/memory.limit_in_bytes`]: `${256 << 20}\n`,
  [`memory${p}/memory.memsw.limit_in_bytes`]: `${256 << 20}\n`,
  [`memory${p}/memory.soft_limit_in_bytes`]: '9223372036854771712\n',
  [`memory${p}/memory.usage_in_bytes`]: `${100 << 20}\n`,
  [`memory${p}/memory.max_usage_in_bytes`]: `${256 << 20}\n`,
  [`memory${p}/memory.failcnt`]: '3\n',
  [`memory${p}/memory.memsw.usage_in_bytes`]: `${100 << 20}\n`,
  [`memory${p}/memory.memsw.max_usage_in_bytes`]: `${256 << 20}\n`,
  [`memory${p}/memory.memsw.failcnt`]: '40\n',
  [`memory${p}/memory.oom_control`]: 'oom_kill_disable 0\nunder_oom 0\noom_kill 2\n',
  [`cpu${p}/cpu.shares`]: '1000\n',
  [`cpu${p}/cpu.cfs_quota_us`]: '-1\n',
  [`cpu${p}/cpu.cfs_period_us`]: '100000\n',
  [`cpu${p}/cpu.stat`]: 'nr_periods 10\nnr_throttled 4\nthrottled_time 2000000\nnr_bursts 0\nburst_time 0\n',
  [`cpuacct${p}/cpuacct.usage`]: '5000000000\n',
  [`pids${p}/pids.max`]: '20\n',
  [`pids${p}/pids.current`]: '19\n',
  [`pids${p}/pids.events`]: 'max 181\n',
  [`pids${p}/cgroup.procs`]: '101\n102\n',
  [`blkio${p}/blkio.bfq.weight`]: '100\n',
  [`blkio${p}/blkio.throttle.write_bps_device`]: '7:7 1048576\n',
  [`blkio${p}/blkio.throttle.read_bps_device`]: '',
  [`blkio${p}/blkio.throttle.read_iops_device`]: '',
  [`blkio${p}/blkio.throttle.write_iops_device`]: '',
  [`blkio${p}/blkio.throttle.io_service_bytes_recursive`]: '7:7 Read 4096\n7:7 Write 3145728\n7:7 Sync 0\n7:7 Total 3149824\nTotal 3149824\n',
  [`blkio${p}/blkio.throttle.io_serviced_recursive`]: '7:7 Read 1\n7:7 Write 12\n7:7 Total 13\nTotal 13\n',
  'proc/101/fd/0': '', 'proc/101/fd/1': '', 'proc/101/fd/2': '', 'proc/102/fd/0': '',
  'proc/101/net/sockstat': 'sockets: used 130\nTCP: inuse 3 orphan 0 tw 0 alloc 4 mem 1\nUDP: inuse 2 mem 0\nUDPLITE: inuse 0\nRAW: inuse 1\nFRAG: inuse 0 memory 0\n',
  'proc/101/net/sockstat6': 'TCP6: inuse 1\nUDP6: inuse 1\nUDPLITE6: inuse 0\nRAW6: inuse 0\nFRAG6: inuse 0 memory 0\n',
  'proc/101/net/unix': 'Num       RefCount Protocol Flags    Type St Inode Path\n0000: 00000002 00000000 00010000 0001 01 1234 /run/x\n',
  'proc/101/net/dev': 'Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo:     100       1    0    0    0     0          0         0      100       1    0    0    0     0       0          0\n  eth0:    5000      10    0    0    0     0          0         0     7000      12    0    0    0     0       0          0\n',
});

// What the kernel's /proc/PID/ns/net is: a link naming the netns by inode.
mkdirSync(join(v1root, 'proc/101/ns'), { recursive: true });
symlinkSync('net:[4026531999]', join(v1root, 'proc/101/ns/net'));

test('v1: limits with cpuset, throttles, unlimited soft limit and default weight', async () => {
  const r = new CgroupV1(v1root);
  assert.deepEqual(await r.readLimits(p), { cpuShares: 1000, cpuPeriodUs: 100_000, memoryBytes: 256 << 20, swapBytes: 0, pids: 20, cpuset: '1-2', writeBps: 1 << 20 });
  assert.deepEqual(await r.readLimits(p, { device: { major: 8, minor: 0 } }), { cpuShares: 1000, cpuPeriodUs: 100_000, memoryBytes: 256 << 20, swapBytes: 0, pids: 20, cpuset: '1-2' }, 'throttles of another device are not ours');
  assert.equal(await r.allCpus(), '0-3');
});

test('v1: usage and failure counters (memsw refusals count as memory failures)', async () => {
  const u = await new CgroupV1(v1root).readUsage(p, { io: true });
  assert.deepEqual(u.memory, { held: 100 << 20, maxheld: 256 << 20, failcnt: 43, oomKills: 2, limit: 256 << 20 });
  assert.deepEqual(u.swap, { held: 0, maxheld: 0, failcnt: 40, limit: 0 });
  assert.deepEqual(u.processes, { held: 19, failcnt: 181, limit: 20 });
  assert.deepEqual(u.cpu, { usageUs: 5_000_000, periods: 10, throttledPeriods: 4, throttledUs: 2000 });
  assert.deepEqual(u.io, { readBytes: 4096, writeBytes: 3145728, readOps: 1, writeOps: 12 });
  assert.deepEqual(u.procs, [101, 102]);
  assert.equal((await new CgroupV1(v1root).readUsage(p)).io, undefined, 'I/O counters only when asked for');
});

test('v1: throttles are written per device and cleared with 0', async () => {
  const r = new CgroupV1(v1root);
  await r.setIoThrottle(p, { major: 7, minor: 7 }, { readBps: 5 << 20, writeIops: 9 });
  const f = (n: string) => readFileSync(join(v1root, 'blkio', p, n), 'utf8');
  assert.equal(f('blkio.throttle.read_bps_device'), `7:7 ${5 << 20}`);
  assert.equal(f('blkio.throttle.write_bps_device'), '7:7 0');
  assert.equal(f('blkio.throttle.write_iops_device'), '7:7 9');
  await assert.rejects(r.setIoThrottle('/kubevz/nope', { major: 7, minor: 7 }, {}), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'HostSetup');
    assert.match(err.message, /failed to write "7:7 0" to .*kubevz\/nope\/blkio\.throttle\.read_bps_device/);
    return true;
  });
});

test('v2: limits from memory.max, swap.max, memory.low, cpu.weight/max, cpuset, pids, io.weight, io.max', async () => {
  const r = createCgroupReader(V2);
  assert.equal(r.version, 'v2');
  assert.deepEqual(await r.readLimits('/kubevz/kvz-limited'), {
    // weight 39 reads back as shares 998: the conversion is lossy, hence cpuWeight for comparisons
    cpuShares: 998, cpuWeight: 39, cpuPeriodUs: 100_000, cpuQuotaUs: 50_000, memoryBytes: 256 << 20, swapBytes: 64 << 20,
    memoryGuaranteeBytes: 128 << 20, pids: 64, cpuset: '1', ioWeight: 500, readBps: 5 << 20, writeBps: 3 << 20, writeIops: 200,
  });
  assert.deepEqual(await r.readLimits('/kubevz/kvz-unlimited'), { cpuShares: 2 + Math.round((99 * 262142) / 9999), cpuWeight: 100, cpuPeriodUs: 100_000 });
  assert.equal(await r.allCpus(), '0-3');
  assert.equal(await r.exists('/kubevz/kvz-limited'), true);
  assert.equal(await r.exists('/kubevz/nope'), false);
});

test('v2: shares compare in weight space (the conversion is lossy), other fields exactly', async () => {
  const actual = await new CgroupV2(V2).readLimits('/kubevz/kvz-limited');
  assert.equal(sharesToWeight(1000), 39);
  const desired = { cpuShares: 1000, cpuQuotaUs: 50_000, memoryBytes: 256 << 20, swapBytes: 64 << 20, memoryGuaranteeBytes: 128 << 20, pids: 64, cpuset: '1', ioWeight: 500, readBps: 5 << 20, writeBps: 3 << 20, writeIops: 200 };
  assert.deepEqual(limitsDiff(desired, actual), []);
  assert.deepEqual(limitsDiff({ ...desired, cpuShares: 3000, pids: 65 }, actual), ['cpuShares', 'pids']);
});

test('v2: usage, peaks and event counters', async () => {
  const u = await new CgroupV2(V2).readUsage('/kubevz/kvz-limited', { io: true });
  assert.deepEqual(u.memory, { held: 201334784, maxheld: 268431360, limit: 256 << 20, failcnt: 59, oomKills: 2 });
  assert.deepEqual(u.swap, { held: 8 << 20, maxheld: 16 << 20, limit: 64 << 20, failcnt: 4 });
  assert.deepEqual(u.processes, { held: 12, maxheld: 64, limit: 64, failcnt: 9 });
  assert.deepEqual(u.cpu, { usageUs: 8123456, periods: 400, throttledPeriods: 120, throttledUs: 3456789 });
  assert.deepEqual(u.io, { readBytes: 1049600, writeBytes: 4194304, readOps: 11, writeOps: 40 });
  assert.deepEqual(u.procs, [4242, 4250, 4251]);
  assert.equal((await new CgroupV2(V2).readUsage('/kubevz/kvz-limited')).io, undefined, 'I/O counters only when asked for');
  const none = await new CgroupV2(V2).readUsage('/kubevz/kvz-unlimited');
  assert.equal(none.memory.limit, undefined);
  assert.equal(none.memory.maxheld, undefined, 'no memory.peak on older kernels');
  assert.equal(none.processes.limit, undefined);
});

test('v2: io.max is written as one line per device', async () => {
  const root = join(tmp, 'v2copy');
  cpSync(V2, root, { recursive: true });
  await new CgroupV2(root).setIoThrottle('/kubevz/kvz-unlimited', { major: 7, minor: 3 }, { writeBps: 1 << 20 });
  assert.equal(readFileSync(join(root, 'kubevz/kvz-unlimited/io.max'), 'utf8'), `7:3 rbps=max wbps=${1 << 20} riops=max wiops=max`);
  assert.deepEqual(parseIoMax('8:0 rbps=max wbps=max riops=max wiops=max\n7:3 rbps=10 wbps=max riops=max wiops=5', { major: 7, minor: 3 }), { readBps: 10, writeIops: 5 });
});

test('a garbled counter file is an error naming the file', async () => {
  const root = join(tmp, 'v2bad');
  cpSync(V2, root, { recursive: true });
  writeFileSync(join(root, 'kubevz/kvz-limited/memory.events'), 'max lots\n');
  await assert.rejects(new CgroupV2(root).readUsage('/kubevz/kvz-limited'), /unexpected line "max lots" in .*memory\.events/);
});

test('usage reader: fds over the VE processes, netns sockets and traffic', async () => {
  const u = await new UsageReader(new CgroupV1(v1root), join(v1root, 'proc')).read({ cgroupPath: p, pid: 101 });
  assert.equal(u.openFiles, 4);
  // tcp = TCP + TCP6 in use; other = every socket of the netns ("sockets: used") but those.
  assert.deepEqual(u.sockets, { tcp: 4, other: 126 });
  assert.deepEqual(u.network, { rxBytes: 5000, txBytes: 7000 });
  assert.equal(numberAfter('sockets: used 12\nTCP: inuse 7 orphan 0\n', 'TCP: inuse '), 7);
  assert.equal(numberAfter('TCP: inuse 7\n', 'TCP6: inuse '), undefined);
  assert.deepEqual(parseNetDev('h1\nh2\n'), { rxBytes: 0, txBytes: 0 });
  assert.deepEqual(parseNetDev('h1\nh2\n  eth0: 1 2 3 4 5 6 7 8 9 10\n  eth1:10 0 0 0 0 0 0 0 90 0\n'), { rxBytes: 11, txBytes: 99 }, 'counters glued to the colon are read too');
});

test('counter files stay open between reads and are re-read from offset 0', async () => {
  const root = join(tmp, 'v1open');
  cpSync(v1root, root, { recursive: true });
  const r = new CgroupV1(root);
  const path = (n: string) => join(root, 'pids', p, n);
  const opened = () => heldUnder(join(root, 'pids', p));
  await r.readUsage(p);
  const held = opened().length;
  assert.ok(held >= 3, `pids.current, pids.max, pids.events, cgroup.procs kept open (${held})`);
  writeFileSync(path('pids.current'), '7\n'); // same inode, new text: what the kernel does
  const u = await r.readUsage(p);
  assert.equal(u.processes.held, 7, 'the kept descriptor sees the new value');
  assert.equal(opened().length, held, 'no descriptor opened again');
  r.forget(p);
  assert.equal(opened().length, 0, 'forget closes them');
});

test('a stale descriptor (the cgroup went away) is dropped: reopened by path, or NotFound', async () => {
  const root = join(tmp, 'v1stale');
  cpSync(v1root, root, { recursive: true });
  const r = new CgroupV1(root);
  assert.equal((await r.readUsage(p, { initPid: 101 })).processes.held, 19);
  // On cgroupfs a removed cgroup's descriptors fail with ENODEV; a plain file keeps its old
  // text, so close every descriptor of ours under this cgroup behind the reader's back (EBADF).
  const closeOurs = () => {
    let n = 0;
    for (const fd of readdirSync('/proc/self/fd')) {
      try {
        if (readlinkSync(`/proc/self/fd/${fd}`).startsWith(`${root}/`)) {
          closeSync(Number(fd));
          n++;
        }
      } catch {
        // the listing's own descriptor, already gone
      }
    }
    return n;
  };
  assert.ok(closeOurs() > 0);
  writeFileSync(join(root, 'pids', p, 'pids.current'), '5\n');
  assert.equal((await r.readUsage(p, { initPid: 101 })).processes.held, 5, 'reopened by path');
  closeOurs();
  rmSync(join(root, 'memory', p), { recursive: true });
  await assert.rejects(r.readUsage(p, { initPid: 101 }), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'NotFound');
    assert.match(err.message, /memory\.usage_in_bytes/);
    return true;
  });
});

test('a new init PID reopens the cgroup files (a restarted VE may have a new cgroup at the same path)', async () => {
  const root = join(tmp, 'v1restart');
  cpSync(v1root, root, { recursive: true });
  const r = new CgroupV1(root);
  assert.equal((await r.readUsage(p, { initPid: 101 })).memory.oomKills, 2);
  // The cgroup is replaced: new inodes at the same paths.
  const oom = join(root, 'memory', p, 'memory.oom_control');
  rmSync(oom);
  writeFileSync(oom, 'oom_kill_disable 0\nunder_oom 0\noom_kill 0\n');
  assert.equal((await r.readUsage(p, { initPid: 101 })).memory.oomKills, 2, 'same init: the kept descriptor (old inode) is used');
  assert.equal((await r.readUsage(p, { initPid: 555 })).memory.oomKills, 0, 'new init: reopened');
});

test('descriptors of a cgroup nobody reads any more are closed after a few passes', async () => {
  const root = join(tmp, 'v1sweep');
  cpSync(v1root, root, { recursive: true });
  const other = '/kubevz/kvz-b';
  cpSync(join(root, 'memory', p), join(root, 'memory', other), { recursive: true });
  for (const c of ['cpu', 'cpuacct', 'pids', 'blkio']) cpSync(join(root, c, p), join(root, c, other), { recursive: true });
  const r = new CgroupV1(root);
  const held = (cg: string) => heldUnder(join(root, 'memory', cg)).length;
  await r.readUsage(p);
  await r.readUsage(other);
  assert.ok(held(other) > 0);
  for (let i = 0; i < 50; i++) await r.readUsage(p); // kvz-b was destroyed: only kvz-a is read
  assert.equal(held(other), 0, "the gone VE's descriptors were released");
  assert.ok(held(p) > 0, 'the live one keeps its descriptors');
  r.forget();
  assert.equal(held(p), 0);
});

test('v2: optional files absent in one cgroup read as absent on every pass, not as errors', async () => {
  const r = new CgroupV2(V2);
  for (let i = 0; i < 3; i++) {
    const none = await r.readUsage('/kubevz/kvz-unlimited');
    assert.equal(none.memory.maxheld, undefined, 'no memory.peak');
    assert.equal(none.swap?.maxheld, undefined, 'no memory.swap.peak');
  }
  const u = await r.readUsage('/kubevz/kvz-limited');
  assert.equal(u.memory.failcnt, 59);
  r.forget();
});

test('usage reader on the real /proc: fds counted for live processes, a gone process counts nothing', async () => {
  const procs = [process.pid, 2 ** 22 + 1]; // ourselves, and a PID above pid_max: no such process
  const cgroup = { readUsage: async () => ({ memory: { held: 0, failcnt: 0, oomKills: 0 }, processes: { held: 2, failcnt: 0 }, cpu: { usageUs: 0, periods: 0, throttledPeriods: 0, throttledUs: 0 }, io: { readBytes: 0, writeBytes: 0, readOps: 0, writeOps: 0 }, procs }) };
  const u = await new UsageReader(cgroup as unknown as CgroupV1).read({ cgroupPath: '/x' });
  const listed = readdirSync('/proc/self/fd').length; // includes the listing's own descriptor
  assert.ok(u.openFiles !== undefined && Math.abs(u.openFiles - listed) <= 2, `${u.openFiles} fds, the listing says ${listed}`);
  procs.splice(0, 1);
  assert.equal((await new UsageReader(cgroup as unknown as CgroupV1).read({ cgroupPath: '/x' })).openFiles, undefined, 'no readable process: unknown, not 0');
});

test('kept descriptors are capped: past the cap files are opened and closed on each read', () => {
  const root = join(tmp, 'v1cap');
  cpSync(v1root, root, { recursive: true });
  const files = new CounterFiles((cg) => ['pids.current', 'pids.max', 'pids.events'].map((n) => join(root, 'pids', cg, n)), 2);
  const set = files.of(p);
  assert.deepEqual([set.read(0), set.read(1), set.read(2)], ['19', '20', 'max 181']);
  assert.equal(files.open, 2);
  assert.equal(heldUnder(join(root, 'pids', p)).length, 2);
  writeFileSync(join(root, 'pids', p, 'pids.events'), 'max 182\n');
  assert.equal(files.of(p).read(2), 'max 182', 'the uncached file is read fresh');
  files.forget();
  assert.equal(files.open, 0);
  assert.equal(heldUnder(join(root, 'pids', p)).length, 0);
});

test('netns files stay open between passes, follow the netns the PID is in, and are released', async () => {
  const root = join(tmp, 'v1netns');
  cpSync(v1root, root, { recursive: true });
  const net = (n: string) => join(root, 'proc/101/net', n);
  const reader = new UsageReader(new CgroupV1(root), join(root, 'proc'));
  const read = () => reader.read({ cgroupPath: p, pid: 101 });
  assert.deepEqual((await read()).sockets, { tcp: 4, other: 126 });
  assert.equal(heldUnder(join(root, 'proc/101/net')).length, 3, 'sockstat, sockstat6, dev kept open');
  writeFileSync(net('sockstat'), 'sockets: used 10\nTCP: inuse 2\n'); // same inode, new text: what the kernel does
  assert.deepEqual((await read()).sockets, { tcp: 3, other: 7 }, 'the kept descriptor is read again from offset 0');
  // Another netns behind the same PID (a reused PID, a new netns): new files, by path.
  rmSync(net('sockstat'));
  writeFileSync(net('sockstat'), 'sockets: used 1\nTCP: inuse 0\n');
  assert.deepEqual((await read()).sockets, { tcp: 3, other: 7 }, 'same netns: the kept descriptor (old inode) is read');
  rmSync(join(root, 'proc/101/ns/net'));
  symlinkSync('net:[4026532000]', join(root, 'proc/101/ns/net'));
  assert.deepEqual((await read()).sockets, { tcp: 1, other: 0 }, 'new netns: reopened');
  // Process gone: nothing read, nothing held (an open netns file would keep the netns alive).
  rmSync(join(root, 'proc/101/ns/net'));
  const gone = await read();
  assert.equal(gone.sockets, undefined);
  assert.equal(gone.network, undefined);
  assert.equal(heldUnder(join(root, 'proc/101/net')).length, 0, 'released when the process is gone');
  symlinkSync('net:[4026532000]', join(root, 'proc/101/ns/net'));
  await read();
  assert.equal(heldUnder(join(root, 'proc/101/net')).length, 3);
  reader.forget(p);
  assert.equal(heldUnder(join(root, 'proc/101/net')).length, 0, 'forget releases them');
  assert.equal(heldUnder(join(root, 'memory', p)).length, 0, 'and the cgroup files');
});

test('netns sockets: tcp is TCP+TCP6 in use, other is every other socket, never negative', async () => {
  const root = join(tmp, 'v1socks');
  cpSync(v1root, root, { recursive: true });
  writeFileSync(join(root, 'proc/101/net/sockstat'), 'sockets: used 2\nTCP: inuse 3 orphan 0 tw 0 alloc 4 mem 1\n');
  rmSync(join(root, 'proc/101/net/sockstat6'));
  const reader = new UsageReader(new CgroupV1(root), join(root, 'proc'));
  // No IPv6 in the kernel: no sockstat6. Kernel sockets are in TCP inuse but not in "used".
  assert.deepEqual((await reader.read({ cgroupPath: p, pid: 101 })).sockets, { tcp: 3, other: 0 });
  reader.forget();
});

test('kept descriptors are all released once nothing was read for idleCloseMs (the last VE stopped)', async () => {
  const root = join(tmp, 'v1idle');
  cpSync(v1root, root, { recursive: true });
  const files = new CounterFiles((cg: string) => ['pids.current', 'pids.max'].map((n) => join(root, 'pids', cg, n)), 100, 30);
  assert.equal(files.of(p).read(0), '19');
  assert.equal(files.open, 1);
  await new Promise((r) => setTimeout(r, 10));
  files.of(p).read(1);
  assert.equal(files.open, 2, 'read within the idle time: kept');
  await new Promise((r) => setTimeout(r, 120));
  assert.equal(files.open, 0, 'idle: closed');
  assert.equal(heldUnder(join(root, 'pids', p)).length, 0);
});

test('limits read with the counters are cached: re-read after readLimits, after a reopen, or when old', async () => {
  const root = join(tmp, 'v1limits');
  cpSync(v1root, root, { recursive: true });
  const r = new CgroupV1(root);
  const limitFile = join(root, 'pids', p, 'pids.max');
  assert.equal((await r.readUsage(p, { initPid: 101 })).processes.limit, 20);
  writeFileSync(limitFile, '30\n');
  assert.equal((await r.readUsage(p, { initPid: 101 })).processes.limit, 20, 'within LIMITS_MAX_AGE_MS the cached limit is shown');
  assert.equal((await r.readLimits(p)).pids, 30);
  assert.equal((await r.readUsage(p, { initPid: 101 })).processes.limit, 30, 'readLimits (the agent reads back after every change) drops the cache');
  writeFileSync(limitFile, 'max\n');
  assert.equal((await r.readUsage(p, { initPid: 555 })).processes.limit, undefined, 'a new init reopens the set, limits included');
  r.forget();

  const files = new CounterFiles((cg: string) => ['pids.current', 'pids.max'].map((n) => join(root, 'pids', cg, n)));
  const set = files.of(p);
  assert.deepEqual(cachedLimits(set, [[1, false]], 1000), [undefined]);
  writeFileSync(limitFile, '40\n');
  assert.deepEqual(cachedLimits(set, [[1, false]], 1000 + LIMITS_MAX_AGE_MS - 1), [undefined], 'still fresh');
  assert.deepEqual(cachedLimits(set, [[1, false]], 1000 + LIMITS_MAX_AGE_MS), [40], 'old: read again');
  files.forget();
});

test('counter file parsing: integers, key lines, PIDs, limits; anything else names the file', () => {
  const root = join(tmp, 'parse');
  const procs = Array.from({ length: 5000 }, (_, i) => 100_000 + i);
  tree(root, {
    int: ' 42\n', neg: '-1\n', max: 'max\n', huge: '9223372036854771712\n', text: 'lots\n', empty: '',
    keys: 'nr_periods 10\nnr_throttled 4\n\nthrottled_time 2000000\n', badkeys: 'nr_periods 10\nnr_throttled\n', maxkeys: 'max max\n',
    procs: `${procs.join('\n')}\n`,
  });
  const names = ['int', 'neg', 'max', 'huge', 'text', 'empty', 'keys', 'badkeys', 'maxkeys', 'procs', 'absent'];
  const files = new CounterFiles(() => names.map((n) => join(root, n)));
  const set = files.of('x');
  const at = (n: string) => names.indexOf(n);
  assert.equal(set.readInt(at('int')), 42);
  assert.equal(set.readInt(at('neg')), -1);
  assert.throws(() => set.readInt(at('max')), /unexpected value "max" in .*\/max$/);
  assert.throws(() => set.readInt(at('text')), /unexpected value "lots" in .*\/text$/);
  assert.throws(() => set.readInt(at('empty')), /unexpected value "" in .*\/empty$/);
  assert.equal(set.readLimit(at('int')), 42);
  assert.equal(set.readLimit(at('max')), undefined, 'max is unlimited');
  assert.equal(set.readLimit(at('huge')), undefined, "the kernel's huge value is unlimited");
  assert.equal(set.readLimit(at('neg')), undefined);
  assert.throws(() => set.readLimit(at('text')), /unexpected value "lots"/);
  assert.deepEqual(set.readKeys(at('keys'), ['throttled_time', 'nr_periods', 'nr_bursts']), [2_000_000, 10, 0], 'a key not listed is 0');
  assert.throws(() => set.readKeys(at('badkeys'), ['nr_periods']), /unexpected line "nr_throttled" in .*\/badkeys$/);
  assert.throws(() => set.readKeys(at('maxkeys'), ['max']), /unexpected line "max max"/);
  assert.deepEqual(set.readPids(at('procs')), procs, 'larger than the read buffer: read whole');
  assert.equal(set.readInt(at('int')), 42, 'the grown buffer serves small files as before');
  assert.equal(set.readInt(at('absent'), true), undefined);
  assert.deepEqual(set.readPids(at('absent'), true), []);
  files.forget();
  assert.throws(() => files.of('y').readInt(at('absent')), (err: Error & { code?: string }) => err.code === 'NotFound' && /absent/.test(err.message));
});

test('open fds are recounted every FD_MAX_AGE_MS, and at once for a new init; cgroup.procs is read only then', async () => {
  const root = join(tmp, 'v1fds');
  cpSync(v1root, root, { recursive: true });
  let now = 5_000;
  const cgroup = new CgroupV1(root);
  const reader = new UsageReader(cgroup, join(root, 'proc'), () => now);
  const read = (pid = 101) => reader.read({ cgroupPath: p, pid });
  assert.equal((await read()).openFiles, 4);
  writeFileSync(join(root, 'proc/101/fd/3'), '');
  assert.equal((await read()).openFiles, 4, 'within FD_MAX_AGE_MS: the last count');
  now += FD_MAX_AGE_MS;
  assert.equal((await read()).openFiles, 5, 'recounted');
  writeFileSync(join(root, 'proc/101/fd/4'), '');
  mkdirSync(join(root, 'proc/102/ns'), { recursive: true });
  symlinkSync('net:[4026532001]', join(root, 'proc/102/ns/net'));
  assert.equal((await read(102)).openFiles, 6, 'a new init: recounted at once');
  reader.forget();
  assert.deepEqual((await cgroup.readUsage(p, { procs: false })).procs, [], 'procs: false skips cgroup.procs');
  assert.deepEqual((await cgroup.readUsage(p)).procs, [101, 102]);
  cgroup.forget();
});
