// cgroup v1 reader: one directory per controller under the root (memory, cpu, cpuacct, pids,
// cpuset, blkio, ...), the VE's cgroup path below each. Optional files (memsw without swap
// accounting, bfq weight without bfq, throttles) are read as absent, not as errors.

import { stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { KvzError } from '../core/errors.js';
import { cachedLimits, CounterFiles, parseIntStrict, parseLimitBytes, readText, type CgroupReader, type CgroupUsage, type CounterFileSet, type IoThrottle, type UsageReadOptions } from './cgroup.js';
import { DEFAULT_IO_WEIGHT, formatCpuset, parseCpuset, type BlockDevice } from './limits.js';
import type { VELimits } from './types.js';

export const V1_CONTROLLERS = ['memory', 'cpu', 'cpuacct', 'pids', 'devices', 'freezer', 'blkio', 'cpuset', 'systemd', 'unified'] as const;

const THROTTLE_FILES = {
  readBps: 'blkio.throttle.read_bps_device',
  writeBps: 'blkio.throttle.write_bps_device',
  readIops: 'blkio.throttle.read_iops_device',
  writeIops: 'blkio.throttle.write_iops_device',
} as const;

/** The files readUsage reads, by controller; indexes into a CounterFileSet. */
const USAGE_FILES = [
  ['memory', 'memory.usage_in_bytes'],
  ['memory', 'memory.max_usage_in_bytes'],
  ['memory', 'memory.limit_in_bytes'],
  ['memory', 'memory.failcnt'],
  ['memory', 'memory.oom_control'],
  ['memory', 'memory.memsw.usage_in_bytes'],
  ['memory', 'memory.memsw.max_usage_in_bytes'],
  ['memory', 'memory.memsw.limit_in_bytes'],
  ['memory', 'memory.memsw.failcnt'],
  ['pids', 'pids.current'],
  ['pids', 'pids.max'],
  ['pids', 'pids.events'],
  ['cpuacct', 'cpuacct.usage'],
  ['cpu', 'cpu.stat'],
  ['blkio', 'blkio.throttle.io_service_bytes_recursive'],
  ['blkio', 'blkio.throttle.io_serviced_recursive'],
  ['pids', 'cgroup.procs'],
] as const;

export class CgroupV1 implements CgroupReader {
  readonly version = 'v1' as const;

  private readonly counters: CounterFiles;

  constructor(private readonly root = '/sys/fs/cgroup') {
    this.counters = new CounterFiles((cgroupPath) => USAGE_FILES.map(([c, n]) => this.file(c, cgroupPath, n)));
  }

  async readLimits(cgroupPath: string, opts: { device?: BlockDevice } = {}): Promise<VELimits> {
    // Called after every change the agent applies: the next usage read re-reads the limits too.
    this.counters.invalidate(cgroupPath);
    const f = (c: string, n: string) => this.file(c, cgroupPath, n);
    // First on its own, so a missing cgroup fails naming the memory limit file.
    const mem = await this.bytes(f('memory', 'memory.limit_in_bytes'));
    const [memsw, soft, shares, quota, period, pidsMax, cpus, allCpus, weight, throttles] = await Promise.all([
      this.bytes(f('memory', 'memory.memsw.limit_in_bytes'), true),
      this.bytes(f('memory', 'memory.soft_limit_in_bytes'), true),
      this.int(f('cpu', 'cpu.shares')),
      this.int(f('cpu', 'cpu.cfs_quota_us')),
      this.int(f('cpu', 'cpu.cfs_period_us')),
      readText(f('pids', 'pids.max')),
      readText(f('cpuset', 'cpuset.cpus'), true),
      this.allCpus().catch(() => undefined),
      this.readWeight(cgroupPath),
      this.readThrottles(cgroupPath, opts.device),
    ]);
    const out: VELimits = { cpuShares: shares, cpuPeriodUs: period };
    if (mem !== undefined) {
      out.memoryBytes = mem;
      // memsw = memory + swap; unlimited memsw under a memory limit cannot be expressed in
      // VELimits (kubevz never writes it) and reads back as no swap limit known.
      if (memsw !== undefined) out.swapBytes = memsw - mem;
    }
    if (soft !== undefined) out.memoryGuaranteeBytes = soft;
    if (quota >= 0) out.cpuQuotaUs = quota;
    if (pidsMax !== undefined && pidsMax !== 'max') out.pids = parseIntStrict(pidsMax, f('pids', 'pids.max'));
    // The whole host's set means "no cpuset" (runc copies the parent's into a new cgroup).
    if (cpus && cpus !== allCpus) out.cpuset = formatCpuset(parseCpuset(cpus));
    if (weight !== undefined && weight !== DEFAULT_IO_WEIGHT) out.ioWeight = weight;
    Object.assign(out, throttles);
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
    for (const [k, name] of Object.entries(THROTTLE_FILES) as [keyof IoThrottle, string][]) {
      const path = this.file('blkio', cgroupPath, name);
      const value = `${device.major}:${device.minor} ${t[k] ?? 0}`;
      // Writing 0 for a device without a rule is a no-op for the kernel, so clearing is idempotent.
      await writeFile(path, value).catch((err: NodeJS.ErrnoException) => {
        throw new KvzError('HostSetup', `failed to write ${JSON.stringify(value)} to ${path}: ${err.message} (is ${device.major}:${device.minor} a whole disk, not a partition?)`, {
          cause: err,
          details: { path, value },
        });
      });
    }
  }

  async allCpus(): Promise<string> {
    const v = await readText(join(this.root, 'cpuset', 'cpuset.cpus'));
    return formatCpuset(parseCpuset(v ?? ''));
  }

  async exists(cgroupPath: string): Promise<boolean> {
    for (const c of V1_CONTROLLERS) {
      try {
        await stat(join(this.root, c, cgroupPath));
        return true;
      } catch {
        // not in this controller
      }
    }
    return false;
  }

  private file(controller: string, cgroupPath: string, name: string): string {
    return join(this.root, controller, cgroupPath, name);
  }

  private async int(path: string): Promise<number> {
    return parseIntStrict((await readText(path)) ?? '', path);
  }

  /** Bytes, or undefined when unlimited (or when the optional file is missing). */
  private async bytes(path: string, optional = false): Promise<number | undefined> {
    const v = await readText(path, optional);
    return v === undefined ? undefined : parseLimitBytes(v, path);
  }

  /** blkio.weight (cfq) or blkio.bfq.weight ("100" or "default 100"); undefined when neither exists. */
  private async readWeight(cgroupPath: string): Promise<number | undefined> {
    for (const name of ['blkio.weight', 'blkio.bfq.weight']) {
      const v = await readText(this.file('blkio', cgroupPath, name), true);
      if (v === undefined) continue;
      const m = /(?:^|default\s+)(\d+)\s*$/m.exec(v);
      if (m) return Number(m[1]);
    }
    return undefined;
  }

  private async readThrottles(cgroupPath: string, device?: BlockDevice): Promise<Partial<VELimits>> {
    const out: Partial<VELimits> = {};
    for (const [k, name] of Object.entries(THROTTLE_FILES) as [keyof IoThrottle, string][]) {
      const v = await readText(this.file('blkio', cgroupPath, name), true);
      const rate = pickDeviceRate(v, device);
      if (rate) out[k] = rate;
    }
    return out;
  }
}

/** memory.limit_in_bytes, memory.memsw.limit_in_bytes (optional), pids.max: see cachedLimits. */
const LIMIT_FILES = [[2, false], [7, true], [10, false]] as const;

/** Usage from the USAGE_FILES of one cgroup. Synchronous on purpose: one pread per file, no promise per file (see CounterFiles). */
function usageFrom(set: CounterFileSet, withIo: boolean, withProcs: boolean): CgroupUsage {
  const int = (i: number) => set.readInt(i) as number;
  const usage = int(0);
  const maxUsage = int(1);
  const failcnt = int(3);
  const [oomKills] = set.readKeys(4, ['oom_kill'], true) ?? [0];
  const swUsage = set.readInt(5, true);
  const swMax = set.readInt(6, true);
  const swFail = set.readInt(8, true);
  const pidsCur = int(9);
  const [pidsFail] = set.readKeys(11, ['max'], true) ?? [0];
  const cpuNs = int(12);
  const [periods, throttled, throttledNs] = set.readKeys(13, ['nr_periods', 'nr_throttled', 'throttled_time'])!;
  const procs = withProcs ? set.readPids(16, true) : [];
  const [limit, swLimit, pidsMax] = cachedLimits(set, LIMIT_FILES);
  const out: CgroupUsage = {
    // A charge refused by memsw (memory+swap) counts in memsw.failcnt only: both are refusals.
    // Kernel 6.18 (measured here) leaves both at 0 even across OOM kills, and an OOM kill
    // means a charge was refused, so OOM kills are the floor.
    memory: { held: usage, maxheld: maxUsage, failcnt: Math.max(failcnt + (swFail ?? 0), oomKills!), oomKills: oomKills! },
    processes: { held: pidsCur, failcnt: pidsFail! },
    cpu: { usageUs: Math.floor(cpuNs / 1000), periods: periods!, throttledPeriods: throttled!, throttledUs: Math.floor(throttledNs! / 1000) },
    procs,
  };
  if (withIo) out.io = { ...sumBlkio(set.read(14, true), 'Bytes'), ...sumBlkio(set.read(15, true), 'Ops') } as CgroupUsage['io'];
  if (limit !== undefined) out.memory.limit = limit;
  if (pidsMax !== undefined) out.processes.limit = pidsMax;
  if (swUsage !== undefined) {
    out.swap = { held: Math.max(0, swUsage - usage), maxheld: Math.max(0, (swMax ?? 0) - maxUsage), failcnt: swFail ?? 0 };
    if (swLimit !== undefined && limit !== undefined) out.swap.limit = swLimit - limit;
  }
  return out;
}

/** "MAJ:MIN RATE" lines → the rate for the device (or the first line when no device is given). */
export function pickDeviceRate(text: string | undefined, device?: BlockDevice): number | undefined {
  for (const line of (text ?? '').split('\n')) {
    const m = /^(\d+):(\d+)\s+(\d+)$/.exec(line.trim());
    if (!m) continue;
    if (!device || (Number(m[1]) === device.major && Number(m[2]) === device.minor)) return Number(m[3]);
  }
  return undefined;
}

/** blkio "MAJ:MIN Read N" / "Write N" lines summed over devices (the "Total" lines skipped). */
function sumBlkio(text: string | undefined, kind: 'Bytes' | 'Ops'): Record<string, number> {
  let read = 0;
  let write = 0;
  for (const line of (text ?? '').split('\n')) {
    const m = /^\d+:\d+\s+(Read|Write)\s+(\d+)$/.exec(line.trim());
    if (!m) continue;
    if (m[1] === 'Read') read += Number(m[2]);
    else write += Number(m[2]);
  }
  return { [`read${kind}`]: read, [`write${kind}`]: write };
}
