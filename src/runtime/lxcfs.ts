// One lxcfs per node (per runtime state dir): a FUSE filesystem whose proc files (meminfo,
// cpuinfo, stat, ...) answer with the figures of the reading process's cgroup. Its files are
// bind-mounted over the VE's /proc files (oci-spec.ts), so `free`, `top` and `nproc` inside a VE
// show the VE's limits. lxcfs runs detached from the agent: VEs keep reading it while the agent
// is stopped, and a restarted agent adopts it by its pidfile. A supervisor notices a dead or hung
// lxcfs, starts a new one, and puts its files back into every running VE without restarting it
// (the VE's binds still point at the dead mount: kvz-idmap `bind` swaps them in the VE's mount
// namespace). Only an explicit node teardown (stopNodeServices) ends it.

import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { mkdir, readFile, rm, stat, statfs } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import { KvzError, errorCode } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { run } from './command.js';
import { pidGone } from './pid.js';
import type { NodeFeature } from './types.js';

/** The VE files lxcfs serves (lxcfs 5.0: api_extensions proc_* and sys_cpu_online), by their path inside the VE. */
export const LXCFS_FILES = [
  '/proc/cpuinfo',
  '/proc/diskstats',
  '/proc/loadavg',
  '/proc/meminfo',
  '/proc/stat',
  '/proc/swaps',
  '/proc/uptime',
  '/sys/devices/system/cpu/online',
] as const;

/**
 * -f: stay a process we can supervise (no daemonizing); -l: per-VE load average (top, uptime);
 * --enable-cfs: CPUs shown (cpuinfo, stat, cpu/online) follow the CPU quota, not only the cpuset,
 * so `nproc` inside a VE with cpu.limit 100% says 1; --enable-pidfd: no pid-reuse races.
 * Swap stays virtualized (the VE's memsw limit shows as its swap).
 */
export const LXCFS_FLAGS = ['-l', '--enable-cfs', '--enable-pidfd'];

/** A host file bound over a VE path. */
export interface ProcBind {
  source: string;
  destination: string;
}

/** The lxcfs files under its mount point `mnt`, for the VE's bundle. */
export function lxcfsBinds(mnt: string, files: readonly string[] = LXCFS_FILES): ProcBind[] {
  return files.map((destination) => ({ source: join(mnt, destination), destination }));
}

/**
 * The host's own files at the same paths: what a restore binds while lxcfs is down, so an image
 * dumped with lxcfs binds can still be restored (the supervisor swaps in lxcfs when it is back).
 */
export function hostBinds(files: readonly string[] = LXCFS_FILES): ProcBind[] {
  return files.map((destination) => ({ source: destination, destination }));
}

/** lxcfs's argv: foreground, its own pidfile (the default /run/lxcfs.pid is locked by the first lxcfs on the host). */
export function lxcfsArgs(mnt: string, pidfile: string, flags: readonly string[] = LXCFS_FLAGS): string[] {
  return ['-f', ...flags, '-p', pidfile, mnt];
}

export interface MountEntry {
  /** major:minor of the filesystem (a FUSE mount gets a new one each time it is mounted). */
  dev: string;
  /** Path inside the filesystem that is mounted (a bind of one file: that file). */
  root: string;
  mountPoint: string;
  fsType: string;
}

