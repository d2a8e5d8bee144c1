// `kvz migrate NAME --to NODE`: declares a VEMigration and follows it (a watch, with a slow poll
// as a safety net), printing each phase as the status records it, then the outcome: downtime,
// method and bytes on success (exit 0); reason, message and CRIU's log tail on failure (exit 1).
// Phase times come from status.transitions (the server's clock), so what is printed does not
// depend on when this process happened to look.

import { randomBytes } from 'node:crypto';
import { stringify } from 'yaml';
import { isTerminal } from '../api/migration-phases.js';
import { API_VERSION, type VEMigration, type VEMigrationSpec } from '../api/types.js';
import { KvzError } from '../core/errors.js';
import type { InformerHandle, ResourceClient } from '../core/resource-client.js';
import { CONNECTION_FLAGS, UsageError, boolFlag, parseArgs, stringFlag, type FlagSpec } from './args.js';
import type { CliIO } from './context.js';
import { veNotFound } from './resources.js';

const FLAGS: FlagSpec[] = [
  ...CONNECTION_FLAGS,
  { name: 'namespace', short: 'n', type: 'string' },
  { name: 'output', short: 'o', type: 'string' },
  { name: 'to', type: 'string' },
  { name: 'offline', type: 'boolean' },
  { name: 'dry-run', type: 'boolean' },
  { name: 'max-downtime', type: 'string' },
  { name: 'allow-downtime-overrun', type: 'boolean' },
  { name: 'timeout', type: 'string' },
  { name: 'no-wait', type: 'boolean' },
];

const POLL_MS = 1000;
/** Extra time past spec.timeoutSeconds before the CLI stops following (the controller fails it first). */
const FOLLOW_GRACE_MS = 30_000;
const STAGE_ORDER = ['preflight', 'prepareTarget', 'diskPrecopy', 'checkpoint', 'transfer', 'restore', 'total'];

function positiveInt(v: string | undefined, flag: string): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v) || Number(v) < 1) throw new UsageError(`${flag} ${v}: expected a whole number of at least 1`, 'migrate');
  return Number(v);
}

