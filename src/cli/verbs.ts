// vzctl-style verbs: `kvz create|start|stop|restart|suspend|resume|destroy|status|list`. Each is an edit of the
// declared state (the VE resource) followed, by default, by waiting until the node agent
// reports that the host got there — so the user sees the outcome, or the reason it is not
// there yet, as with vzctl. `-o json|yaml` prints the resulting object instead of prose.
// restart = powerState Running + a new value of the kubevz.io/restart-requested annotation;
// the agent restarts the VE once per value and echoes it in kubevz.io/restarted.
// suspend = powerState Suspended (the agent checkpoints the VE to disk); resume = Running again.

import { stringify } from 'yaml';
import { parseBytes, parseCpuLimit } from '../api/quantity.js';
import { API_VERSION, RESTART_REQUESTED_ANNOTATION, RESTARTED_ANNOTATION, type VESpec, type VirtualEnvironment } from '../api/types.js';
import { findCondition } from '../core/conditions.js';
import { KvzError } from '../core/errors.js';
import { CONNECTION_FLAGS, UsageError, boolFlag, listFlag, parseArgs, parseDuration, stringFlag, type FlagSpec, type ParsedArgs } from './args.js';
import { parseLabels } from './components.js';
import type { CliIO, Connection } from './context.js';
import { describeBlockers } from './delete.js';
import { veNotFound } from './resources.js';
import { renderTable } from './table.js';

const COMMON: FlagSpec[] = [
  ...CONNECTION_FLAGS,
  { name: 'namespace', short: 'n', type: 'string' },
  { name: 'output', short: 'o', type: 'string' },
  { name: 'wait', type: 'boolean' },
  { name: 'timeout', type: 'string' },
];

const CREATE_FLAGS: FlagSpec[] = [
  ...COMMON,
  { name: 'template', short: 't', type: 'string' },
  { name: 'memory', type: 'string' },
  { name: 'swap', type: 'string' },
  { name: 'cpus', type: 'string' },
  { name: 'cpu-units', type: 'string' },
  { name: 'disk', type: 'string' },
  { name: 'processes', type: 'string' },
  { name: 'ip', type: 'string', multiple: true },
  { name: 'hostname', type: 'string' },
  { name: 'node', type: 'string' },
  { name: 'node-selector', type: 'string', multiple: true },
  { name: 'stopped', type: 'boolean' },
];

const LIST_FLAGS: FlagSpec[] = [...CONNECTION_FLAGS, { name: 'namespace', short: 'n', type: 'string' }, { name: 'output', short: 'o', type: 'string' }, { name: 'all-namespaces', short: 'A', type: 'boolean' }];

const DEFAULT_TIMEOUT_MS = 120_000;
const POLL_MS = 250;

type Verb = 'create' | 'start' | 'stop' | 'restart' | 'suspend' | 'resume' | 'destroy' | 'status' | 'list';

interface Common {
  conn: Connection;
  namespace: string;
  output?: 'json' | 'yaml';
  wait: boolean;
  timeoutMs: number;
  timeoutText: string;
}

function common(args: ParsedArgs, io: CliIO, verb: Verb): Common {
  const output = stringFlag(args, 'output');
  if (output !== undefined && output !== 'json' && output !== 'yaml') throw new UsageError(`unknown output format "${output}": use json or yaml`, verb);
  const timeout = stringFlag(args, 'timeout');
  return {
    conn: io.connect({ kubeconfig: stringFlag(args, 'kubeconfig'), stateDir: stringFlag(args, 'state-dir') }),
    namespace: stringFlag(args, 'namespace') ?? 'default',
    output,
    wait: boolFlag(args, 'wait', true),
    timeoutMs: timeout ? parseDuration(timeout, '--timeout') : DEFAULT_TIMEOUT_MS,
    timeoutText: timeout ?? '2m',
  };
}