/** mountinfo's octal escapes (\040 for a space, ...). */
function unescape(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** Parses /proc/PID/mountinfo; mount points are as the process sees them (relative to its root). */
export function parseMountinfo(text: string): MountEntry[] {
  const out: MountEntry[] = [];
  for (const line of text.split('\n')) {
    const f = line.split(' ');
    const sep = f.indexOf('-', 6);
    if (f.length < 10 || sep < 0) continue;
    out.push({ dev: f[2]!, root: unescape(f[3]!), mountPoint: unescape(f[4]!), fsType: f[sep + 1]! });
  }
  return out;
}

/** The device of the lxcfs mounted at `mnt` (the topmost one), or undefined when none is. */
export function lxcfsMountDev(entries: MountEntry[], mnt: string): string | undefined {
  const top = entries.filter((e) => e.mountPoint === mnt).at(-1);
  return top?.fsType === 'fuse.lxcfs' ? top.dev : undefined;
}

/**
 * Which of `files` a VE must have re-bound: those that carry a bind (a mount exactly at that
 * path) which is not the live lxcfs `dev` — a dead lxcfs's, or the host's own file from a restore
 * while lxcfs was down. A path without a bind of its own was not given one at start (lxcfs was
 * down then): it stays as it is, since a mount runc does not know of would make the VE
 * impossible to checkpoint; the VE gets lxcfs at its next start.
 */
export function staleBinds(entries: MountEntry[], dev: string, files: readonly string[] = LXCFS_FILES): string[] {
  return files.filter((path) => {
    const top = entries.filter((e) => e.mountPoint === path).at(-1);
    return top !== undefined && !(top.fsType === 'fuse.lxcfs' && top.dev === dev);
  });
}

/** A stat() st_dev as mountinfo writes it (major:minor, Linux's dev_t encoding). */
export function devString(dev: number): string {
  const d = BigInt(dev);
  const major = ((d >> 8n) & 0xfffn) | ((d >> 32n) & ~0xfffn);
  const minor = (d & 0xffn) | ((d >> 12n) & ~0xffn);
  return `${major}:${minor}`;
}

const FUSE_SUPER_MAGIC = 0x65735546;

/** Whether /proc/PID/cmdline (NUL-separated) is an lxcfs serving `mnt`. */
export function isLxcfsCmdline(cmdline: string, mnt: string): boolean {
  const argv = cmdline.split('\0').filter(Boolean);
  return argv.length > 0 && /(^|\/)lxcfs$/.test(argv[0]!) && argv.at(-1) === mnt;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Resolves false after `ms` (a hung FUSE daemon never answers a stat). */
function within<T>(p: Promise<T>, ms: number): Promise<T | false> {
  let t: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((r) => {
    t = setTimeout(() => r(false), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(t));
}

function findOnPath(bin: string): string | undefined {
  if (bin.includes('/')) return existsSync(bin) ? bin : undefined;
  for (const dir of (process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin').split(delimiter)) {
    if (existsSync(join(dir, bin))) return join(dir, bin);
  }
  return undefined;
}

/** Paths of one node's lxcfs, under `<stateDir>/lxcfs`. */
export function lxcfsPaths(stateDir: string): { dir: string; mnt: string; pidfile: string; log: string } {
  const dir = join(stateDir, 'lxcfs');
  return { dir, mnt: join(dir, 'mnt'), pidfile: join(dir, 'lxcfs.pid'), log: join(dir, 'lxcfs.log') };
}

function selfMounts(): MountEntry[] {
  return parseMountinfo(readFileSync('/proc/self/mountinfo', 'utf8'));
}

/** The pid in lxcfs's pidfile, when that process is alive and is the lxcfs of `mnt`. */
function recordedPid(paths: { mnt: string; pidfile: string }): number | undefined {
  let pid: number;
  try {
    pid = Number(readFileSync(paths.pidfile, 'utf8').trim());
  } catch {
    return undefined;
  }
  if (!Number.isInteger(pid) || pid <= 0 || pidGone(pid)) return undefined;
  try {
    return isLxcfsCmdline(readFileSync(`/proc/${pid}/cmdline`, 'utf8'), paths.mnt) ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** Lazily unmounts whatever is stacked on `mnt` (a dead lxcfs leaves its mount behind, answering ENOTCONN). */
async function unmountAll(mnt: string): Promise<void> {
  for (let i = 0; i < 8 && selfMounts().some((e) => e.mountPoint === mnt); i++) {
    await run('umount', ['-l', mnt], { allowFailure: true });
  }
}

export interface LxcfsOptions {
  stateDir: string;
  /** The kvz-idmap helper (its `bind` verb re-binds files inside a running VE). */
  helper: string;
  log: Logger;
  /** lxcfs binary [lxcfs on PATH]. */
  binary?: string;
  /** How often the supervisor checks that lxcfs answers [2000 ms]. */
  checkMs?: number;
  /**
   * Calls `fn` for every running VE with its init's host pid, under that VE's lock (so no
   * checkpoint or restart runs meanwhile).
   */
  eachRunningVE: (fn: (uid: string, pid: number) => Promise<void>) => Promise<void>;
}

/** Supervisors alive in this process, by lxcfs dir: a teardown stops them before it ends lxcfs. */
const supervisors = new Map<string, Lxcfs>();

type LxcfsState = 'stopped' | 'up' | 'down' | 'unavailable';

export class Lxcfs {
  readonly paths: ReturnType<typeof lxcfsPaths>;
  private pid: number | undefined;
  private dev: string | undefined;
  private state: LxcfsState = 'stopped';
  private reason = 'lxcfs is not started on this node (the node agent starts it)';
  private timer: NodeJS.Timeout | undefined;
  private checking: Promise<void> | undefined;
  /** Set by release(): no new lxcfs is started any more. */
  private released = false;
  private repairPending = false;
  private nextStartAt = 0;
  private readonly log: Logger;

  constructor(private readonly o: LxcfsOptions) {
    this.paths = lxcfsPaths(o.stateDir);
    this.log = o.log.child({ component: 'lxcfs' });
  }

  /** Adopts the node's lxcfs or starts one, puts its files back into running VEs that lost them, and supervises it. Never throws: VEs run without lxcfs. */
  async start(): Promise<void> {
    void supervisors.get(this.paths.dir)?.release();
    supervisors.set(this.paths.dir, this);
    this.released = false;
    // One look at every running VE: lxcfs may have been restarted while a VE's re-bind failed, and the agent stopped.
    this.repairPending = true;
    await this.check();
    if (this.state === 'up') this.log.info({ pid: this.pid, mnt: this.paths.mnt }, 'lxcfs is serving VE /proc files');
    this.timer ??= setInterval(() => void this.check(), this.o.checkMs ?? 2000);
    this.timer.unref();
  }

  /**
   * Stops supervising; lxcfs keeps serving the running VEs (an agent restart adopts it). Resolves
   * once a check in flight is over: a teardown that ends lxcfs right after must not see that
   * check start a new one.
   */
  release(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.released = true;
    if (supervisors.get(this.paths.dir) === this) supervisors.delete(this.paths.dir);
    return this.checking ?? Promise.resolve();
  }

  get supervising(): boolean {
    return this.timer !== undefined;
  }

  /** For a VE that boots: lxcfs's files when lxcfs answers now; undefined (the host's figures) otherwise. */
  async bootBinds(log: Logger): Promise<ProcBind[] | undefined> {
    if (this.state === 'up' && (await this.answers())) return lxcfsBinds(this.paths.mnt);
    log.warn({ reason: this.reason }, 'lxcfs is not available: the VE\'s /proc shows the host\'s memory and CPUs until it is restarted');
    return undefined;
  }

  /** For a restore: the same destinations always (the image may hold binds there), from the host while lxcfs is down. */
  async restoreBinds(): Promise<ProcBind[]> {
    if (this.state === 'up' && (await this.answers())) return lxcfsBinds(this.paths.mnt);
    // The supervisor re-binds lxcfs's files once it answers again.
    this.repairPending = true;
    return hostBinds();
  }

  feature(): NodeFeature {
    if (this.state === 'up') return { available: true, reason: `lxcfs (pid ${this.pid}) serves VE /proc files from ${this.paths.mnt}` };
    return { available: false, reason: this.reason };
  }

  /** The pid of the lxcfs being supervised (for tests and logs). */
  get lxcfsPid(): number | undefined {
    return this.pid;
  }

  /** One supervision step; concurrent callers share it. */
  check(): Promise<void> {
    this.checking ??= this.doCheck().finally(() => {
      this.checking = undefined;
    });
    return this.checking;
  }

  private async doCheck(): Promise<void> {
    try {
      if (this.pid === undefined) this.pid = recordedPid(this.paths);
      if (this.pid !== undefined && (await this.healthy())) {
        if (this.state !== 'up') this.state = 'up';
        if (this.repairPending) await this.repairAll();
        return;
      }
      if (Date.now() < this.nextStartAt || this.released) return;
      const wasUp = this.state === 'up';
      if (this.pid !== undefined || wasUp) this.log.warn({ pid: this.pid }, 'lxcfs stopped answering; starting a new one (running VEs keep running and get its files back)');
      this.state = 'down';
      this.reason = 'lxcfs is being restarted';
      await this.replace();
      this.state = 'up';
      this.repairPending = true;
      await this.repairAll();
    } catch (err) {
      this.state = this.state === 'stopped' || this.state === 'unavailable' ? 'unavailable' : 'down';
      this.reason = (err as Error).message;
      // Missing binary or FUSE: no point in trying every few seconds.
      this.nextStartAt = Date.now() + (errorCode(err) === 'HostSetup' ? 60_000 : 5_000);
      this.log.warn({ err: this.reason }, 'lxcfs is not available; VEs show the host\'s /proc figures');
    }
  }

  /** Cheap enough for every few seconds with many VEs: no mountinfo scan, one statfs and two stats. */
  private async healthy(): Promise<boolean> {
    if (this.pid === undefined || pidGone(this.pid)) return false;
    if (!(await this.answers())) return false;
    const fs = await statfs(this.paths.mnt).catch(() => undefined);
    if (fs?.type !== FUSE_SUPER_MAGIC) return false;
    this.dev = devString((await stat(this.paths.mnt)).dev);
    return true;
  }

  /** A stat through the mount: ENOTCONN when lxcfs died, no answer when it hangs. */
  private async answers(): Promise<boolean> {
    const ok = await within(stat(join(this.paths.mnt, 'proc/uptime')).then(() => true, () => false), 5_000);
    return ok === true;
  }

  /** Ends the recorded lxcfs (if any), clears its mount, starts a new one and waits until it answers. */
  private async replace(): Promise<void> {
    const binary = findOnPath(this.o.binary ?? 'lxcfs');
    if (!binary) throw new KvzError('HostSetup', `lxcfs is not installed (${this.o.binary ?? 'lxcfs'} not found on PATH): apt-get install lxcfs`);
    if (!existsSync('/dev/fuse')) throw new KvzError('HostSetup', 'lxcfs needs /dev/fuse, which this host lacks: modprobe fuse');
    if (this.pid !== undefined) await endProcess(this.pid, this.paths.mnt);
    this.pid = undefined;
    this.dev = undefined;
    // A dead lxcfs's mount answers ENOTCONN, even to mkdir: clear it first.
    await unmountAll(this.paths.mnt);
    await mkdir(this.paths.mnt, { recursive: true });
    const out = openSync(this.paths.log, 'a');
    let child: ChildProcess;
    try {
      // Its own session: lxcfs outlives the agent; a file, not a pipe, for its output (a pipe would break when the agent exits).
      child = spawn(binary, lxcfsArgs(this.paths.mnt, this.paths.pidfile), { detached: true, stdio: ['ignore', out, out] });
    } finally {
      closeSync(out);
    }
    child.unref();
    let exited = false;
    child.once('error', () => undefined);
    child.once('exit', () => {
      exited = true;
      // Noticed at once rather than at the next tick (an adopted lxcfs is only polled).
      if (this.timer && this.pid === child.pid) setImmediate(() => void this.check());
    });
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline && !exited) {
      this.dev = lxcfsMountDev(selfMounts(), this.paths.mnt);
      if (this.dev && (await this.answers())) {
        this.pid = child.pid;
        this.log.info({ pid: this.pid, mnt: this.paths.mnt }, 'lxcfs started');
        return;
      }
      await sleep(20);
    }
    if (!exited && child.pid) await endProcess(child.pid, this.paths.mnt);
    const tail = (await readFile(this.paths.log, 'utf8').catch(() => '')).trim().split('\n').slice(-5).join(' | ');
    throw new KvzError('Internal', `lxcfs did not mount ${this.paths.mnt} (${exited ? 'it exited' : 'no answer in 10 s'}); its log ${this.paths.log} ends: ${tail}`);
  }

  /** Puts lxcfs's files back where a VE's binds are stale; a failure is retried at the next check. */
  private async repairAll(): Promise<void> {
    const dev = this.dev;
    if (!dev) return;
    let failed = 0;
    let fixed = 0;
    await this.o.eachRunningVE(async (uid, pid) => {
      try {
        const text = await readFile(`/proc/${pid}/mountinfo`, 'utf8');
        const stale = staleBinds(parseMountinfo(text), dev);
        if (!stale.length) return;
        await run(this.o.helper, ['bind', String(pid), ...stale.flatMap((d) => [join(this.paths.mnt, d), d])], { timeoutMs: 10_000 });
        fixed++;
        this.log.info({ uid, pid, files: stale.length }, 'lxcfs files bound again in a running VE');
      } catch (err) {
        // A VE that just stopped has no mountinfo: nothing to fix there.
        if (!pidGone(pid)) {
          failed++;
          this.log.warn({ uid, pid, err: (err as Error).message }, 'could not bind lxcfs files in the VE again; will retry');
        }
      }
    });
    this.repairPending = failed > 0;
    if (fixed) this.log.info({ ves: fixed }, 'running VEs read lxcfs again');
  }
}

/** SIGTERM (lxcfs unmounts itself), SIGKILL after 5 s; only a process that is the lxcfs of `mnt`. */
async function endProcess(pid: number, mnt: string): Promise<void> {
  const cmdline = (() => {
    try {
      return readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    } catch {
      return '';
    }
  })();
  if (pidGone(pid) || !isLxcfsCmdline(cmdline, mnt)) return;
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  for (let i = 0; i < 250 && !pidGone(pid); i++) await sleep(20);
  if (!pidGone(pid)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone meanwhile */
    }
    for (let i = 0; i < 250 && !pidGone(pid); i++) await sleep(20);
  }
}

/**
 * Ends the node's lxcfs (node teardown: VEs must be destroyed first, or their /proc files stop
 * answering): stops a supervisor of this process, ends the recorded lxcfs, unmounts, removes its dir.
 */
export async function stopNodeServices(opts: { stateDir: string }): Promise<void> {
  const paths = lxcfsPaths(opts.stateDir);
  await supervisors.get(paths.dir)?.release();
  const pid = recordedPid(paths);
  if (pid !== undefined) await endProcess(pid, paths.mnt);
  if (existsSync(paths.dir)) {
    await unmountAll(paths.mnt);
    // A lazily detached FUSE mount can still be settling: retried rather than failed (ENOTEMPTY, EBUSY).
    await rm(paths.dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 50 });
  }
}
