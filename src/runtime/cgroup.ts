// The runtime's view of a VE's cgroup, behind one small interface with a v1 and a v2
// implementation chosen by detecting the host. Implementations take their root and the VE's
// cgroup path as parameters so tests run on fixture directory trees. Besides reading limits
// and usage, they write the one thing runc 1.1.5 `update` cannot: block I/O throttles.

import { closeSync, existsSync, openSync, readFileSync, readSync } from 'node:fs';
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

export interface UsageReadOptions {
  /**
   * The VE's init PID: when it differs from the previous read's, the cgroup's kept-open files are
   * reopened (a restarted VE may have a new cgroup at the same path; on the kernel's cgroupfs old
   * descriptors fail with ENODEV anyway, plain-file fixture trees need this).
   */
  initPid?: number;
}

export interface CgroupReader {
  readonly version: CgroupVersion;
  /**
   * The limit files as the kernel holds them; unlimited values (and the default I/O weight)
   * come back undefined. Throttles are read for `device` (the first listed when not given).
   */
  readLimits(cgroupPath: string, opts?: { device?: BlockDevice }): Promise<VELimits>;
  /**
   * Usage, peaks and failure counters. The counter files stay open between calls (see
   * CounterFiles); a cgroup removed meanwhile is read again by path or fails NotFound.
   */
  readUsage(cgroupPath: string, o?: UsageReadOptions): Promise<CgroupUsage>;
  /** Closes the counter files kept open for this cgroup (or for every cgroup). */
  forget(cgroupPath?: string): void;
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
 * ~25× more. Used for files read once in a while (limits); per-pass counters use CounterFiles.
 */
export async function readText(path: string, optional = false): Promise<string | undefined> {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch (err) {
    return readFailure(path, err, optional);
  }
}

/** undefined for an optional file that is absent (or not supported), else a KvzError naming the file. */
function readFailure(path: string, err: unknown, optional: boolean): undefined {
  const errno = (err as NodeJS.ErrnoException).code;
  if (optional && (errno === 'ENOENT' || errno === 'ENODEV' || errno === 'EOPNOTSUPP')) return undefined;
  const code = errno === 'ENOENT' ? 'NotFound' : 'Internal';
  throw new KvzError(code, `failed to read ${path}: ${(err as Error).message}`, { cause: err, details: { path } });
}

/** Descriptors kept open over all of one reader's cgroups, and the cap. */
interface FdBudget {
  open: number;
  max: number;
}

/** Node cannot read RLIMIT_NOFILE: 4096 (~240 VEs of 17 files) stays well under usual hard limits (20,000 here). */
const DEFAULT_MAX_OPEN = 4096;

const CLOSED = -1;
const ABSENT = -2;
/** One buffer for every pread: reads are synchronous, so they never interleave. */
const BUF = Buffer.allocUnsafe(16 * 1024);

/** The whole text of an open file, read from offset 0 (trimmed). */
function preadText(fd: number): string {
  let n = readSync(fd, BUF, 0, BUF.length, 0);
  if (n < BUF.length) return BUF.toString('latin1', 0, n).trim();
  // Larger than the buffer (cgroup.procs of a VE with thousands of processes): read on.
  const parts = [Buffer.from(BUF)];
  let pos = n;
  while ((n = readSync(fd, BUF, 0, BUF.length, pos)) > 0) {
    parts.push(Buffer.from(BUF.subarray(0, n)));
    pos += n;
  }
  return Buffer.concat(parts).toString('latin1').trim();
}

/**
 * A small /proc file read whole with open+read+close (no fstat, no buffer per call, unlike
 * readFileSync); undefined when it cannot be read (process gone, not ours).
 */
export function readProcText(path: string): string | undefined {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return undefined;
  }
  try {
    return preadText(fd);
  } catch {
    return undefined;
  } finally {
    closeSync(fd);
  }
}

/**
 * The counter files of one cgroup, kept open: the kernel regenerates a cgroup (seq_file) file's
 * text on every read from offset 0, so a pass costs one pread per file instead of
 * open+fstat+read+close. Once its cgroup is removed, an open descriptor answers ENODEV — also
 * after a new cgroup took the same path (VE restarted, restored) — and the set is then closed
 * and reopened by path. An optional file found absent is remembered as absent until the set is
 * closed (cgroup files do not appear later in a cgroup, except when a controller is enabled in
 * the parent afterwards: then the set's next reopen sees them).
 */