function oneName(args: ParsedArgs, verb: Verb): string {
  const [name, ...extra] = args.positionals;
  if (!name) throw new UsageError(`${verb} needs the name of a virtual environment, e.g. \`kvz ${verb} web1\``, verb);
  if (extra.length) throw new UsageError(`${verb} takes one name; unexpected "${extra[0]}"`, verb);
  return name;
}

function print(io: CliIO, c: Common, obj: unknown): void {
  if (c.output === 'yaml') io.stdout(stringify(obj));
  else if (c.output === 'json') io.stdout(`${JSON.stringify(obj, null, 4)}\n`);
}

async function mustGet(c: Common, name: string): Promise<VirtualEnvironment> {
  const ve = await c.conn.ves.get(name, c.namespace);
  if (!ve) throw new KvzError('NotFound', veNotFound(name, c.namespace));
  return ve;
}

/** Why a VE is not where it should be yet, from its conditions (for progress and timeouts). */
function why(ve: VirtualEnvironment): string {
  const sched = findCondition(ve.status?.conditions, 'Scheduled');
  if (sched?.status === 'False') return `not scheduled: ${sched.message}`;
  const ready = findCondition(ve.status?.conditions, 'Ready');
  const phase = ve.status?.phase ?? 'Pending';
  if (ready) return `phase ${phase}, Ready=${ready.status} (${ready.reason}${ready.message ? `: ${ready.message}` : ''})`;
  return `phase ${phase}${ve.status?.nodeName ? ` on node ${ve.status.nodeName}` : ', waiting for the controller to place it (is `kvz up` or `kvz controller` running?)'}`;
}

/** Polls until `done(ve)` says true; a Failed VE or the timeout is an error that says why. */
async function waitUntil(io: CliIO, c: Common, name: string, what: string, done: (ve: VirtualEnvironment) => boolean): Promise<VirtualEnvironment> {
  const start = io.now().getTime();
  let lastWhy = '';
  for (;;) {
    const ve = await mustGet(c, name);
    const current = (ve.status?.observedGeneration ?? 0) >= (ve.metadata.generation ?? 1);
    if (current && done(ve)) return ve;
    if (current && ve.status?.phase === 'Failed') throw new KvzError('Invalid', `virtualenvironment "${name}" failed: ${ve.status.message ?? why(ve)}`);
    const reason = why(ve);
    if (reason !== lastWhy && findCondition(ve.status?.conditions, 'Scheduled')?.status === 'False') io.stderr(`waiting: ${reason}\n`);
    lastWhy = reason;
    if (io.now().getTime() - start >= c.timeoutMs) {
      throw new KvzError('Conflict', `timed out after ${c.timeoutText} waiting for virtualenvironment "${name}" to be ${what}: ${reason}; rerun with a longer --timeout, or check \`kubectl describe ve ${name} -n ${c.namespace}\``);
    }
    await io.sleep(POLL_MS);
  }
}

const isReady = (ve: VirtualEnvironment) => findCondition(ve.status?.conditions, 'Ready')?.status === 'True' && ve.status?.phase === 'Running';
const isStopped = (ve: VirtualEnvironment) => ve.status?.phase === 'Stopped';

function summary(ve: VirtualEnvironment): string {
  const ip = ve.status?.addresses?.[0];
  return `${(ve.status?.phase ?? 'Pending').toLowerCase()}${ve.status?.nodeName ? ` on node ${ve.status.nodeName}` : ''}${ip ? ` at ${ip}` : ''}${ve.status?.initPid ? ` (init PID ${ve.status.initPid})` : ''}`;
}

function quantity(args: ParsedArgs, flag: string): string | undefined {
  const v = stringFlag(args, flag);
  if (v === undefined) return undefined;
  try {
    parseBytes(v, `--${flag}`);
  } catch (err) {
    throw new UsageError((err as Error).message, 'create');
  }
  return v;
}

