// Reads one VE's usage for beancounters: the cgroup counters (through the v1/v2 reader), open
// file descriptors summed over the VE's processes (one readdir of /proc/PID/fd each: cheap for
// system containers with tens of processes), and socket counts and traffic of the VE's netns
// (its init's /proc/PID/net; accounted, never enforced). Disk figures come from the disk image
// (VERuntime.diskUsage). Roots are parameters so tests and benchmarks run on fixture trees.

import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { CgroupReader } from './cgroup.js';
import type { VEUsage } from './types.js';

export interface UsageTarget {
  cgroupPath: string;
  /** Host PID of the VE's init; without it no netns figures are read. */
  pid?: number;
}

export class UsageReader {
  constructor(
    private readonly cgroup: CgroupReader,
    private readonly procRoot = '/proc',
  ) {}

  async read(t: UsageTarget): Promise<VEUsage> {
    const cg = await this.cgroup.readUsage(t.cgroupPath);
    const [openFiles, net] = await Promise.all([this.countFds(cg.procs), t.pid ? this.netns(t.pid) : undefined]);
    const { procs: _procs, ...usage } = cg;
    const out: VEUsage = usage;
    if (openFiles !== undefined) out.openFiles = openFiles;
    if (net?.sockets) out.sockets = net.sockets;
    if (net?.network) out.network = net.network;
    return out;
  }

  /** Sum of open fds of the processes; a process that exits meanwhile counts 0. */
  private async countFds(procs: number[]): Promise<number | undefined> {
    if (procs.length === 0) return 0;
    let total = 0;
    let readable = 0;
    // Sync on purpose: tiny /proc directories, see readText in cgroup.ts.
    for (const p of procs) {
      try {
        total += readdirSync(join(this.procRoot, String(p), 'fd')).length;
        readable++;
      } catch {
        // gone, or not ours to read
      }
    }
    return readable === 0 ? undefined : total;
  }

  private async netns(pid: number): Promise<{ sockets?: VEUsage['sockets']; network?: VEUsage['network'] } | undefined> {
    const base = join(this.procRoot, String(pid), 'net');
    const [v4, v6, unix, dev] = ['sockstat', 'sockstat6', 'unix', 'dev'].map((n) => {
      try {
        return readFileSync(join(base, n), 'utf8');
      } catch {
        return undefined;
      }
    });
    if (v4 === undefined && dev === undefined) return undefined;
    const out: { sockets?: VEUsage['sockets']; network?: VEUsage['network'] } = {};
    if (v4 !== undefined) {
      const s4 = parseSockstat(v4);
      const s6 = parseSockstat(v6 ?? '');
      const unixCount = unix ? Math.max(0, unix.trim().split('\n').length - 1) : 0;
      out.sockets = {
        tcp: (s4.TCP ?? 0) + (s6.TCP6 ?? 0),
        other: (s4.UDP ?? 0) + (s4.UDPLITE ?? 0) + (s4.RAW ?? 0) + (s6.UDP6 ?? 0) + (s6.UDPLITE6 ?? 0) + (s6.RAW6 ?? 0) + unixCount,
      };
    }
    if (dev !== undefined) out.network = parseNetDev(dev);
    return out;
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
