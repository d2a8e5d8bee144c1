// Runs host commands for the runtime. Every failure becomes a KvzError 'CommandFailed' that
// carries the command, its arguments, exit code and stderr, so a log line says what to fix.

import { execa } from 'execa';
import { KvzError } from '../core/errors.js';

export interface RunOptions {
  input?: string;
  env?: Record<string, string>;
  signal?: AbortSignal;
  /** Exit codes that are not failures (the result is returned either way). */
  okCodes?: number[];
  /** Return the result whatever the exit code; the caller judges it. */
  allowFailure?: boolean;
  /** Give up after this long (the process gets SIGKILL). */
  timeoutMs?: number;
}

export interface RunResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

export async function run(cmd: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  opts.signal?.throwIfAborted();
  const res = await execa(cmd, args, {
    input: opts.input,
    stdin: opts.input === undefined ? 'ignore' : undefined,
    env: opts.env,
    extendEnv: true,
    cancelSignal: opts.signal,
    timeout: opts.timeoutMs,
    forceKillAfterDelay: 1000,
    reject: false,
    stripFinalNewline: true,
  });
  const exitCode = res.exitCode ?? -1;
  if (res.isCanceled) {
    throw new KvzError('Unavailable', `${cmd} was cancelled`, { cause: opts.signal?.reason, details: { command: cmd, args } });
  }
  if (exitCode === 0 || opts.allowFailure || opts.okCodes?.includes(exitCode)) {
    return { stdout: String(res.stdout ?? ''), stderr: String(res.stderr ?? ''), exitCode };
  }
  throw commandFailed(cmd, args, exitCode, String(res.stderr ?? '') || String(res.stdout ?? '') || (res.message ?? ''));
}

export function commandFailed(cmd: string, args: string[], exitCode: number, stderr: string, cause?: unknown): KvzError {
  const shown = `${cmd} ${args.join(' ')}`;
  return new KvzError('CommandFailed', `${shown} failed (exit ${exitCode}): ${stderr.trim()}`, {
    cause,
    details: { command: cmd, args, exitCode, stderr: stderr.trim() },
  });
}