export class CounterFileSet {
  readonly fds: Int32Array;
  /** Read since the last sweep of its CounterFiles. */
  seen = true;
  /** Who the descriptors were opened for (the VE's init PID), see CounterFiles.of. */
  owner: number | undefined;

  constructor(
    readonly paths: readonly string[],
    private readonly budget: FdBudget = { open: 0, max: Infinity },
  ) {
    this.fds = new Int32Array(paths.length).fill(CLOSED);
  }

  /** File i's text, trimmed; undefined when optional and absent. */
  read(i: number, optional = false): string | undefined {
    const fd = this.fds[i]!;
    if (fd === ABSENT) return undefined;
    if (fd >= 0) {
      try {
        return preadText(fd);
      } catch {
        // ENODEV: the cgroup was removed (maybe recreated): every descriptor of the set is stale.
        this.close();
      }
    }
    const path = this.paths[i]!;
    let opened: number;
    try {
      opened = openSync(path, 'r');
    } catch (err) {
      if (readFailure(path, err, optional) === undefined) this.fds[i] = ABSENT;
      return undefined;
    }
    let text: string;
    try {
      text = preadText(opened);
    } catch (err) {
      closeSync(opened);
      if (readFailure(path, err, optional) === undefined) this.fds[i] = ABSENT;
      return undefined;
    }
    if (this.budget.open < this.budget.max) {
      this.fds[i] = opened;
      this.budget.open++;
    } else closeSync(opened); // over budget: read like readText, keep nothing
    return text;
  }

  /** Number of descriptors held. */
  get open(): number {
    let n = 0;
    for (const fd of this.fds) if (fd >= 0) n++;
    return n;
  }

  close(): void {
    for (let i = 0; i < this.fds.length; i++) {
      const fd = this.fds[i]!;
      if (fd >= 0) {
        try {
          closeSync(fd);
        } catch {
          // already gone: nothing to release
        }
        this.budget.open--;
      }
      this.fds[i] = CLOSED;
    }
  }
}

/**
 * Counter file sets by cgroup path. A set not read during the last 2×(number of sets)+16 calls
 * is closed: a refresh pass reads every live VE once, so that window spans at least one pass,
 * and the descriptors of a destroyed VE (nobody called forget) are released a pass or two later.
 */
export class CounterFiles {
  private readonly sets = new Map<string, CounterFileSet>();
  private calls = 0;
  private readonly budget: FdBudget;

  /**
   * maxOpen caps the descriptors kept (a 1,000-VE node holds ~17,000 otherwise, near a usual
   * hard RLIMIT_NOFILE); files beyond it are opened and closed on each read.
   */
  constructor(
    private readonly pathsOf: (cgroupPath: string) => string[],
    maxOpen = DEFAULT_MAX_OPEN,
  ) {
    this.budget = { open: 0, max: maxOpen };
  }

  /** The set of the cgroup; owner (the VE's init PID) changing closes its descriptors first. */
  of(cgroupPath: string, owner?: number): CounterFileSet {
    if (++this.calls > 2 * this.sets.size + 16) this.sweep();
    let set = this.sets.get(cgroupPath);
    if (!set) {
      set = new CounterFileSet(this.pathsOf(cgroupPath), this.budget);
      this.sets.set(cgroupPath, set);
    } else if (owner !== set.owner) set.close();
    set.owner = owner;
    set.seen = true;
    return set;
  }

  /** Closes the descriptors of one cgroup, or of all. */
  forget(cgroupPath?: string): void {
    if (cgroupPath !== undefined) {
      this.sets.get(cgroupPath)?.close();
      this.sets.delete(cgroupPath);
      return;
    }
    for (const set of this.sets.values()) set.close();
    this.sets.clear();
  }

  /** Descriptors held over all sets (for tests and diagnostics). */
  get open(): number {
    return this.budget.open;
  }

  private sweep(): void {
    this.calls = 0;
    for (const [path, set] of this.sets) {
      if (set.seen) set.seen = false;
      else {
        set.close();
        this.sets.delete(path);
      }
    }
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
