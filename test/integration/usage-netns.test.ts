// The usage reader's netns figures on the real kernel: socket counts of a process in its own
// network namespace, read through /proc/PID/net files the reader keeps open between passes —
// fresh on every read, and released once the process is gone (an open /proc/PID/net file holds
// its netns alive).

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { test } from 'node:test';
import type { CgroupReader, CgroupUsage } from '../../src/runtime/cgroup.js';
import { UsageReader } from '../../src/runtime/usage.js';
import { heldUnder } from '../helpers/open-fds.js';
import { requirePrereqs } from '../helpers/prereq.js';

/** Stands in for the cgroup side: this test is about the netns files. */
function cgroupOf(procs: number[]): CgroupReader {
  const usage: CgroupUsage = { memory: { held: 0, failcnt: 0, oomKills: 0 }, processes: { held: procs.length, failcnt: 0 }, cpu: { usageUs: 0, periods: 0, throttledPeriods: 0, throttledUs: 0 }, procs };
  return { readUsage: async () => usage, forget: () => undefined } as unknown as CgroupReader;
}

/** Our descriptors open on that PID's /proc/PID/net files. */
const heldNetFiles = (pid: number): string[] => heldUnder(`/proc/${pid}/net`);

// In its own netns: one TCP listener, one bound UDP socket, one UNIX socket pair; a second TCP
// listener when told (a line on stdin).
const CHILD = `
const net = require('node:net'), dgram = require('node:dgram');
const keep = [];
net.createServer().listen(0, '127.0.0.1', () => {
  const u = dgram.createSocket('udp4');
  u.bind(0, '127.0.0.1', () => {
    keep.push(u);
    const s = net.createServer().listen('\\0kvz-usage-netns-' + process.pid, () => process.stdout.write('ready\\n'));
    keep.push(s);
  });
});
process.stdin.once('data', () => net.createServer().listen(0, '127.0.0.1', () => process.stdout.write('more\\n')));
`;

test('netns sockets and traffic are read fresh through kept files, and released when the process is gone', async (t) => {
  if (!requirePrereqs(t, { root: true, binaries: ['unshare', 'ip'] })) return;
  const child = spawn('unshare', ['--net', 'sh', '-c', `ip link set lo up && exec "${process.execPath}" -e "$0"`, CHILD], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines: string[] = [];
  const next = (want: string) =>
    new Promise<void>((resolve, reject) => {
      const check = () => (lines.includes(want) ? resolve() : undefined);
      child.stdout!.on('data', (d: Buffer) => {
        lines.push(...d.toString().split('\n').filter(Boolean));
        check();
      });
      child.once('exit', (code) => reject(new Error(`child exited (${code}) before "${want}"`)));
      check();
    });
  try {
    await next('ready');
    const pid = child.pid!;
    const reader = new UsageReader(cgroupOf([pid]));
    const read = () => reader.read({ cgroupPath: '/kvz-usage-netns', pid });
    const first = await read();
    t.diagnostic(`sockets ${JSON.stringify(first.sockets)}, network ${JSON.stringify(first.network)}`);
    assert.equal(first.sockets?.tcp, 1, 'the TCP listener');
    // UDP + the listening UNIX socket (+ whatever node itself holds, e.g. its stdio pipes are not sockets).
    assert.ok((first.sockets?.other ?? 0) >= 2, `UDP and UNIX sockets counted as other (${first.sockets?.other})`);
    assert.ok(first.network && first.network.rxBytes >= 0, 'interface counters of the netns');
    const held = heldNetFiles(pid);
    assert.equal(held.length, 3, `sockstat, sockstat6 and dev kept open (${held.join(', ')})`);

    child.stdin!.write('go\n');
    await next('more');
    assert.equal((await read()).sockets?.tcp, 2, 'a kept file is read again from offset 0: the new listener counts');
    assert.deepEqual(heldNetFiles(pid), held, 'nothing reopened');

    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    const gone = await read();
    assert.equal(gone.sockets, undefined, 'a gone process has no netns figures');
    assert.equal(heldNetFiles(pid).length, 0, 'its netns files are closed (they would keep the netns alive)');
    reader.forget();
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
});
