// cgroup v2 reader: one unified tree, the VE's cgroup path directly under the root. Tested on
// fixture trees (test/fixtures/cgroup-v2) because this project's CI host is v1. Differences
// from v1 that matter: swap is its own counter (memory.swap.*), failures are event counters
// (memory.events max/oom, pids.events max), CPU weight replaces shares (lossy conversion,
// reported raw as cpuWeight), throttles are one io.max line per device.

import { stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { KvzError } from '../core/errors.js';
import { parseIntStrict, parseKeyValues, parseLimitBytes, parseProcs, readText, type CgroupReader, type CgroupUsage, type IoThrottle } from './cgroup.js';
import { DEFAULT_IO_WEIGHT, formatCpuset, parseCpuset, weightToShares, type BlockDevice } from './limits.js';
import type { VELimits } from './types.js';

const IO_MAX_KEYS: Record<keyof IoThrottle, string> = { readBps: 'rbps', writeBps: 'wbps', readIops: 'riops', writeIops: 'wiops' };

export class CgroupV2 implements CgroupReader {
  readonly version = 'v2' as const;

  constructor(private readonly root = '/sys/fs/cgroup') {}

  async readLimits(cgroupPath: string, opts: { device?: BlockDevice } = {}): Promise<VELimits> {
    const f = (n: string) => join(this.root, cgroupPath, n);
    const [memMax, swapMax, low, weight, cpuMax, pidsMax, cpus, allCpus, ioWeight, ioMax] = await Promise.all([
      readText(f('memory.max')),
      readText(f('memory.swap.max'), true),
      readText(f('memory.low'), true),
      readText(f('cpu.weight')),
      readText(f('cpu.max')),
      readText(f('pids.max')),
      readText(f('cpuset.cpus'), true),
      this.allCpus().catch(() => undefined),
      readText(f('io.weight'), true),
      readText(f('io.max'), true),
    ]);
    const w = parseIntStrict(weight ?? '', f('cpu.weight'));
    const [quota, period] = (cpuMax ?? '').split(/\s+/);
    const out: VELimits = { cpuShares: weightToShares(w), cpuWeight: w, cpuPeriodUs: parseIntStrict(period ?? '', f('cpu.max')) };
    const mem = parseLimitBytes(memMax ?? '', f('memory.max'));
    if (mem !== undefined) {
      out.memoryBytes = mem;
      const swap = swapMax === undefined ? undefined : parseLimitBytes(swapMax, f('memory.swap.max'));
      if (swap !== undefined) out.swapBytes = swap;
    }
    const lowBytes = low === undefined ? undefined : parseLimitBytes(low, f('memory.low'));
    if (lowBytes) out.memoryGuaranteeBytes = lowBytes;
    if (quota !== 'max') out.cpuQuotaUs = parseIntStrict(quota ?? '', f('cpu.max'));
    if (pidsMax !== 'max') out.pids = parseIntStrict(pidsMax ?? '', f('pids.max'));
    // Empty cpuset.cpus = the parent's CPUs; the whole host's set also means "no cpuset".
    if (cpus && formatCpuset(parseCpuset(cpus)) !== allCpus) out.cpuset = formatCpuset(parseCpuset(cpus));
    const iw = ioWeight === undefined ? undefined : /(?:^|default\s+)(\d+)\s*$/m.exec(ioWeight)?.[1];
    if (iw !== undefined && Number(iw) !== DEFAULT_IO_WEIGHT) out.ioWeight = Number(iw);
    Object.assign(out, parseIoMax(ioMax, opts.device));
    return out;
  }

  async readUsage(cgroupPath: string): Promise<CgroupUsage> {
    const f = (n: string) => join(this.root, cgroupPath, n);
    const [current, peak, memMax, memEvents, swCur, swPeak, swMax, swEvents, pidsCur, pidsPeak, pidsMax, pidsEvents, cpuStat, ioStat, procs] = await Promise.all([
      readText(f('memory.current')),
      readText(f('memory.peak'), true),
      readText(f('memory.max')),
      readText(f('memory.events')),
      readText(f('memory.swap.current'), true),
      readText(f('memory.swap.peak'), true),
      readText(f('memory.swap.max'), true),
      readText(f('memory.swap.events'), true),
      readText(f('pids.current')),
      readText(f('pids.peak'), true),
      readText(f('pids.max')),
      readText(f('pids.events'), true),
      readText(f('cpu.stat')),
      readText(f('io.stat'), true),
      readText(f('cgroup.procs'), true),
    ]);
    const ev = parseKeyValues(memEvents ?? '', f('memory.events'));
    const stat = parseKeyValues(cpuStat ?? '', f('cpu.stat'));
    const held = parseIntStrict(current ?? '', f('memory.current'));
    const out: CgroupUsage = {
      // OpenVZ's failcnt counts refusals: hitting memory.max (reclaim forced) plus OOM events.
      memory: { held, failcnt: (ev.get('max') ?? 0) + (ev.get('oom') ?? 0), oomKills: ev.get('oom_kill') ?? 0 },
      processes: {
        held: parseIntStrict(pidsCur ?? '', f('pids.current')),
        failcnt: pidsEvents ? (parseKeyValues(pidsEvents, f('pids.events')).get('max') ?? 0) : 0,
      },
      cpu: {
        usageUs: stat.get('usage_usec') ?? 0,
        periods: stat.get('nr_periods') ?? 0,
        throttledPeriods: stat.get('nr_throttled') ?? 0,
        throttledUs: stat.get('throttled_usec') ?? 0,
      },
      io: sumIoStat(ioStat),
      procs: parseProcs(procs),
    };
    if (peak !== undefined) out.memory.maxheld = parseIntStrict(peak, f('memory.peak'));
    const limit = parseLimitBytes(memMax ?? '', f('memory.max'));
    if (limit !== undefined) out.memory.limit = limit;
    if (pidsPeak !== undefined) out.processes.maxheld = parseIntStrict(pidsPeak, f('pids.peak'));
    if (pidsMax !== 'max') out.processes.limit = parseIntStrict(pidsMax ?? '', f('pids.max'));
    if (swCur !== undefined) {
      const sev = swEvents ? parseKeyValues(swEvents, f('memory.swap.events')) : new Map<string, number>();
      out.swap = { held: parseIntStrict(swCur, f('memory.swap.current')), failcnt: (sev.get('max') ?? 0) + (sev.get('fail') ?? 0) };
      if (swPeak !== undefined) out.swap.maxheld = parseIntStrict(swPeak, f('memory.swap.peak'));
      const sl = swMax === undefined ? undefined : parseLimitBytes(swMax, f('memory.swap.max'));
      if (sl !== undefined) out.swap.limit = sl;
    }
    return out;
  }

  async setIoThrottle(cgroupPath: string, device: BlockDevice, t: IoThrottle): Promise<void> {
    const path = join(this.root, cgroupPath, 'io.max');
    const fields = (Object.entries(IO_MAX_KEYS) as [keyof IoThrottle, string][]).map(([k, key]) => `${key}=${t[k] ? t[k] : 'max'}`);
    const value = `${device.major}:${device.minor} ${fields.join(' ')}`;
    await writeFile(path, value).catch((err: NodeJS.ErrnoException) => {
      throw new KvzError('HostSetup', `failed to write ${JSON.stringify(value)} to ${path}: ${err.message} (is the io controller enabled in the parent's cgroup.subtree_control?)`, {
        cause: err,
        details: { path, value },
      });
    });
  }

  async allCpus(): Promise<string> {
    const v = await readText(join(this.root, 'cpuset.cpus.effective'));
    return formatCpuset(parseCpuset(v ?? ''));
  }

  async exists(cgroupPath: string): Promise<boolean> {
    try {
      await stat(join(this.root, cgroupPath));
      return true;
    } catch {
      return false;
    }
  }
}

/** io.max ("254:0 rbps=1048576 wbps=max riops=max wiops=max") → throttles for the device (or the first line). */
export function parseIoMax(text: string | undefined, device?: BlockDevice): Partial<VELimits> {
  for (const line of (text ?? '').split('\n')) {
    const m = /^(\d+):(\d+)\s+(.*)$/.exec(line.trim());
    if (!m) continue;
    if (device && (Number(m[1]) !== device.major || Number(m[2]) !== device.minor)) continue;
    const kv = new Map(m[3]!.split(/\s+/).map((p) => p.split('=') as [string, string]));
    const out: Partial<VELimits> = {};
    for (const [k, key] of Object.entries(IO_MAX_KEYS) as [keyof IoThrottle, string][]) {
      const v = kv.get(key);
      if (v && v !== 'max') out[k] = Number(v);
    }
    return out;
  }
  return {};
}

/** io.stat lines ("254:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0") summed over devices. */
function sumIoStat(text: string | undefined): CgroupUsage['io'] {
  const io = { readBytes: 0, writeBytes: 0, readOps: 0, writeOps: 0 };
  for (const line of (text ?? '').split('\n')) {
    for (const [, k, v] of line.matchAll(/(\w+)=(\d+)/g)) {
      if (k === 'rbytes') io.readBytes += Number(v);
      else if (k === 'wbytes') io.writeBytes += Number(v);
      else if (k === 'rios') io.readOps += Number(v);
      else if (k === 'wios') io.writeOps += Number(v);
    }
  }
  return io;
}
