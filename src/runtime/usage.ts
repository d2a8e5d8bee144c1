// Reads one VE's usage for beancounters: the cgroup counters (through the v1/v2 reader), open
// file descriptors summed over the VE's processes (one stat of /proc/PID/fd each), and socket
// counts and traffic of the VE's netns (its init's /proc/PID/net; accounted, never enforced).
// Disk figures come from the disk image (VERuntime.diskUsage). Roots are parameters so tests
// and benchmarks run on fixture trees.

import { readdirSync, statfsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { readProcText, type CgroupReader } from './cgroup.js';
import type { VEUsage } from './types.js';

export interface UsageTarget {
  cgroupPath: string;
  /** Host PID of the VE's init; without it no netns figures are read. */
  pid?: number;
}

const PROC_SUPER_MAGIC = 0x9fa0;

export class UsageReader {
  /** Whether stat(/proc/PID/fd).size is the number of open fds (procfs, Linux ≥ 6.2). */
  private readonly fdCountByStat: boolean;

  constructor(
    private readonly cgroup: CgroupReader,
    private readonly procRoot = '/proc',
  ) {
    this.fdCountByStat = statCountsFds(procRoot);
  }

  async read(t: UsageTarget): Promise<VEUsage> {
    const cg = await this.cgroup.readUsage(t.cgroupPath, { initPid: t.pid });
    const openFiles = this.countFds(cg.procs);
    const net = t.pid ? this.netns(t.pid) : undefined;
    const { procs: _procs, ...usage } = cg;
    const out: VEUsage = usage;
    if (openFiles !== undefined) out.openFiles = openFiles;
    if (net?.sockets) out.sockets = net.sockets;
    if (net?.network) out.network = net.network;
    return out;
  }

  /** Closes the cgroup files kept open for this VE's cgroup (or all). */
  forget(cgroupPath?: string): void {
    this.cgroup.forget(cgroupPath);
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

  private netns(pid: number): { sockets?: VEUsage['sockets']; network?: VEUsage['network'] } | undefined {
    // Not kept open like the cgroup files: an open /proc/PID/net file holds the netns (and the
    // VE's veth) alive after the VE is gone.
    const base = `${this.procRoot}/${pid}/net/`;
    const v4 = readProcText(`${base}sockstat`);
    const dev = readProcText(`${base}dev`);
    if (v4 === undefined && dev === undefined) return undefined;
    const out: { sockets?: VEUsage['sockets']; network?: VEUsage['network'] } = {};
    if (v4 !== undefined) {
      const v6 = readProcText(`${base}sockstat6`);
      const unix = readProcText(`${base}unix`);
      const s4 = parseSockstat(v4);
      const s6 = parseSockstat(v6 ?? '');
      const unixCount = unix ? countLines(unix) - 1 : 0;
      out.sockets = {
        tcp: (s4.TCP ?? 0) + (s6.TCP6 ?? 0),
        other: (s4.UDP ?? 0) + (s4.UDPLITE ?? 0) + (s4.RAW ?? 0) + (s6.UDP6 ?? 0) + (s6.UDPLITE6 ?? 0) + (s6.RAW6 ?? 0) + unixCount,
      };
    }
    if (dev !== undefined) out.network = parseNetDev(dev);
    return out;
  }
}

/** Lines of a non-empty trimmed text, without splitting it. */
function countLines(text: string): number {
  let n = 1;
  for (let i = text.indexOf('\n'); i >= 0; i = text.indexOf('\n', i + 1)) n++;
  return n;
}

/** Whether stat(ROOT/self/fd).size counts open fds: procfs on Linux ≥ 6.2 (the agent has ≥ 3 open). */
function statCountsFds(procRoot: string): boolean {
  try {
    return statfsSync(procRoot).type === PROC_SUPER_MAGIC && statSync(join(procRoot, 'self', 'fd')).size > 0;
  } catch {
    return false;
  }
}

/** "TCP: inuse 3 orphan 0 ..." lines → { TCP: 3, ... } (the inuse figure). */
export function parseSockstat(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^(\w+):.*?\binuse (\d+)/gm)) out[m[1]!] = Number(m[2]);
  return out;
}

/** /proc/net/dev → received and sent bytes over every interface but lo. */
export function parseNetDev(text: string): { rxBytes: number; txBytes: number } {
  let rxBytes = 0;
  let txBytes = 0;
  for (const line of text.split('\n').slice(2)) {
    const m = /^\s*([^:]+):\s*(.*)$/.exec(line);
    if (!m || m[1]!.trim() === 'lo') continue;
    const cols = m[2]!.trim().split(/\s+/).map(Number);
    rxBytes += cols[0] ?? 0;
    txBytes += cols[8] ?? 0;
  }
  return { rxBytes, txBytes };
}
