// Typed wrapper over the runc binary with this agent's own --root. Errors carry the command,
// its arguments and runc's stderr (or its log file, for detached create).

import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { KvzError } from '../core/errors.js';
import { commandFailed, run } from './command.js';
import type { ExecOptions } from './types.js';

export type RuncStatus = 'creating' | 'created' | 'running' | 'paused' | 'stopped';

export interface RuncState {
  id: string;
  pid: number;
  status: RuncStatus;
  bundle: string;
  annotations?: Record<string, string>;
}

/** `runc exec` takes exactly the runtime contract's exec options. */
export type RuncExecOptions = ExecOptions;

export class Runc {
  constructor(
    readonly root: string,
    readonly binary = 'runc',
    /** CRIU for checkpoint/restore (`runc --criu`); undefined = runc's default lookup. */
    readonly criu?: string,
  ) {}

  private criuArgs(args: string[]): string[] {
    return this.criu ? ['--root', this.root, '--criu', this.criu, ...args] : this.args(args);
  }

  /**
   * `runc checkpoint` (CRIU dump) with established TCP connections. Without leaveRunning runc
   * removes the container after a successful dump. CRIU's own log is dump.log in workPath.
   */
  async checkpoint(id: string, o: { imagePath: string; workPath: string; leaveRunning?: boolean; signal?: AbortSignal }): Promise<void> {
    const args = this.criuArgs(['checkpoint', '--image-path', o.imagePath, '--work-path', o.workPath, '--tcp-established', ...(o.leaveRunning ? ['--leave-running'] : []), id]);
    await run(this.binary, args, { signal: o.signal });
  }

  /**
   * `runc restore -d` from a bundle: like create, detached with /dev/null stdio in its own
   * session (the restored processes keep what they had); errors come from runc's log file and
   * CRIU's restore.log in workPath.
   */
  async restore(id: string, bundle: string, o: { imagePath: string; workPath: string; signal?: AbortSignal }): Promise<void> {
    const log = join(o.workPath, 'runc-restore.log');
    await rm(log, { force: true });
    const args = this.criuArgs(['--log', log, '--log-format', 'json', 'restore', '-d', '--bundle', bundle, '--image-path', o.imagePath, '--work-path', o.workPath, '--tcp-established', id]);
    const code = await new Promise<number>((resolve, reject) => {
      const child = spawn(this.binary, args, { stdio: 'ignore', detached: true, signal: o.signal });
      child.once('error', reject);
      child.once('exit', (c, sig) => resolve(c ?? (sig ? 128 : -1)));
    });
    if (code !== 0) {
      const text = await readFile(log, 'utf8').catch(() => '');
      throw commandFailed(this.binary, args, code, lastRuncError(text));
    }
  }

  private args(args: string[]): string[] {
    return ['--root', this.root, ...args];
  }

  /**
   * `runc create` detached. runc hands its own stdio to the container's init, so it runs with
   * /dev/null for all three (never a pipe we wait on, never a host file CRIU cannot dump) and
   * in its own session (a Ctrl-C to the agent's process group must not reach the VE). Errors
   * are read back from runc's log file.
   */
  async create(id: string, bundle: string, opts: { signal?: AbortSignal } = {}): Promise<void> {
    const log = join(bundle, 'runc-create.log');
    await rm(log, { force: true });
    const args = this.args(['--log', log, '--log-format', 'json', 'create', '--bundle', bundle, id]);
    const code = await new Promise<number>((resolve, reject) => {
      const child = spawn(this.binary, args, { stdio: 'ignore', detached: true, signal: opts.signal });
      child.once('error', reject);
      child.once('exit', (c, sig) => resolve(c ?? (sig ? 128 : -1)));
    });
    if (code !== 0) {
      const text = await readFile(log, 'utf8').catch(() => '');
      throw commandFailed(this.binary, args, code, lastRuncError(text));
    }
  }

  async start(id: string, signal?: AbortSignal): Promise<void> {
    await run(this.binary, this.args(['start', id]), { signal });
  }

  /** The container's state, or undefined when runc does not know it. */
  async state(id: string, signal?: AbortSignal): Promise<RuncState | undefined> {
    // runc keeps a container's state in <root>/<id>; without that dir it only says "does not
    // exist". Skipping the spawn matters with many stopped VEs (one per reconcile).
    if (!existsSync(join(this.root, id))) return undefined;
    const res = await run(this.binary, this.args(['state', id]), { signal, allowFailure: true });
    if (res.exitCode !== 0) {
      if (/does not exist|not exist/.test(res.stderr)) return undefined;
      throw commandFailed(this.binary, this.args(['state', id]), res.exitCode, res.stderr);
    }
    return JSON.parse(res.stdout) as RuncState;
  }

