// Reads one VE's usage for beancounters: the cgroup counters (through the v1/v2 reader), open
// file descriptors summed over the VE's processes (one stat of /proc/PID/fd each, recounted
// every FD_MAX_AGE_MS), and socket counts and traffic of the VE's netns (its init's
// /proc/PID/net; accounted, never enforced).
// Disk figures come from the disk image (VERuntime.diskUsage). Roots are parameters so tests
// and benchmarks run on fixture trees.

import { readdirSync, readlinkSync, statfsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { CounterFiles, type CgroupReader, type CounterFileSet } from './cgroup.js';
import type { VEUsage } from './types.js';

export interface UsageTarget {
  cgroupPath: string;
  /** Host PID of the VE's init; without it no netns figures are read. */
  pid?: number;
  /** Also read the block I/O counters (VEUsage.io). */
  io?: boolean;
}

const PROC_SUPER_MAGIC = 0x9fa0;
/** Per VE: TCP (v4) and all-socket counts, TCP6 counts, interface counters. */
const NET_FILES = ['sockstat', 'sockstat6', 'dev'];
/** ~680 VEs' netns files kept open; beyond, they are opened and closed each pass. */
const NETNS_MAX_OPEN = 2048;
/** A kept netns file pins the netns: release them all this long after the last read. */
const NETNS_IDLE_MS = 10_000;
/**
 * A VE's open fds are recounted this often, not every pass: one stat of /proc/PID/fd per process
 * was the largest cost of a pass after the cgroup counters, and grows with the VE's processes
 * (a systemd VE has a dozen or more). A new init recounts at once.
 */
export const FD_MAX_AGE_MS = 10_000;

/** What the reader keeps per VE (by cgroup path) between reads. */
interface VEReadState {
  /** The PID the VE's netns files were opened for. */
  netPid?: number;
  /** The last fd count, when it was taken, and for which init (see FD_MAX_AGE_MS). */
  openFiles?: number;
  fdsAt: number;
  fdsPid?: number;
  /** Read since the last sweep. */
  seen: boolean;
}

export class UsageReader {
  /** Whether stat(/proc/PID/fd).size is the number of open fds (procfs, Linux ≥ 6.2). */
  private readonly fdCountByStat: boolean;
  /** The netns files of each VE init's PID (NET_FILES), owned by the netns inode they show. */
  private readonly net: CounterFiles<number>;
  private readonly ves = new Map<string, VEReadState>();
  private calls = 0;

  constructor(
    private readonly cgroup: CgroupReader,
    private readonly procRoot = '/proc',
    private readonly now: () => number = () => performance.now(),
  ) {
    this.fdCountByStat = statCountsFds(procRoot);
    this.net = new CounterFiles((pid) => NET_FILES.map((n) => `${procRoot}/${pid}/net/${n}`), NETNS_MAX_OPEN, NETNS_IDLE_MS);
  }

  async read(t: UsageTarget): Promise<VEUsage> {
    const st = this.stateOf(t.cgroupPath);
    const now = this.now();
    const fdsDue = st.fdsPid !== t.pid || !(now - st.fdsAt < FD_MAX_AGE_MS);
    const cg = await this.cgroup.readUsage(t.cgroupPath, { initPid: t.pid, io: t.io, procs: fdsDue });
    if (fdsDue) {
      // A VE's first count lands at its own point of the interval (by its path), so VEs started
      // together do not all recount in the same pass.
      st.fdsAt = st.fdsPid === undefined && st.openFiles === undefined ? now - phase(t.cgroupPath) * FD_MAX_AGE_MS : now;
      st.fdsPid = t.pid;
      st.openFiles = this.countFds(cg.procs);
    }
    const net = t.pid ? this.netns(st, t.pid) : undefined;
    const { procs: _procs, ...usage } = cg;
    const out: VEUsage = usage;
    if (st.openFiles !== undefined) out.openFiles = st.openFiles;
    if (net?.sockets) out.sockets = net.sockets;
    if (net?.network) out.network = net.network;
    return out;
  }

  /** Closes the cgroup and netns files kept open for this VE's cgroup (or all), and forgets its fd count. */
  forget(cgroupPath?: string): void {
    this.cgroup.forget(cgroupPath);
    if (cgroupPath !== undefined) {
      const st = this.ves.get(cgroupPath);
      if (st) this.forgetNetns(st);
      this.ves.delete(cgroupPath);
    } else {
      this.net.forget();
      this.ves.clear();
    }
  }

  /** The VE's state; a VE not read during the last 2×(VEs)+16 reads (at least a pass) is dropped. */
  private stateOf(cgroupPath: string): VEReadState {
    if (++this.calls > 2 * this.ves.size + 16) {
      this.calls = 0;
      for (const [path, st] of this.ves) {
        if (st.seen) st.seen = false;
        else {
          this.forgetNetns(st);
          this.ves.delete(path);
        }
      }
    }
    let st = this.ves.get(cgroupPath);
    if (!st) this.ves.set(cgroupPath, (st = { fdsAt: -Infinity, seen: true }));
    st.seen = true;
    return st;
  }

  /**
   * Sum of open fds of the processes; a process that exits meanwhile counts 0. One stat of
   * /proc/PID/fd per process where its size is the fd count (no directory listing: systemd and
   * databases hold hundreds), else a listing.
   */
  private countFds(procs: number[]): number | undefined {
    if (procs.length === 0) return 0;
    let total = 0;
    let readable = 0;
    for (const p of procs) {
      const dir = `${this.procRoot}/${p}/fd`;
      try {
        if (this.fdCountByStat) {
          const st = statSync(dir, { throwIfNoEntry: false });
          if (!st) continue;
          total += st.size;
        } else total += readdirSync(dir).length;
        readable++;
      } catch {
        // gone, or not ours to read
      }
    }
    return readable === 0 ? undefined : total;
  }

  /**
   * Socket counts and traffic of the VE's netns, from its init's /proc/PID/net files, kept open
   * between passes like the cgroup counters (a pass then costs one pread per file instead of
   * open+read+close). An open /proc/PID/net file holds its netns (and whatever is still in it)
   * alive, so the files are checked against the netns the PID is in now (one readlink of
   * /proc/PID/ns/net: a reused PID or a new netns reopens them), dropped when init is gone, and
   * released a pass or two after the VE is no longer read, or NETNS_IDLE_MS after the last read.
   * Sockets: tcp = TCP and TCP6 sockets in use (bound, listening, connected); other = every other
   * socket of the netns ("sockets: used" minus those): UNIX, UDP, raw, netlink, packet, and TCP
   * sockets not yet bound or connected.
   */
  private netns(st: VEReadState, pid: number): { sockets?: VEUsage['sockets']; network?: VEUsage['network'] } | undefined {
    const ns = netnsInode(`${this.procRoot}/${pid}/ns/net`);
    if (ns === undefined) {
      this.forgetNetns(st);
      return undefined;
    }
    if (st.netPid !== pid) {
      this.forgetNetns(st);
      st.netPid = pid;
    }
    const set = this.net.of(pid, ns);
    const v4 = readOptional(set, 0);
    const v6 = readOptional(set, 1);
    const dev = readOptional(set, 2);
    if (v4 === undefined && dev === undefined) return undefined;
    const out: { sockets?: VEUsage['sockets']; network?: VEUsage['network'] } = {};
    if (v4 !== undefined) {
      const tcp = (numberAfter(v4, 'TCP: inuse ') ?? 0) + (v6 === undefined ? 0 : (numberAfter(v6, 'TCP6: inuse ') ?? 0));
      // "used" counts the netns's user sockets of every family; kernel sockets are not in it.
      const used = numberAfter(v4, 'sockets: used ') ?? 0;
      out.sockets = { tcp, other: Math.max(0, used - tcp) };
    }
    if (dev !== undefined) out.network = parseNetDev(dev);
    return out;
  }

  private forgetNetns(st: VEReadState): void {
    if (st.netPid === undefined) return;
    this.net.forget(st.netPid);
    st.netPid = undefined;
  }
}

/** A fraction in [0, 1) fixed by the text (FNV-1a): spreads VEs over an interval. */
function phase(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return (h >>> 0) / 2 ** 32;
}

/** The inode of the netns a /proc/PID/ns/net link names ("net:[4026531840]"); undefined when the process is gone. */
function netnsInode(link: string): number | undefined {
  let target: string;
  try {
    target = readlinkSync(link);
  } catch {
    return undefined;
  }
  return numberAfter(target, 'net:[') ?? 0;
}

/** A netns file's text; undefined when it cannot be read (process gone, file absent). */
function readOptional(set: CounterFileSet, i: number): string | undefined {
  try {
    return set.read(i, true);
  } catch {
    return undefined; // not ours to read
  }
}

/** The decimal number right after `label` in text, or undefined when the label is absent. */
export function numberAfter(text: string, label: string): number | undefined {
  const at = text.indexOf(label);
  if (at < 0) return undefined;
  let n = 0;
  let i = at + label.length;
  const start = i;
  for (let c = text.charCodeAt(i); c >= 48 && c <= 57; c = text.charCodeAt(++i)) n = n * 10 + (c - 48);
  return i === start ? undefined : n;
}

/** Whether stat(ROOT/self/fd).size counts open fds: procfs on Linux ≥ 6.2 (the agent has ≥ 3 open). */
function statCountsFds(procRoot: string): boolean {
  try {
    return statfsSync(procRoot).type === PROC_SUPER_MAGIC && statSync(join(procRoot, 'self', 'fd')).size > 0;
  } catch {
    return false;
  }
}

/** /proc/net/dev → received and sent bytes over every interface but lo. */
export function parseNetDev(text: string): { rxBytes: number; txBytes: number } {
  let rxBytes = 0;
  let txBytes = 0;
  // Two header lines, then "  name: rxbytes packets errs drop fifo frame compressed multicast txbytes ...".
  let nl = text.indexOf('\n', text.indexOf('\n') + 1);
  while (nl >= 0) {
    const start = nl + 1;
    nl = text.indexOf('\n', start);
    const end = nl < 0 ? text.length : nl;
    const colon = text.indexOf(':', start);
    if (colon < 0 || colon > end || text.slice(start, colon).trim() === 'lo') continue;
    let field = 0;
    let i = colon + 1;
    while (i < end && field <= 8) {
      while (i < end && text.charCodeAt(i) === 32) i++;
      let n = 0;
      const from = i;
      for (let c = text.charCodeAt(i); i < end && c >= 48 && c <= 57; c = text.charCodeAt(++i)) n = n * 10 + (c - 48);
      if (i === from) break; // not a number: a malformed line counts what it had
      if (field === 0) rxBytes += n;
      else if (field === 8) txBytes += n;
      field++;
    }
  }
  return { rxBytes, txBytes };
}
