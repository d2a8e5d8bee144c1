// cgroup v1 reader: one directory per controller under the root (memory, cpu, pids, ...), the
// VE's cgroup path below each.

import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { KvzError } from '../core/errors.js';
import type { CgroupReader } from './cgroup.js';
import type { VELimits } from './types.js';

/** Values at or above this are the kernel's "unlimited" (PAGE_COUNTER_MAX pages, 2^63-ish). */
const UNLIMITED_BYTES = 2n ** 62n;

export const V1_CONTROLLERS = ['memory', 'cpu', 'cpuacct', 'pids', 'devices', 'freezer', 'blkio', 'cpuset', 'systemd', 'unified'] as const;

export class CgroupV1 implements CgroupReader {
  readonly version = 'v1' as const;

  constructor(private readonly root = '/sys/fs/cgroup') {}

  async readLimits(cgroupPath: string): Promise<VELimits> {
    const mem = await this.readBytes('memory', cgroupPath, 'memory.limit_in_bytes');
    const memsw = await this.readBytes('memory', cgroupPath, 'memory.memsw.limit_in_bytes', true);
    const shares = await this.readInt('cpu', cgroupPath, 'cpu.shares');
    const quota = await this.readInt('cpu', cgroupPath, 'cpu.cfs_quota_us');
    const period = await this.readInt('cpu', cgroupPath, 'cpu.cfs_period_us');
    const pidsMax = await this.read('pids', cgroupPath, 'pids.max');
    const out: VELimits = { cpuShares: shares, cpuPeriodUs: period };
    if (mem !== undefined) {
      out.memoryBytes = mem;
      // memsw = memory + swap; unlimited memsw under a memory limit cannot be expressed in
      // VELimits (kubevz never writes it) and reads back as no swap limit known.
      if (memsw !== undefined) out.swapBytes = memsw - mem;
    }
    if (quota >= 0) out.cpuQuotaUs = quota;
    if (pidsMax !== undefined && pidsMax !== 'max') out.pids = parseIntStrict(pidsMax, this.file('pids', cgroupPath, 'pids.max'));
    return out;
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

  private async read(controller: string, cgroupPath: string, name: string, optional = false): Promise<string | undefined> {
    const path = this.file(controller, cgroupPath, name);
    try {
      return (await readFile(path, 'utf8')).trim();
    } catch (err) {
      if (optional && (err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      const code = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'NotFound' : 'Internal';
      throw new KvzError(code, `failed to read ${path}: ${(err as Error).message}`, { cause: err, details: { path } });
    }
  }

  private async readInt(controller: string, cgroupPath: string, name: string): Promise<number> {
    const v = await this.read(controller, cgroupPath, name);
    return parseIntStrict(v ?? '', this.file(controller, cgroupPath, name));
  }

  /** Bytes, or undefined when unlimited (or when the optional file is missing). */
  private async readBytes(controller: string, cgroupPath: string, name: string, optional = false): Promise<number | undefined> {
    const v = await this.read(controller, cgroupPath, name, optional);
    if (v === undefined) return undefined;
    const path = this.file(controller, cgroupPath, name);
    if (!/^-?\d+$/.test(v)) throw new KvzError('Internal', `unexpected value ${JSON.stringify(v)} in ${path}`, { details: { path } });
    const n = BigInt(v);
    if (n < 0n || n >= UNLIMITED_BYTES) return undefined;
    return Number(n);
  }
}

function parseIntStrict(v: string, path: string): number {
  if (!/^-?\d+$/.test(v)) throw new KvzError('Internal', `unexpected value ${JSON.stringify(v)} in ${path}`, { details: { path } });
  return Number(v);
}