function integer(args: ParsedArgs, flag: string, min: number): number | undefined {
  const v = stringFlag(args, flag);
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v) || Number(v) < min) throw new UsageError(`--${flag} ${v}: expected a whole number of at least ${min}`, 'create');
  return Number(v);
}

/** The VE a `kvz create` command line declares. */
export function veFromCreateArgs(args: ParsedArgs, namespace: string): VirtualEnvironment {
  const name = oneName(args, 'create');
  const template = stringFlag(args, 'template');
  if (!template) throw new UsageError('create needs --template NAME (the built-in one is "busybox"), e.g. `kvz create web1 --template busybox`', 'create');
  const spec: VESpec = { template, powerState: boolFlag(args, 'stopped') ? 'Stopped' : 'Running' };
  const hostname = stringFlag(args, 'hostname');
  if (hostname) spec.hostname = hostname;
  const node = stringFlag(args, 'node');
  if (node) spec.nodeName = node;
  try {
    const selector = parseLabels(listFlag(args, 'node-selector'), '--node-selector');
    if (Object.keys(selector).length) spec.nodeSelector = selector;
  } catch (err) {
    throw new UsageError((err as Error).message, 'create');
  }
  const resources: NonNullable<VESpec['resources']> = {};
  const memory = quantity(args, 'memory');
  const swap = quantity(args, 'swap');
  if (swap && !memory) throw new UsageError('--swap needs --memory as well (swap is allowed on top of the memory limit)', 'create');
  if (memory) resources.memory = { limit: memory, ...(swap ? { swap } : {}) };
  const cpus = stringFlag(args, 'cpus');
  const units = integer(args, 'cpu-units', 8);
  if (cpus !== undefined || units !== undefined) {
    resources.cpu = {};
    if (units !== undefined) resources.cpu.units = units;
    if (cpus !== undefined) {
      let cores: number;
      try {
        cores = parseCpuLimit(cpus, '--cpus');
      } catch (err) {
        throw new UsageError((err as Error).message, 'create');
      }
      // Whole CPUs as OpenVZ --cpus; a fraction becomes a CPU cap ("1.5" → 150%).
      if (Number.isInteger(cores)) resources.cpu.cpus = cores;
      else resources.cpu.limit = `${Math.round(cores * 100)}%`;
    }
  }
  const disk = quantity(args, 'disk');
  if (disk) resources.disk = { space: disk };
  const processes = integer(args, 'processes', 1);
  if (processes !== undefined) resources.processes = processes;
  if (Object.keys(resources).length) spec.resources = resources;
  const ips = listFlag(args, 'ip');
  for (const ip of ips) {
    if (!/^\d{1,3}(\.\d{1,3}){3}\/\d{1,2}$/.test(ip)) throw new UsageError(`--ip ${ip}: expected an IPv4 address with prefix length, e.g. 10.213.0.10/24`, 'create');
  }
  if (ips.length) spec.network = { addresses: ips };
  return { apiVersion: API_VERSION, kind: 'VirtualEnvironment', metadata: { name, namespace }, spec };
}

export async function runCreate(argv: string[], io: CliIO): Promise<number> {
  const args = parseArgs(argv, CREATE_FLAGS, 'create');
  const namespace = stringFlag(args, 'namespace') ?? 'default';
  const ve = veFromCreateArgs(args, namespace);
  const c = common(args, io, 'create');
  let created: VirtualEnvironment;
  try {
    created = await c.conn.ves.create(ve);
  } catch (err) {
    if ((err as KvzError).code === 'AlreadyExists') throw new KvzError('AlreadyExists', `virtualenvironment "${ve.metadata.name}" already exists in namespace "${namespace}"; use \`kvz start ${ve.metadata.name}\`, or \`kvz destroy ${ve.metadata.name}\` first`);
    throw err;
  }
  if (!c.output) io.stdout(`virtualenvironment "${created.metadata.name}" created\n`);
  const final = c.wait ? await waitUntil(io, c, created.metadata.name, ve.spec.powerState === 'Stopped' ? 'Stopped' : 'Ready', ve.spec.powerState === 'Stopped' ? isStopped : isReady) : created;
  if (c.output) print(io, c, final);
  else if (c.wait) io.stdout(`virtualenvironment "${final.metadata.name}" is ${summary(final)}\n`);
  return 0;
}

