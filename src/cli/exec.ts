// `kvz exec NAME -- CMD...` and `kvz enter NAME`: run a command inside a VE that runs on this
// node, through the host runtime (the same one the node agent uses), with the command's exit code.
// `enter` is login-like: root's shell and home from the VE's own /etc/passwd, the caller's TERM.

import { existsSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { Writable } from 'node:stream';
import { DEFAULT_STATE_DIR } from '../core/kube-client.js';
import { KvzError } from '../core/errors.js';
import type { ExecOptions, VERuntime } from '../runtime/index.js';
import { CONNECTION_FLAGS, UsageError, parseArgs, stringFlag, type FlagSpec } from './args.js';
import type { CliIO } from './context.js';
import { veNotFound } from './resources.js';

const FLAGS: FlagSpec[] = [
  ...CONNECTION_FLAGS,
  { name: 'namespace', short: 'n', type: 'string' },
  { name: 'node-name', type: 'string' },
  // Accepted for kubectl habits (`exec -it`); a terminal is used whenever stdin is one.
  { name: 'stdin', short: 'i', type: 'boolean' },
  { name: 'tty', short: 't', type: 'boolean' },
];

export async function runExec(argv: string[], io: CliIO): Promise<number> {
  const args = parseArgs(argv, FLAGS, 'exec');
  const [name, ...inline] = args.positionals;
  if (!name) throw new UsageError('exec needs the name of a virtual environment: kvz exec NAME -- COMMAND [ARGS...]', 'exec');
  const command = args.rest ?? inline;
  if (args.rest && inline.length > 0) throw new UsageError(`unexpected arguments before --: ${inline.join(' ')}`, 'exec');
  if (command.length === 0) throw new UsageError('exec needs a command after --: kvz exec NAME -- COMMAND [ARGS...]', 'exec');
  return execIn(name, args, io, async () => ({ argv: command }));
}

export async function runEnter(argv: string[], io: CliIO): Promise<number> {
  const args = parseArgs(argv, FLAGS, 'enter');
  const [name, ...extra] = args.positionals;
  if (!name) throw new UsageError('enter needs the name of a virtual environment: kvz enter NAME', 'enter');
  if (extra.length > 0 || args.rest) throw new UsageError('enter takes only a name; use `kvz exec NAME -- COMMAND` to run a command', 'enter');
  return execIn(name, args, io, (runtime, uid) => loginShell(runtime, uid, io.env.TERM));
}

/** What runs in the VE: the command, and for `enter` the login environment. */
type Command = { argv: string[] } & Pick<ExecOptions, 'env' | 'cwd'>;

export const FALLBACK_SHELL = '/bin/sh';
export const FALLBACK_HOME = '/root';

/**
 * Root's shell and home from a passwd(5) text: the entry named root (else the first with uid 0).
 * A missing, relative or no-login shell gives /bin/sh (enter is for administering the VE, and
 * nologin would just end it); a missing or relative home gives /root.
 */
export function rootLogin(passwd: string): { shell: string; home: string } {
  const entries = passwd.split('\n').map((l) => l.split(':')).filter((f) => f.length >= 7);
  const root = entries.find((f) => f[0] === 'root') ?? entries.find((f) => f[2] === '0');
  // No control characters: these go into the environment and argv of the shell.
  const usable = (p: string | undefined) => (p && p.startsWith('/') && !/[\x00-\x1f\x7f]/.test(p) ? p : undefined);
  const shell = usable(root?.[6]?.trim());
  const home = usable(root?.[5]?.trim());
  return { shell: shell && !/\/(nologin|false)$/.test(shell) ? shell : FALLBACK_SHELL, home: home ?? FALLBACK_HOME };
}

/** The most of the VE's /etc/passwd read (a VE root could make it huge; root's entry comes early). */
const PASSWD_MAX = 1 << 20;

/**
 * A login-like shell for the VE's root, as login(1) would start it: the shell with -l, HOME, SHELL,
 * USER, LOGNAME and the caller's TERM (xterm when unset), in the home directory when it exists.
 * /etc/passwd is read by a process inside the VE (not through /proc/PID/root from the host, where
 * a symlink planted by the VE's root would resolve against the host's root).
 */
async function loginShell(runtime: VERuntime, uid: string, term: string | undefined): Promise<Command> {
  const chunks: Buffer[] = [];
  let size = 0;
  const collect = new Writable({
    write(chunk: Buffer, _enc, done) {
      if (size < PASSWD_MAX) chunks.push(chunk.subarray(0, PASSWD_MAX - size));
      size += chunk.length;
      done();
    },
  });
  const sink = new Writable({ write: (_c, _e, done) => done() });
  const quiet = { tty: false, stdin: 'ignore', stdout: sink, stderr: sink } as const;
  const read = await runtime.exec(uid, ['cat', '/etc/passwd'], { ...quiet, stdout: collect }).catch(() => -1);
  const { shell, home } = rootLogin(read === 0 ? Buffer.concat(chunks).toString('utf8') : '');
  // runc refuses to start the process in a missing directory: only then does the shell start in /.
  const homeExists = (await runtime.exec(uid, ['test', '-d', home], quiet).catch(() => -1)) === 0;
  return {
    argv: [shell, '-l'],
    env: [`TERM=${term || 'xterm'}`, `HOME=${home}`, `SHELL=${shell}`, 'USER=root', 'LOGNAME=root'],
    ...(homeExists ? { cwd: home } : {}),
  };
}

async function execIn(name: string, args: ReturnType<typeof parseArgs>, io: CliIO, command: (runtime: VERuntime, uid: string) => Promise<Command>): Promise<number> {
  const namespace = stringFlag(args, 'namespace') ?? 'default';
  const conn = io.connect({ kubeconfig: stringFlag(args, 'kubeconfig'), stateDir: stringFlag(args, 'state-dir') });
  const ve = await conn.ves.get(name, namespace);
  if (!ve) throw new KvzError('NotFound', veNotFound(name, namespace));
  const what = `virtualenvironment "${name}" in namespace "${namespace}"`;
  if (ve.metadata.deletionTimestamp) throw new KvzError('Conflict', `${what} is being deleted`);
  const phase = ve.status?.phase;
  if (phase !== 'Running') {
    const hint = ve.spec.powerState === 'Stopped' ? '; set spec.powerState: Running to start it' : ve.status?.message ? ` (${ve.status.message})` : '';
    throw new KvzError('Conflict', `${what} is not running (phase ${phase ?? 'unknown'})${hint}`);
  }
  const uid = ve.metadata.uid;
  if (!uid) throw new KvzError('Internal', `${what} has no metadata.uid`);
  // The host is the truth: the VE is exec-able here if this node's runtime runs it. The state
  // dir defaults to the one whose kubeconfig we used (kvz up writes it there).
  const stateDir = stringFlag(args, 'state-dir') ?? stateDirOf(conn.kubeconfigPath) ?? DEFAULT_STATE_DIR;
  const runtime = await io.runtime({ stateDir, log: io.log });
  const host = await runtime.inspect(uid);
  if (host.state !== 'running') {
    const node = stringFlag(args, 'node-name') ?? io.hostname();
    throw new KvzError(
      'Conflict',
      `${what} runs on node "${ve.status?.nodeName ?? 'unknown'}", not under this host's state dir ${stateDir} (node "${node}"); run kvz exec on that node, or pass --state-dir of the agent that runs it`,
    );
  }
  const { argv, env, cwd } = await command(runtime, uid);
  return runtime.exec(uid, argv, { tty: io.stdinIsTTY, ...(env ? { env } : {}), ...(cwd ? { cwd } : {}) });
}

/** The state dir of `kvz up` when the kubeconfig is the one it wrote there. */
function stateDirOf(kubeconfigPath: string): string | undefined {
  const dir = dirname(kubeconfigPath);
  return basename(kubeconfigPath) === 'kubeconfig' && existsSync(join(dir, 'runc')) ? dir : undefined;
}
