// The runtime's view of a VE's cgroup, behind one small interface with a v1 and a v2
// implementation chosen by detecting the host. Implementations take their root and the VE's
// cgroup path as parameters so tests run on fixture directory trees. Besides reading limits
// and usage, they write the one thing runc 1.1.5 `update` cannot: block I/O throttles.

import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { KvzError } from '../core/errors.js';
import type { BlockDevice } from './limits.js';
import type { VELimits, VEUsage } from './types.js';
import { CgroupV1 } from './cgroup-v1.js';
import { CgroupV2 } from './cgroup-v2.js';

export type CgroupVersion = 'v1' | 'v2';

/** Usage that the cgroup files alone say, plus the PIDs in the cgroup (for fd counting). */
export type CgroupUsage = Pick<VEUsage, 'memory' | 'swap' | 'processes' | 'cpu' | 'io'> & { procs: number[] };

export interface IoThrottle {
  readBps?: number;
  writeBps?: number;
  readIops?: number;
  writeIops?: number;
}

export interface CgroupReader {
  readonly version: CgroupVersion;
  /**
   * The limit files as the kernel holds them; unlimited values (and the default I/O weight)
   * come back undefined. Throttles are read for `device` (the first listed when not given).
   */
  readLimits(cgroupPath: string, opts?: { device?: BlockDevice }): Promise<VELimits>;
  /** Usage, peaks and failure counters. */
  readUsage(cgroupPath: string): Promise<CgroupUsage>;
  /** Writes the block I/O throttles for one device (0/undefined clears a throttle). */
  setIoThrottle(cgroupPath: string, device: BlockDevice, t: IoThrottle): Promise<void>;
  /** The CPUs the host offers VEs (the root cpuset), e.g. "0-1". */
  allCpus(): Promise<string>;
  /** Whether any controller still has a directory for this cgroup path. */
  exists(cgroupPath: string): Promise<boolean>;
}

export function detectCgroupVersion(root = '/sys/fs/cgroup'): CgroupVersion {
  return existsSync(join(root, 'cgroup.controllers')) ? 'v2' : 'v1';
}

export function createCgroupReader(root = '/sys/fs/cgroup'): CgroupReader {
  return detectCgroupVersion(root) === 'v1' ? new CgroupV1(root) : new CgroupV2(root);
}

// ---- helpers shared by both implementations ----

/** Values at or above this are the kernel's "unlimited" (PAGE_COUNTER_MAX pages, 2^63-ish). */
const UNLIMITED_BYTES = 2n ** 62n;

/**
 * Reads a small cgroup/proc file synchronously: for pseudo-files of a few bytes a sync read costs
 * ~20 µs of CPU, a promise-based readFile (open, fstat, read, close through the thread pool)
 * ~25× more, which decides whether a 200-VE refresh pass fits its budget.
 */
export async function readText(path: string, optional = false): Promise<string | undefined> {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch (err) {
    const errno = (err as NodeJS.ErrnoException).code;
    if (optional && (errno === 'ENOENT' || errno === 'ENODEV' || errno === 'EOPNOTSUPP')) return undefined;
    const code = errno === 'ENOENT' ? 'NotFound' : 'Internal';
    throw new KvzError(code, `failed to read ${path}: ${(err as Error).message}`, { cause: err, details: { path } });
  }
}

export function parseIntStrict(v: string, path: string): number {
  if (!/^-?\d+$/.test(v)) throw new KvzError('Internal', `unexpected value ${JSON.stringify(v)} in ${path}`, { details: { path } });
  return Number(v);
}

/** Bytes from a limit file; undefined for "max" or the kernel's huge unlimited values. */
export function parseLimitBytes(v: string, path: string): number | undefined {
  if (v === 'max') return undefined;
  if (!/^-?\d+$/.test(v)) throw new KvzError('Internal', `unexpected value ${JSON.stringify(v)} in ${path}`, { details: { path } });
  const n = BigInt(v);
  if (n < 0n || n >= UNLIMITED_BYTES) return undefined;
  return Number(n);
}

/** "key value" lines (cpu.stat, memory.events, pids.events, memory.oom_control) → map. */
export function parseKeyValues(text: string, path: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const t = line.trim();
    if (!t) continue;
    const m = /^(\S+)\s+(-?\d+)$/.exec(t);
    if (!m) throw new KvzError('Internal', `unexpected line ${JSON.stringify(t)} in ${path}`, { details: { path } });
    out.set(m[1]!, Number(m[2]));
  }
  return out;
}

export function parseProcs(text: string | undefined): number[] {
  if (!text) return [];
  return text.split('\n').filter(Boolean).map(Number).filter((n) => Number.isInteger(n) && n > 0);
}