const isSuspended = (ve: VirtualEnvironment) => ve.status?.phase === 'Suspended';

const DESIRED: Record<'start' | 'stop' | 'suspend' | 'resume', 'Running' | 'Stopped' | 'Suspended'> = { start: 'Running', stop: 'Stopped', suspend: 'Suspended', resume: 'Running' };
const PROGRESS: Record<'start' | 'stop' | 'restart' | 'suspend' | 'resume', string> = { start: 'starting', stop: 'stopping', restart: 'restarting', suspend: 'suspending', resume: 'resuming' };

async function powerVerb(argv: string[], io: CliIO, verb: 'start' | 'stop' | 'restart' | 'suspend' | 'resume'): Promise<number> {
  const args = parseArgs(argv, COMMON, verb);
  const name = oneName(args, verb);
  const c = common(args, io, verb);
  await mustGet(c, name);
  let token = '';
  if (verb === 'restart') {
    token = io.now().toISOString();
    await c.conn.ves.mergePatch(name, c.namespace, { metadata: { annotations: { [RESTART_REQUESTED_ANNOTATION]: token } }, spec: { powerState: 'Running' } });
  } else {
    await c.conn.ves.mergePatch(name, c.namespace, { spec: { powerState: DESIRED[verb] } });
  }
  if (!c.output) io.stdout(`virtualenvironment "${name}" ${PROGRESS[verb]}\n`);
  let final: VirtualEnvironment;
  if (!c.wait) final = await mustGet(c, name);
  else if (verb === 'stop') final = await waitUntil(io, c, name, 'Stopped', isStopped);
  else if (verb === 'suspend') final = await waitUntil(io, c, name, 'Suspended', isSuspended);
  else if (verb === 'start' || verb === 'resume') final = await waitUntil(io, c, name, 'Ready', isReady);
  else final = await waitUntil(io, c, name, 'restarted', (ve) => ve.metadata.annotations?.[RESTARTED_ANNOTATION] === token && isReady(ve));
  if (c.output) print(io, c, final);
  else if (c.wait) io.stdout(`virtualenvironment "${name}" is ${summary(final)}\n`);
  return 0;
}

export const runStart = (argv: string[], io: CliIO) => powerVerb(argv, io, 'start');
export const runStop = (argv: string[], io: CliIO) => powerVerb(argv, io, 'stop');
export const runRestart = (argv: string[], io: CliIO) => powerVerb(argv, io, 'restart');
export const runSuspend = (argv: string[], io: CliIO) => powerVerb(argv, io, 'suspend');
export const runResume = (argv: string[], io: CliIO) => powerVerb(argv, io, 'resume');

export async function runDestroy(argv: string[], io: CliIO): Promise<number> {
  const args = parseArgs(argv, COMMON, 'destroy');
  const name = oneName(args, 'destroy');
  const c = common(args, io, 'destroy');
  const before = await mustGet(c, name);
  await c.conn.ves.delete(name, c.namespace);
  if (!c.output) io.stdout(`virtualenvironment "${name}" destroying\n`);
  if (c.wait) {
    const start = io.now().getTime();
    for (;;) {
      const ve = await c.conn.ves.get(name, c.namespace);
      if (!ve || ve.metadata.uid !== before.metadata.uid) break;
      if (io.now().getTime() - start >= c.timeoutMs) throw new KvzError('Conflict', `timed out after ${c.timeoutText} waiting for ${describeBlockers([ve], c.namespace)}`);
      await io.sleep(POLL_MS);
    }
    if (!c.output) io.stdout(`virtualenvironment "${name}" destroyed\n`);
  }
  if (c.output) print(io, c, before);
  return 0;
}

