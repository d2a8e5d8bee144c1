// `kvz set NAME --memory 1Gi --cpu-limit 50% ...`: edits spec.resources with a merge patch (the
// node agent applies it live, or lists it in status.pendingResources when it needs a restart)
// and with --wait waits until status.conditions[ResourcesApplied] speaks for this generation.

import { parseBytes, parseCpuLimit } from '../api/quantity.js';
import type { VirtualEnvironment } from '../api/types.js';
import { KvzError } from '../core/errors.js';
import { CONNECTION_FLAGS, UsageError, boolFlag, parseArgs, parseDuration, stringFlag, type FlagSpec } from './args.js';
import type { CliIO } from './context.js';
import { veNotFound } from './resources.js';

/** flag → path under spec.resources, and how its value is checked. */
const FIELDS: { flag: string; path: string[]; kind: 'bytes' | 'int' | 'cpu' | 'cpuset' }[] = [
  { flag: 'memory', path: ['memory', 'limit'], kind: 'bytes' },
  { flag: 'swap', path: ['memory', 'swap'], kind: 'bytes' },
  { flag: 'guarantee', path: ['memory', 'guarantee'], kind: 'bytes' },
  { flag: 'cpu-units', path: ['cpu', 'units'], kind: 'int' },
  { flag: 'cpu-limit', path: ['cpu', 'limit'], kind: 'cpu' },
  { flag: 'cpus', path: ['cpu', 'cpus'], kind: 'int' },
  { flag: 'cpuset', path: ['cpu', 'cpuset'], kind: 'cpuset' },
  { flag: 'processes', path: ['processes'], kind: 'int' },
  { flag: 'open-files', path: ['openFiles'], kind: 'int' },
  { flag: 'io-weight', path: ['disk', 'ioWeight'], kind: 'int' },
  { flag: 'read-bps', path: ['disk', 'readBps'], kind: 'bytes' },
  { flag: 'write-bps', path: ['disk', 'writeBps'], kind: 'bytes' },
  { flag: 'read-iops', path: ['disk', 'readIops'], kind: 'int' },
  { flag: 'write-iops', path: ['disk', 'writeIops'], kind: 'int' },
];

const FLAGS: FlagSpec[] = [
  ...CONNECTION_FLAGS,
  { name: 'namespace', short: 'n', type: 'string' },
  { name: 'wait', type: 'boolean' },
  { name: 'timeout', type: 'string' },
  ...FIELDS.map((f) => ({ name: f.flag, type: 'string' as const })),
];

/** A flag's value as it goes into the spec; "none"/"unlimited" removes the field. */
export function fieldValue(flag: string, kind: 'bytes' | 'int' | 'cpu' | 'cpuset', value: string): string | number | null {
  if (/^(none|unlimited)$/i.test(value)) return null;
  try {
    if (kind === 'bytes') {
      parseBytes(value, `--${flag}`);
      return /^\d+$/.test(value) ? Number(value) : value;
    }
    if (kind === 'cpu') {
      parseCpuLimit(value, `--${flag}`);
      return value;
    }
    if (kind === 'cpuset') {
      if (!/^[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*$/.test(value)) throw new Error(`--${flag}: invalid value "${value}": expected CPUs such as 0-1 or 0,2`);
      return value;
    }
  } catch (err) {
    throw new UsageError((err as Error).message, 'set');
  }
  if (!/^\d+$/.test(value)) throw new UsageError(`--${flag}: invalid value "${value}": expected a whole number (or "none" to remove the limit)`, 'set');
  return Number(value);
}

export function resourcesPatch(args: ReturnType<typeof parseArgs>): Record<string, unknown> {
  const resources: Record<string, unknown> = {};
  for (const f of FIELDS) {
    const v = stringFlag(args, f.flag);
    if (v === undefined) continue;
    let node = resources;
    for (const key of f.path.slice(0, -1)) node = (node[key] ??= {}) as Record<string, unknown>;
    node[f.path.at(-1)!] = fieldValue(f.flag, f.kind, v);
  }
  return resources;
}

export async function runSet(argv: string[], io: CliIO): Promise<number> {
  const args = parseArgs(argv, FLAGS, 'set');
  const name = args.positionals[0];
  if (!name || args.positionals.length > 1) throw new UsageError('set takes one VE name', 'set');
  const resources = resourcesPatch(args);
  if (Object.keys(resources).length === 0) throw new UsageError(`nothing to set: give at least one of ${FIELDS.map((f) => `--${f.flag}`).join(', ')}`, 'set');
  const namespace = stringFlag(args, 'namespace') ?? 'default';
  const conn = io.connect({ kubeconfig: stringFlag(args, 'kubeconfig'), stateDir: stringFlag(args, 'state-dir') });
  if (!(await conn.ves.get(name, namespace))) throw new KvzError('NotFound', veNotFound(name, namespace));
  const updated = await conn.ves.mergePatch(name, namespace, { spec: { resources } });
  io.stdout(`virtualenvironment.kubevz.io/${name} resources set (generation ${updated.metadata.generation ?? '?'})\n`);
  if (!boolFlag(args, 'wait', false)) return 0;

  const timeoutMs = parseDuration(stringFlag(args, 'timeout') ?? '60s', '--timeout');
  const deadline = io.now().getTime() + timeoutMs;
  const gen = updated.metadata.generation ?? 0;
  for (;;) {
    const ve: VirtualEnvironment | undefined = await conn.ves.get(name, namespace);
    if (!ve) throw new KvzError('NotFound', veNotFound(name, namespace));
    const cond = ve.status?.conditions?.find((c) => c.type === 'ResourcesApplied');
    if (cond && (cond.observedGeneration ?? 0) >= gen) {
      if (cond.status === 'True') {
        io.stdout('applied live\n');
        return 0;
      }
      for (const p of ve.status?.pendingResources ?? []) io.stdout(`pending ${p.field}: ${p.reason}\n`);
      if (cond.reason === 'RestartRequired') return 0;
      io.stderr(`error: not applied: ${cond.message}\n`);
      return 1;
    }
    if (ve.status?.phase !== 'Running' && (ve.status?.observedGeneration ?? 0) >= gen) {
      io.stdout(`recorded; the VE is ${ve.status?.phase ?? 'not running'}: the limits apply when it starts\n`);
      return 0;
    }
    if (timeoutMs > 0 && io.now().getTime() > deadline) {
      throw new KvzError('Unavailable', `timed out after ${timeoutMs / 1000}s waiting for the node agent to apply the resources of ${namespace}/${name}; see \`kvz get ve ${name} -o yaml\` (status.conditions)`);
    }
    await io.sleep(250);
  }
}