export function bytesText(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(1)} ${units[i]}`;
}

function timingsText(t: Record<string, number> | undefined): string {
  const keys = Object.keys(t ?? {}).sort((a, b) => (STAGE_ORDER.indexOf(a) + 1 || 99) - (STAGE_ORDER.indexOf(b) + 1 || 99) || a.localeCompare(b));
  return keys.map((k) => `${k} ${t![k]} ms`).join(', ');
}

function tail(text: string, lines: number): string {
  return text.trimEnd().split('\n').slice(-lines).map((l) => `    ${l}`).join('\n');
}

export async function runMigrate(argv: string[], io: CliIO): Promise<number> {
  const args = parseArgs(argv, FLAGS, 'migrate');
  const [ve, ...extra] = args.positionals;
  if (!ve) throw new UsageError('migrate needs the name of a virtual environment, e.g. `kvz migrate web1 --to node-b`', 'migrate');
  if (extra.length) throw new UsageError(`migrate takes one name; unexpected "${extra[0]}"`, 'migrate');
  const output = stringFlag(args, 'output');
  if (output !== undefined && output !== 'json' && output !== 'yaml') throw new UsageError(`unknown output format "${output}": use json or yaml`, 'migrate');
  const namespace = stringFlag(args, 'namespace') ?? 'default';
  const to = stringFlag(args, 'to');
  const spec: VEMigrationSpec = { ve, mode: boolFlag(args, 'offline') ? 'offline' : 'live' };
  if (to) spec.targetNode = to;
  if (boolFlag(args, 'dry-run')) spec.dryRun = true;
  const maxDowntime = positiveInt(stringFlag(args, 'max-downtime'), '--max-downtime');
  if (maxDowntime !== undefined) spec.maxDowntimeMs = maxDowntime;
  if (boolFlag(args, 'allow-downtime-overrun')) spec.allowDowntimeOverrun = true;
  const timeout = positiveInt(stringFlag(args, 'timeout'), '--timeout');
  if (timeout !== undefined) spec.timeoutSeconds = timeout;
  const wait = !boolFlag(args, 'no-wait');

  const conn = io.connect({ kubeconfig: stringFlag(args, 'kubeconfig'), stateDir: stringFlag(args, 'state-dir') });
  const migrations = conn.migrations;
  if (!migrations) throw new KvzError('Unavailable', 'this connection has no client for VEMigrations');
  if (!(await conn.ves.get(ve, namespace))) throw new KvzError('NotFound', veNotFound(ve, namespace));
  const name = `${ve}-${to ? `to-${to}-` : ''}${randomBytes(3).toString('hex')}`.slice(0, 253);
  const created = await migrations.create({ apiVersion: API_VERSION, kind: 'VEMigration', metadata: { name, namespace }, spec });
  const print = (obj: unknown) => io.stdout(output === 'yaml' ? stringify(obj) : `${JSON.stringify(obj, null, 4)}\n`);
  if (!output) io.stdout(`vemigration "${name}" created: ${spec.dryRun ? 'dry run of ' : ''}${spec.mode} migration of virtualenvironment "${ve}"${to ? ` to node ${to}` : ''}\n`);
  if (!wait) {
    if (output) print(created);
    return 0;
  }
  const final = await follow(io, migrations, namespace, name, ((spec.timeoutSeconds ?? 600) * 1000) + FOLLOW_GRACE_MS, !output);
  if (output) print(final);
  const s = final.status ?? {};
  if (s.phase === 'Succeeded') {
    if (!output) {
      if (s.reason === 'DryRun') io.stdout(`dry run passed: ${s.message ?? ''}\n`);
      else {
        const parts = [s.downtimeMs !== undefined ? `downtime ${s.downtimeMs} ms` : '', s.method ? `method ${s.method}` : '', s.bytesTransferred !== undefined ? `${bytesText(s.bytesTransferred)} transferred` : ''].filter(Boolean);
        io.stdout(`virtualenvironment "${ve}" migrated from ${s.sourceNode ?? '?'} to ${s.targetNode ?? '?'}${parts.length ? `: ${parts.join(', ')}` : ''}\n`);
      }
      if (s.timings && Object.keys(s.timings).length) io.stdout(`stage timings: ${timingsText(s.timings)}\n`);
    }
    return 0;
  }
  io.stderr(`error: vemigration "${name}" failed${s.reason ? ` (${s.reason})` : ''}: ${s.message ?? 'no message'}\n`);
  if (s.timings && Object.keys(s.timings).length) io.stderr(`stage timings: ${timingsText(s.timings)}\n`);
  if (s.criuLog) io.stderr(`CRIU log (tail):\n${tail(s.criuLog, 20)}\n`);
  if (s.sourceNode) io.stderr(`virtualenvironment "${ve}" stays on node ${s.sourceNode}\n`);
  return 1;
}

/** Follows a migration until a terminal phase, printing each recorded transition once. */
async function follow(io: CliIO, migrations: ResourceClient<VEMigration>, namespace: string, name: string, limitMs: number, show: boolean): Promise<VEMigration> {
  let wake: () => void = () => {};
  let handle: InformerHandle<VEMigration> | undefined;
  try {
    handle = await migrations.inform({ namespace }, (_type, m) => {
      if (m.metadata.name === name) wake();
    });
  } catch {
    /* no watch: the poll below still follows it */
  }
  const began = io.now().getTime();
  let shown = 0;
  try {
    for (;;) {
      const signal = new Promise<void>((r) => (wake = r));
      const m = await migrations.get(name, namespace);
      if (!m) throw new KvzError('NotFound', `vemigration "${name}" was deleted while being followed (deleting a migration aborts it)`);
      const transitions = m.status?.transitions ?? [];
      const origin = Date.parse(m.status?.startTime ?? m.metadata.creationTimestamp ?? '') || Date.parse(transitions[0]?.time ?? '');
      for (; shown < transitions.length; shown++) {
        const t = transitions[shown]!;
        const at = (Date.parse(t.time) - origin) / 1000;
        if (show) io.stdout(`[${Number.isNaN(at) ? '   ?' : `${at.toFixed(1)}s`.padStart(6)}] ${t.phase.padEnd(15)} ${t.message ?? ''}`.trimEnd() + '\n');
      }
      if (isTerminal(m.status?.phase)) return m;
      if (io.now().getTime() - began >= limitMs) {
        throw new KvzError('Conflict', `vemigration "${name}" is still ${m.status?.phase ?? 'new'} after ${Math.round(limitMs / 1000)}s (is the controller running?); it goes on without us: \`kubectl get vem ${name} -n ${namespace} -w\``);
      }
      await Promise.race([signal, io.sleep(POLL_MS)]);
    }
  } finally {
    await handle?.stop();
  }
}