/** `kvz status NAME`: where the VE is and how it is, vzctl-status style plus conditions. */
export async function runStatus(argv: string[], io: CliIO): Promise<number> {
  const args = parseArgs(argv, LIST_FLAGS.filter((f) => f.name !== 'all-namespaces'), 'status');
  const name = oneName(args, 'status');
  const c = common(args, io, 'status');
  const ve = await mustGet(c, name);
  if (c.output) {
    print(io, c, ve);
    return 0;
  }
  const s = ve.status ?? {};
  const rows: [string, string][] = [
    ['Name', ve.metadata.name],
    ['Namespace', ve.metadata.namespace],
    ['Status', ve.metadata.deletionTimestamp ? 'terminating' : (s.phase ?? 'Pending').toLowerCase()],
    ['Declared', ve.spec.powerState ?? 'Running'],
    ['Node', s.nodeName ?? '<none>'],
    ['IP', (s.addresses ?? []).join(', ') || '<none>'],
    ['Hostname', ve.spec.hostname ?? ve.metadata.name],
    ['Template', ve.spec.template],
    ['Init PID', s.initPid !== undefined ? String(s.initPid) : '-'],
    ['Generation', `${ve.metadata.generation ?? 1} (observed ${s.observedGeneration ?? '-'})`],
  ];
  if (s.message) rows.push(['Message', s.message]);
  const width = Math.max(...rows.map(([k]) => k.length)) + 2;
  io.stdout(rows.map(([k, v]) => `${`${k}:`.padEnd(width)}${v}\n`).join(''));
  const conds = s.conditions ?? [];
  if (conds.length) {
    io.stdout('Conditions:\n');
    io.stdout(renderTable(['  TYPE', 'STATUS', 'REASON', 'MESSAGE'], conds.map((x) => [`  ${x.type}`, x.status, x.reason, x.message])));
  }
  return 0;
}

/** `kvz list`: a vzlist-like table of every VE (running or not). */
export async function runList(argv: string[], io: CliIO): Promise<number> {
  const args = parseArgs(argv, LIST_FLAGS, 'list');
  if (args.positionals.length) throw new UsageError(`list takes no arguments; unexpected "${args.positionals[0]}"`, 'list');
  const c = common(args, io, 'list');
  const all = boolFlag(args, 'all-namespaces');
  const ves = await c.conn.ves.list(all ? {} : { namespace: c.namespace });
  ves.sort((a, b) => `${a.metadata.namespace}/${a.metadata.name}`.localeCompare(`${b.metadata.namespace}/${b.metadata.name}`));
  if (c.output) {
    print(io, c, { apiVersion: 'v1', kind: 'List', items: ves, metadata: { resourceVersion: '' } });
    return 0;
  }
  const header = ['NAME', 'NPROC', 'STATUS', 'IP_ADDR', 'HOSTNAME', 'NODE'];
  if (all) header.unshift('NAMESPACE');
  const rows = ves.map((ve) => {
    const nproc = ve.status?.beancounters?.find((b) => b.resource === 'numproc' || b.resource === 'processes')?.held;
    const row = [
      ve.metadata.name,
      nproc !== undefined && ve.status?.phase === 'Running' ? String(nproc) : '-',
      ve.metadata.deletionTimestamp ? 'terminating' : (ve.status?.phase ?? 'pending').toLowerCase(),
      ve.status?.addresses?.join(',') || '-',
      ve.spec.hostname ?? ve.metadata.name,
      ve.status?.nodeName ?? '-',
    ];
    if (all) row.unshift(ve.metadata.namespace);
    return row;
  });
  if (rows.length === 0) {
    io.stderr(all ? 'No resources found\n' : `No resources found in ${c.namespace} namespace.\n`);
    return 0;
  }
  io.stdout(renderTable(header, rows));
  return 0;
}
