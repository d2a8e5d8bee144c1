// `kvz delete ve NAME...`: delete, then wait until the objects are gone (the node agent removes
// its finalizer once the host is clean), telling the user what is being waited for.

import type { VirtualEnvironment } from '../api/types.js';
import { KvzError } from '../core/errors.js';
import { CONNECTION_FLAGS, UsageError, boolFlag, parseArgs, parseDuration, stringFlag, type FlagSpec } from './args.js';
import type { CliIO } from './context.js';
import { parseResource, veNotFound } from './resources.js';

const FLAGS: FlagSpec[] = [
  ...CONNECTION_FLAGS,
  { name: 'namespace', short: 'n', type: 'string' },
  { name: 'wait', type: 'boolean' },
  { name: 'timeout', type: 'string' },
];

const POLL_MS = 250;
const EXPLAIN_AFTER_MS = 5000;

export async function runDelete(argv: string[], io: CliIO): Promise<number> {
  const args = parseArgs(argv, FLAGS, 'delete');
  const { name: slashName } = parseResource(args.positionals[0], 'delete');
  const names = [...(slashName ? [slashName] : []), ...args.positionals.slice(1)];
  if (names.length === 0) throw new UsageError('delete needs the name of a virtual environment, e.g. `kvz delete ve web1`', 'delete');
  const namespace = stringFlag(args, 'namespace') ?? 'default';
  const wait = boolFlag(args, 'wait', true);
  const timeout = stringFlag(args, 'timeout');
  const timeoutMs = timeout ? parseDuration(timeout, '--timeout') : 0;
  const conn = io.connect({ kubeconfig: stringFlag(args, 'kubeconfig'), stateDir: stringFlag(args, 'state-dir') });

  let failed = false;
  const pending: string[] = [];
  for (const name of names) {
    if (await conn.ves.delete(name, namespace)) {
      io.stdout(`virtualenvironment.kubevz.io "${name}" deleted\n`);
      pending.push(name);
    } else {
      io.stderr(`error: ${veNotFound(name, namespace)}\n`);
      failed = true;
    }
  }
  if (!wait) return failed ? 1 : 0;

  const start = io.now().getTime();
  let explained = false;
  for (;;) {
    const left: VirtualEnvironment[] = [];
    for (const name of pending) {
      const ve = await conn.ves.get(name, namespace);
      if (ve) left.push(ve);
    }
    if (left.length === 0) break;
    pending.splice(0, pending.length, ...left.map((v) => v.metadata.name));
    const elapsed = io.now().getTime() - start;
    if (timeoutMs > 0 && elapsed >= timeoutMs) {
      throw new KvzError('Conflict', `timed out after ${timeout} waiting for ${describeBlockers(left, namespace)}`);
    }
    if (!explained && elapsed >= EXPLAIN_AFTER_MS) {
      explained = true;
      io.stderr(`waiting for ${describeBlockers(left, namespace)}\n`);
    }
    await io.sleep(POLL_MS);
  }
  return failed ? 1 : 0;
}

/** What a delete is waiting for: which finalizers, held by the agent of which node. */
export function describeBlockers(ves: VirtualEnvironment[], namespace: string): string {
  const parts = ves.map((ve) => {
    const fins = ve.metadata.finalizers ?? [];
    const node = ve.status?.nodeName;
    const why = fins.length > 0 ? `finalizers ${fins.join(', ')}${node ? `, held until the node agent on "${node}" has cleaned up the host; is it running?` : ''}` : 'no finalizers left';
    return `virtualenvironment "${ve.metadata.name}" (${why})`;
  });
  return `${parts.join(', ')} in namespace "${namespace}" to be deleted`;
}
