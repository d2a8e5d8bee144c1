// `kvz exec NAME -- CMD...` and `kvz enter NAME`: run a command inside a VE that runs on this
// node, through the host runtime (the same one the node agent uses), with the command's exit code.

import { existsSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { DEFAULT_STATE_DIR } from '../core/kube-client.js';
import { KvzError } from '../core/errors.js';
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
  return execIn(name, command, args, io);
}

export async function runEnter(argv: string[], io: CliIO): Promise<number> {
  const args = parseArgs(argv, FLAGS, 'enter');
  const [name, ...extra] = args.positionals;
  if (!name) throw new UsageError('enter needs the name of a virtual environment: kvz enter NAME', 'enter');
  if (extra.length > 0 || args.rest) throw new UsageError('enter takes only a name; use `kvz exec NAME -- COMMAND` to run a command', 'enter');
  return execIn(name, ['/bin/sh', '-l'], args, io);
}

async function execIn(name: string, argv: string[], args: ReturnType<typeof parseArgs>, io: CliIO): Promise<number> {
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
  return runtime.exec(uid, argv, { tty: io.stdinIsTTY });
}

/** The state dir of `kvz up` when the kubeconfig is the one it wrote there. */
function stateDirOf(kubeconfigPath: string): string | undefined {
  const dir = dirname(kubeconfigPath);
  return basename(kubeconfigPath) === 'kubeconfig' && existsSync(join(dir, 'runc')) ? dir : undefined;
}
