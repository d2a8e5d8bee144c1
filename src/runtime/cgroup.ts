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
  /** Also read the block I/O counters (two more files per pass; the beancounters do not use them). */
  io?: boolean;
  /** List the cgroup's processes (cgroup.procs) [true]; false gives an empty `procs`. */
  procs?: boolean;
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
const UNLIMITED_NUMBER = 2 ** 62;

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

/**
 * Node cannot read RLIMIT_NOFILE: 4096 (the 15 counter files of ~270 VEs; UsageReader's netns
 * files have their own cap of 2048) stays well under usual hard limits (20,000 here).
 */
const DEFAULT_MAX_OPEN = 4096;

const CLOSED = -1;
const ABSENT = -2;
/**
 * One buffer for every pread (reads are synchronous, so they never interleave); grown, and kept
 * grown, for a larger file (cgroup.procs of a VE with thousands of processes).
 */
let buf = Buffer.allocUnsafe(16 * 1024);

/** Reads a whole open file from offset 0 into `buf`; returns the byte count. */
function preadAll(fd: number): number {
  let n = readSync(fd, buf, 0, buf.length, 0);
  while (n === buf.length) {
    const bigger = Buffer.allocUnsafe(buf.length * 2);
    buf.copy(bigger, 0, 0, n);
    buf = bigger;
    const more = readSync(fd, buf, n, buf.length - n, n);
    if (more === 0) break;
    n += more;
  }
  return n;
}

function isSpace(c: number): boolean {
  return c === 32 || c === 10 || c === 9 || c === 13;
}

/**
 * The decimal integer in buf[from, to) with surrounding blanks; "max" is Infinity; NaN for
 * anything else. Parsed from the bytes: a pass reads thousands of one-number files, and a
 * string (and a regex test) per file is work and garbage for nothing.
 */
function intAt(from: number, to: number): number {
  while (from < to && isSpace(buf[from]!)) from++;
  while (to > from && isSpace(buf[to - 1]!)) to--;
  if (from === to) return NaN;
  if (to - from === 3 && buf[from] === 109 && buf[from + 1] === 97 && buf[from + 2] === 120) return Infinity; // "max"
  const neg = buf[from] === 45;
  let i = neg ? from + 1 : from;
  if (i === to) return NaN;
  let v = 0;
  for (; i < to; i++) {
    const c = buf[i]!;
    if (c < 48 || c > 57) return NaN;
    v = v * 10 + (c - 48);
  }
  return neg ? -v : v;
}

/**
 * The counter files of one cgroup (or of one netns, see UsageReader), kept open: the kernel
 * regenerates a seq_file's text on every read from offset 0, so a pass costs one pread per file
 * instead of open+fstat+read+close. Once its cgroup is removed, an open descriptor answers ENODEV — also
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
  /** What the reader keeps between reads besides descriptors (the limits, see cachedLimits); dropped on close. */
  memo: unknown;

  constructor(
    readonly paths: readonly string[],
    private readonly budget: FdBudget = { open: 0, max: Infinity },
  ) {
    this.fds = new Int32Array(paths.length).fill(CLOSED);
  }

  /** File i's text, trimmed; undefined when optional and absent. */
  read(i: number, optional = false): string | undefined {
    const n = this.fill(i, optional);
    return n < 0 ? undefined : buf.toString('latin1', 0, n).trim();
  }

  /** File i as one integer; undefined when optional and absent; an error naming the file for anything else. */
  readInt(i: number, optional = false): number | undefined {
    const n = this.fill(i, optional);
    if (n < 0) return undefined;
    const v = intAt(0, n);
    if (!Number.isFinite(v)) throw unexpected(`value ${JSON.stringify(buf.toString('latin1', 0, n).trim())}`, this.paths[i]!);
    return v;
  }

  /**
   * File i as a limit: a number, or undefined for "max", the kernel's huge unlimited values
   * (as parseLimitBytes), and an optional file that is absent.
   */
  readLimit(i: number, optional = false): number | undefined {
    const n = this.fill(i, optional);
    if (n < 0) return undefined;
    const v = intAt(0, n);
    if (Number.isNaN(v)) throw unexpected(`value ${JSON.stringify(buf.toString('latin1', 0, n).trim())}`, this.paths[i]!);
    return v < 0 || v >= UNLIMITED_NUMBER ? undefined : v;
  }

  /**
   * The values of `keys` in a "key value" lines file (cpu.stat, memory.events, pids.events,
   * memory.oom_control), 0 for a key not listed; undefined when optional and absent. A line
   * that is not "key integer" is an error naming the file.
   */
  readKeys(i: number, keys: readonly string[], optional = false): number[] | undefined {
    const n = this.fill(i, optional);
    if (n < 0) return undefined;
    const out = keys.map(() => 0);
    let start = 0;
    while (start < n) {
      let end = buf.indexOf(10, start);
      if (end < 0 || end > n) end = n;
      let k = start;
      while (k < end && isSpace(buf[k]!)) k++;
      if (k < end) {
        let sp = k;
        while (sp < end && !isSpace(buf[sp]!)) sp++;
        const v = intAt(sp, end);
        if (sp === end || !Number.isFinite(v)) throw unexpected(`line ${JSON.stringify(buf.toString('latin1', start, end).trim())}`, this.paths[i]!);
        for (let j = 0; j < keys.length; j++) {
          const key = keys[j]!;
          if (key.length !== sp - k) continue;
          let same = true;
          for (let c = 0; c < key.length && same; c++) same = buf[k + c] === key.charCodeAt(c);
          if (same) out[j] = v;
        }
      }
      start = end + 1;
    }
    return out;
  }

  /** File i as one positive integer per line (cgroup.procs); [] when optional and absent. */
  readPids(i: number, optional = false): number[] {
    const n = this.fill(i, optional);
    const out: number[] = [];
    let v = 0;
    let digits = 0;
    for (let j = 0; j <= n; j++) {
      const c = j < n ? buf[j]! : 10;
      if (c >= 48 && c <= 57) {
        v = v * 10 + (c - 48);
        digits++;
      } else {
        if (digits > 0 && v > 0) out.push(v);
        v = 0;
        digits = 0;
      }
    }
    return out;
  }

  /** Reads file i whole into `buf`: the byte count, or -1 when optional and absent. */
  private fill(i: number, optional: boolean): number {
    const fd = this.fds[i]!;
    if (fd === ABSENT) return -1;
    if (fd >= 0) {
      try {
        return preadAll(fd);
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
      readFailure(path, err, optional);
      this.fds[i] = ABSENT;
      return -1;
    }
    let n: number;
    try {
      n = preadAll(opened);
    } catch (err) {
      closeSync(opened);
      readFailure(path, err, optional);
      this.fds[i] = ABSENT;
      return -1;
    }
    if (this.budget.open < this.budget.max) {
      this.fds[i] = opened;
      this.budget.open++;
    } else closeSync(opened); // over budget: read like readText, keep nothing
    return n;
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
    this.memo = undefined;
  }
}

