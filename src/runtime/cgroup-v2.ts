// cgroup v2 reader: one unified tree, the VE's cgroup path directly under the root. Tested on
// fixture trees (test/fixtures/cgroup-v2) because this project's CI host is v1. Differences
// from v1 that matter: swap is its own counter (memory.swap.*), failures are event counters
// (memory.events max/oom, pids.events max), CPU weight replaces shares (lossy conversion,
// reported raw as cpuWeight), throttles are one io.max line per device.

import { stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { KvzError } from '../core/errors.js';
import { CounterFiles, parseIntStrict, parseKeyValues, parseLimitBytes, parseProcs, readText, type CgroupReader, type CgroupUsage, type IoThrottle, type UsageReadOptions } from './cgroup.js';
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
      return usageFrom(set.read.bind(set), set.paths);
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

/** Usage from the USAGE_FILES of one cgroup. Synchronous on purpose: one pread per file, no promise per file. */
function usageFrom(read: (i: number, optional?: boolean) => string | undefined, paths: readonly string[]): CgroupUsage {
  const current = read(0);
  const peak = read(1, true);
  const memMax = read(2);
  const memEvents = read(3);
  const swCur = read(4, true);
  const swPeak = read(5, true);
  const swMax = read(6, true);
  const swEvents = read(7, true);
  const pidsCur = read(8);
  const pidsPeak = read(9, true);
  const pidsMax = read(10);
  const pidsEvents = read(11, true);
  const cpuStat = read(12);
  const ioStat = read(13, true);
  const procs = read(14, true);
  const ev = parseKeyValues(memEvents ?? '', paths[3]!);
  const stat = parseKeyValues(cpuStat ?? '', paths[12]!);
  const held = parseIntStrict(current ?? '', paths[0]!);
  const out: CgroupUsage = {
    // OpenVZ's failcnt counts refusals: hitting memory.max (reclaim forced) plus OOM events.
    // An OOM kill means a charge was refused, so OOM kills are the floor (as on v1).
    memory: { held, failcnt: Math.max((ev.get('max') ?? 0) + (ev.get('oom') ?? 0), ev.get('oom_kill') ?? 0), oomKills: ev.get('oom_kill') ?? 0 },
    processes: {
      held: parseIntStrict(pidsCur ?? '', paths[8]!),
      failcnt: pidsEvents ? (parseKeyValues(pidsEvents, paths[11]!).get('max') ?? 0) : 0,
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
  if (peak !== undefined) out.memory.maxheld = parseIntStrict(peak, paths[1]!);
  const limit = parseLimitBytes(memMax ?? '', paths[2]!);
  if (limit !== undefined) out.memory.limit = limit;
  if (pidsPeak !== undefined) out.processes.maxheld = parseIntStrict(pidsPeak, paths[9]!);
  if (pidsMax !== 'max') out.processes.limit = parseIntStrict(pidsMax ?? '', paths[10]!);
  if (swCur !== undefined) {
    const sev = swEvents ? parseKeyValues(swEvents, paths[7]!) : new Map<string, number>();
    out.swap = { held: parseIntStrict(swCur, paths[4]!), failcnt: (sev.get('max') ?? 0) + (sev.get('fail') ?? 0) };
    if (swPeak !== undefined) out.swap.maxheld = parseIntStrict(swPeak, paths[5]!);
    const sl = swMax === undefined ? undefined : parseLimitBytes(swMax, paths[6]!);
    if (sl !== undefined) out.swap.limit = sl;
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
