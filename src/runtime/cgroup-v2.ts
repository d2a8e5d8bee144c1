// cgroup v2 reader: one unified tree, the VE's cgroup path directly under the root. Tested on
// fixture trees (test/fixtures/cgroup-v2) because this project's CI host is v1. Differences
// from v1 that matter: swap is its own counter (memory.swap.*), failures are event counters
// (memory.events max/oom, pids.events max), CPU weight replaces shares (lossy conversion,
// reported raw as cpuWeight), throttles are one io.max line per device.

import { stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { KvzError } from '../core/errors.js';
import { cachedLimits, CounterFiles, parseIntStrict, parseLimitBytes, readText, type CgroupReader, type CgroupUsage, type CounterFileSet, type IoThrottle, type UsageReadOptions } from './cgroup.js';
import { DEFAULT_IO_WEIGHT, formatCpuset, parseCpuset, weightToShares, type BlockDevice } from './limits.js';
import type { VELimits } from './types.js';

const IO_MAX_KEYS: Record<keyof IoThrottle, string> = { readBps: 'rbps', writeBps: 'wbps', readIops: 'riops', writeIops: 'wiops' };

/** The files readUsage reads; indexes into a CounterFileSet. */
const USAGE_FILES = [
  'memory.current',
  'memory.peak',
  'memory.max',
  'memory.events',
  'memory.swap.current',
  'memory.swap.peak',
  'memory.swap.max',
  'memory.swap.events',
  'pids.current',
  'pids.peak',
  'pids.max',
  'pids.events',
  'cpu.stat',
  'io.stat',
  'cgroup.procs',
] as const;

export class CgroupV2 implements CgroupReader {
  readonly version = 'v2' as const;
  private readonly counters: CounterFiles;

  constructor(private readonly root = '/sys/fs/cgroup') {
    this.counters = new CounterFiles((cgroupPath) => USAGE_FILES.map((n) => join(this.root, cgroupPath, n)));
  }

  async readLimits(cgroupPath: string, opts: { device?: BlockDevice } = {}): Promise<VELimits> {
    // Called after every change the agent applies: the next usage read re-reads the limits too.
    this.counters.invalidate(cgroupPath);
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

  async readUsage(cgroupPath: string, o: UsageReadOptions = {}): Promise<CgroupUsage> {
    const set = this.counters.of(cgroupPath, o.initPid);
    try {
      return usageFrom(set, o.io === true, o.procs !== false);
    } catch (err) {
      this.counters.forget(cgroupPath);
      throw err;
    }
  }

  forget(cgroupPath?: string): void {
    this.counters.forget(cgroupPath);
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

/** memory.max, memory.swap.max (optional), pids.max: see cachedLimits. */
const LIMIT_FILES = [[2, false], [6, true], [10, false]] as const;

/** Usage from the USAGE_FILES of one cgroup. Synchronous on purpose: one pread per file, no promise per file. */
function usageFrom(set: CounterFileSet, withIo: boolean, withProcs: boolean): CgroupUsage {
  const held = set.readInt(0) as number;
  const peak = set.readInt(1, true);
  const [evMax, evOom, evOomKill] = set.readKeys(3, ['max', 'oom', 'oom_kill'])!;
  const swCur = set.readInt(4, true);
  const swPeak = set.readInt(5, true);
  const swEvents = set.readKeys(7, ['max', 'fail'], true);
  const pidsCur = set.readInt(8) as number;
  const pidsPeak = set.readInt(9, true);
  const [pidsFail] = set.readKeys(11, ['max'], true) ?? [0];
  const [usageUs, periods, throttled, throttledUs] = set.readKeys(12, ['usage_usec', 'nr_periods', 'nr_throttled', 'throttled_usec'])!;
  const procs = withProcs ? set.readPids(14, true) : [];
  const [limit, swLimit, pidsMax] = cachedLimits(set, LIMIT_FILES);
  const out: CgroupUsage = {
    // OpenVZ's failcnt counts refusals: hitting memory.max (reclaim forced) plus OOM events.
    // An OOM kill means a charge was refused, so OOM kills are the floor (as on v1).
    memory: { held, failcnt: Math.max(evMax! + evOom!, evOomKill!), oomKills: evOomKill! },
    processes: { held: pidsCur, failcnt: pidsFail! },
    cpu: { usageUs: usageUs!, periods: periods!, throttledPeriods: throttled!, throttledUs: throttledUs! },
    procs,
  };
  if (withIo) out.io = sumIoStat(set.read(13, true));
  if (peak !== undefined) out.memory.maxheld = peak;
  if (limit !== undefined) out.memory.limit = limit;
  if (pidsPeak !== undefined) out.processes.maxheld = pidsPeak;
  if (pidsMax !== undefined) out.processes.limit = pidsMax;
  if (swCur !== undefined) {
    out.swap = { held: swCur, failcnt: swEvents ? swEvents[0]! + swEvents[1]! : 0 };
    if (swPeak !== undefined) out.swap.maxheld = swPeak;
    if (swLimit !== undefined) out.swap.limit = swLimit;
  }
  return out;
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