/**
 * Limits read along with the counters are trusted this long. They change only when written —
 * by the agent, which reads them back (readLimits) after every change it applies, and that
 * drops the cached values — so re-reading them every pass was a fifth of a pass's reads for
 * nothing. A hand-written limit shows within this time (and the agent's drift check puts it back).
 */
export const LIMITS_MAX_AGE_MS = 10_000;

interface LimitMemo {
  at: number;
  values: (number | undefined)[];
}

/**
 * The values (readLimit) of a set's limit files, given as [index, optional] pairs: read again
 * when LIMITS_MAX_AGE_MS old, after the set was reopened, or after CounterFiles.invalidate.
 */
export function cachedLimits(set: CounterFileSet, files: readonly (readonly [number, boolean])[], now = performance.now()): (number | undefined)[] {
  const memo = set.memo as LimitMemo | undefined;
  if (memo && now - memo.at < LIMITS_MAX_AGE_MS && now >= memo.at) return memo.values;
  const values = files.map(([i, optional]) => set.readLimit(i, optional));
  set.memo = { at: now, values } satisfies LimitMemo;
  return values;
}

function unexpected(what: string, path: string): KvzError {
  return new KvzError('Internal', `unexpected ${what} in ${path}`, { details: { path } });
}

/**
 * Counter file sets by key (a cgroup path; a PID for netns files). A set not read during the
 * last 2×(number of sets)+16 calls is closed: a refresh pass reads every live VE once, so that
 * window spans at least one pass, and the descriptors of a destroyed VE (nobody called forget)
 * are released a pass or two later. With idleCloseMs, every set is also closed once no set was
 * read for that long (the last VE stopped: no pass reads anything that would sweep).
 */
export class CounterFiles<K = string> {
  private readonly sets = new Map<K, CounterFileSet>();
  private calls = 0;
  private readonly budget: FdBudget;
  private touched = false;
  private idleTimer: NodeJS.Timeout | undefined;

  /**
   * maxOpen caps the descriptors kept (a 1,000-VE node holds ~15,000 otherwise, near a usual
   * hard RLIMIT_NOFILE); files beyond it are opened and closed on each read.
   */
  constructor(
    private readonly pathsOf: (key: K) => string[],
    maxOpen = DEFAULT_MAX_OPEN,
    private readonly idleCloseMs?: number,
  ) {
    this.budget = { open: 0, max: maxOpen };
  }

  /** The set of the key; owner (the VE's init PID, or a netns identity) changing closes its descriptors first. */
  of(key: K, owner?: number): CounterFileSet {
    if (++this.calls > 2 * this.sets.size + 16) this.sweep();
    let set = this.sets.get(key);
    if (!set) {
      set = new CounterFileSet(this.pathsOf(key), this.budget);
      this.sets.set(key, set);
    } else if (owner !== set.owner) set.close();
    set.owner = owner;
    set.seen = true;
    this.touched = true;
    if (this.idleCloseMs !== undefined && !this.idleTimer) this.armIdle(this.idleCloseMs);
    return set;
  }

  /** Closes the descriptors of one key, or of all. */
  forget(key?: K): void {
    if (key !== undefined) {
      this.sets.get(key)?.close();
      this.sets.delete(key);
      return;
    }
    for (const set of this.sets.values()) set.close();
    this.sets.clear();
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
  }

  /** Drops what the key's set keeps between reads besides its descriptors (cachedLimits). */
  invalidate(key: K): void {
    const set = this.sets.get(key);
    if (set) set.memo = undefined;
  }

  /** Descriptors held over all sets (for tests and diagnostics). */
  get open(): number {
    return this.budget.open;
  }

  private sweep(): void {
    this.calls = 0;
    for (const [key, set] of this.sets) {
      if (set.seen) set.seen = false;
      else {
        set.close();
        this.sets.delete(key);
      }
    }
  }

  private armIdle(ms: number): void {
    this.touched = false;
    this.idleTimer = setTimeout(() => {
      this.idleTimer = undefined;
      if (this.touched) this.armIdle(ms);
      else this.forget();
    }, ms);
    this.idleTimer.unref();
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