  async list(signal?: AbortSignal): Promise<RuncState[]> {
    const res = await run(this.binary, this.args(['list', '--format', 'json']), { signal });
    const out = res.stdout.trim();
    if (out === '' || out === 'null') return [];
    return JSON.parse(out) as RuncState[];
  }

  /** Sends a signal to init; a container that is already stopped or gone is not an error. */
  async kill(id: string, sig: string, signal?: AbortSignal): Promise<void> {
    const res = await run(this.binary, this.args(['kill', id, sig]), { signal, allowFailure: true });
    if (res.exitCode !== 0 && !/not running|does not exist|process already finished|container not running/.test(res.stderr)) {
      throw commandFailed(this.binary, this.args(['kill', id, sig]), res.exitCode, res.stderr);
    }
  }

  /** Deletes a stopped (or created) container; a missing one is not an error. */
  async delete(id: string, signal?: AbortSignal): Promise<void> {
    const res = await run(this.binary, this.args(['delete', id]), { signal, allowFailure: true });
    if (res.exitCode !== 0 && !/does not exist/.test(res.stderr)) {
      throw commandFailed(this.binary, this.args(['delete', id]), res.exitCode, res.stderr);
    }
  }

  /** Freezes every process of the container (cgroup freezer). */
  async pause(id: string, signal?: AbortSignal): Promise<void> {
    await run(this.binary, this.args(['pause', id]), { signal });
  }

  async resume(id: string, signal?: AbortSignal): Promise<void> {
    await run(this.binary, this.args(['resume', id]), { signal });
  }

  /** Live resource update from an OCI LinuxResources JSON document. */
  async update(id: string, resourcesJson: string, signal?: AbortSignal): Promise<void> {
    await run(this.binary, this.args(['update', '-r', '-', id]), { input: resourcesJson, signal });
  }

  /** `runc exec` with the given stdio; resolves to the process's exit code. */
  async exec(id: string, argv: string[], opts: RuncExecOptions): Promise<number> {
    const args = ['exec'];
    if (opts.tty) args.push('-t');
    for (const e of opts.env ?? []) args.push('--env', e);
    if (opts.cwd) args.push('--cwd', opts.cwd);
    args.push(id, ...argv);
    const full = this.args(args);
    const pick = (s: 'inherit' | 'ignore' | Readable | Writable | undefined, dflt: 'inherit'): 'inherit' | 'ignore' | 'pipe' =>
      s === undefined ? dflt : typeof s === 'string' ? s : 'pipe';
    const child = spawn(this.binary, full, {
      stdio: [pick(opts.stdin, 'inherit'), pick(opts.stdout, 'inherit'), pick(opts.stderr, 'inherit')],
      signal: opts.signal,
    });
    if (opts.stdin && typeof opts.stdin !== 'string') opts.stdin.pipe(child.stdin!);
    if (opts.stdout && typeof opts.stdout !== 'string') child.stdout!.pipe(opts.stdout, { end: false });
    if (opts.stderr && typeof opts.stderr !== 'string') child.stderr!.pipe(opts.stderr, { end: false });
    return await new Promise<number>((resolve, reject) => {
      child.once('error', (err) =>
        reject(new KvzError('CommandFailed', `${this.binary} ${full.join(' ')} failed: ${err.message}`, { cause: err, details: { command: this.binary, args: full } })),
      );
      child.once('close', (code, sig) => resolve(code ?? (sig ? 128 + signalNumber(sig) : -1)));
    });
  }
}

function signalNumber(sig: NodeJS.Signals): number {
  const table: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGTERM: 15 };
  return table[sig] ?? 0;
}

/** The last error message in a runc JSON log (or the raw text when it is not JSON). */
export function lastRuncError(logText: string): string {
  const lines = logText.trim().split('\n').filter(Boolean);
  for (let i = lines.length - 1; i >= 0; i--) {
    try {
      const entry = JSON.parse(lines[i]!) as { level?: string; msg?: string };
      if (entry.level === 'error' || entry.level === 'fatal') return entry.msg ?? lines[i]!;
    } catch {
      return lines[i]!;
    }
  }
  return lines.at(-1) ?? 'no error output (see runc log)';
}
