// Running build steps of a template: a streaming subprocess runner that keeps the output's tail
// (for "why did the build fail"), and the isolation every step runs in — a private mount and
// pid namespace (`unshare --mount --pid --kill-child`), so mounts a step makes inside the tree
// (debootstrap's /proc, a script's /dev) and daemons a package starts vanish when the step
// ends, even when it is killed. Nothing is ever left mounted under a build directory.

import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { KvzError } from '../core/errors.js';

export interface StreamOptions {
  signal?: AbortSignal;
  env?: Record<string, string>;
  /** Called for every output line (stdout and stderr interleaved). */
  onLine?: (line: string) => void;
  /** How many trailing lines to keep for the error message. */
  tailLines?: number;
}

export interface StreamResult {
  exitCode: number;
  tail: string[];
}

/** Runs a command, streaming its output lines; never rejects on a non-zero exit (the caller judges). */
export function runStreaming(cmd: string, args: string[], opts: StreamOptions = {}): Promise<StreamResult> {
  opts.signal?.throwIfAborted();
  const keep = opts.tailLines ?? 25;
  const tail: string[] = [];
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...opts.env },
      signal: opts.signal,
      killSignal: 'SIGTERM',
    });
    const onLine = (line: string) => {
      tail.push(line);
      if (tail.length > keep) tail.shift();
      opts.onLine?.(line);
    };
    createInterface({ input: child.stdout }).on('line', onLine);
    createInterface({ input: child.stderr }).on('line', onLine);
    child.once('error', (err) => {
      if ((err as NodeJS.ErrnoException).code === 'ABORT_ERR') {
        reject(new KvzError('Unavailable', `${cmd} was cancelled`, { cause: opts.signal?.reason }));
      } else {
        reject(new KvzError('HostSetup', `cannot run ${cmd}: ${err.message}`, { cause: err }));
      }
    });
    child.once('close', (code, sig) => resolve({ exitCode: code ?? (sig ? 128 : -1), tail }));
  });
}

/** argv prefix that runs a command in a throw-away mount + pid namespace (killed with its parent). */
export function isolated(argv: string[]): { cmd: string; args: string[] } {
  return { cmd: 'unshare', args: ['--mount', '--propagation', 'private', '--pid', '--fork', '--kill-child', '--', ...argv] };
}

/**
 * The shell run (inside the isolated namespaces) to execute a script chrooted in `root`: /proc
 * and the host's /dev are mounted in the tree first (only in this namespace), and package
 * scripts are told not to start services (policy-rc.d 101) for the duration.
 */
const CHROOT_WRAPPER = `set -e
root="$1"
mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev"
made_policy=
if [ -d "$root/usr/sbin" ] && [ ! -e "$root/usr/sbin/policy-rc.d" ]; then
  printf '#!/bin/sh\\nexit 101\\n' > "$root/usr/sbin/policy-rc.d"; chmod 755 "$root/usr/sbin/policy-rc.d"; made_policy=1
fi
set +e
chroot "$root" /bin/sh -ec "$KVZ_SCRIPT"
rc=$?
[ -n "$made_policy" ] && rm -f "$root/usr/sbin/policy-rc.d"
exit $rc
`;

export async function runInTree(root: string, script: string, what: string, opts: { signal?: AbortSignal; onLine?: (l: string) => void } = {}): Promise<void> {
  const { cmd, args } = isolated(['sh', '-c', CHROOT_WRAPPER, 'kvz-chroot', root]);
  const res = await runStreaming(cmd, args, {
    signal: opts.signal,
    onLine: opts.onLine,
    env: { KVZ_SCRIPT: script, DEBIAN_FRONTEND: 'noninteractive', LC_ALL: 'C', PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' },
  });
  if (res.exitCode !== 0) {
    throw new KvzError('CommandFailed', `${what} failed (exit ${res.exitCode}); last output:\n${res.tail.join('\n')}`, {
      details: { exitCode: res.exitCode, tail: res.tail },
    });
  }
}
