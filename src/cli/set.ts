// `kvz set NAME --memory 1Gi --cpu-limit 50% --disk 20Gi ...`: edits spec.resources with a merge
// patch (the node agent applies it live, or lists it in status.pendingResources when it needs a
// restart or cannot be applied) and with --wait waits until the conditions that report the
// fields set — ResourcesApplied for cgroup limits, DiskResized for --disk/--inodes — speak for
// this generation. `-o json|yaml` prints the resulting object instead of prose.

import { stringify } from 'yaml';
import { parseBytes, parseCpuLimit } from '../api/quantity.js';
import type { Condition, VirtualEnvironment } from '../api/types.js';
import { KvzError } from '../core/errors.js';
import { CONNECTION_FLAGS, UsageError, boolFlag, parseArgs, parseDuration, stringFlag, type FlagSpec } from './args.js';
import type { CliIO } from './context.js';
import { veNotFound } from './resources.js';

type Kind = 'bytes' | 'int' | 'cpu' | 'cpuset';

/**
 * flag → path under spec.resources, and how its value is checked. `disk` marks the fields the
 * DiskResized condition reports (the image, not a cgroup); `keep` the ones "none" cannot remove.
 */
const FIELDS: { flag: string; path: string[]; kind: Kind; disk?: true; keep?: true }[] = [
  { flag: 'memory', path: ['memory', 'limit'], kind: 'bytes' },
  { flag: 'swap', path: ['memory', 'swap'], kind: 'bytes' },
  { flag: 'guarantee', path: ['memory', 'guarantee'], kind: 'bytes' },
  { flag: 'cpu-units', path: ['cpu', 'units'], kind: 'int' },
  { flag: 'cpu-limit', path: ['cpu', 'limit'], kind: 'cpu' },
  { flag: 'cpus', path: ['cpu', 'cpus'], kind: 'int' },
  { flag: 'cpuset', path: ['cpu', 'cpuset'], kind: 'cpuset' },
  { flag: 'processes', path: ['processes'], kind: 'int' },
  { flag: 'open-files', path: ['openFiles'], kind: 'int' },
  // vzctl --diskspace / --diskinodes. The agent grows the image (online where the node can);
  // it refuses a shrink and reports an inode count the image was not made with as pending.
  { flag: 'disk', path: ['disk', 'space'], kind: 'bytes', disk: true, keep: true },
  { flag: 'inodes', path: ['disk', 'inodes'], kind: 'int', disk: true },
  { flag: 'io-weight', path: ['disk', 'ioWeight'], kind: 'int' },
  { flag: 'read-bps', path: ['disk', 'readBps'], kind: 'bytes' },
  { flag: 'write-bps', path: ['disk', 'writeBps'], kind: 'bytes' },
  { flag: 'read-iops', path: ['disk', 'readIops'], kind: 'int' },
  { flag: 'write-iops', path: ['disk', 'writeIops'], kind: 'int' },
];

const FLAGS: FlagSpec[] = [
  ...CONNECTION_FLAGS,
  { name: 'namespace', short: 'n', type: 'string' },
  { name: 'output', short: 'o', type: 'string' },
  { name: 'wait', type: 'boolean' },
  { name: 'timeout', type: 'string' },
  ...FIELDS.map((f) => ({ name: f.flag, type: 'string' as const })),
];

/** A flag's value as it goes into the spec; "none"/"unlimited" removes the field (unless `keep`). */
export function fieldValue(flag: string, kind: Kind, value: string, keep = false): string | number | null {
  if (/^(none|unlimited)$/i.test(value)) {
    // Without spec.resources.disk.space the agent would want its default size, not "no limit".
    if (keep) throw new UsageError(`--${flag}: a VE's disk always has a size and never shrinks; give a size such as 20Gi`, 'set');
    return null;
  }
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
  if (!/^\d+$/.test(value)) throw new UsageError(`--${flag}: invalid value "${value}": expected a whole number${keep ? '' : ' (or "none" to remove the limit)'}`, 'set');
  return Number(value);
}

export function resourcesPatch(args: ReturnType<typeof parseArgs>): Record<string, unknown> {
  const resources: Record<string, unknown> = {};
  for (const f of FIELDS) {
    const v = stringFlag(args, f.flag);
    if (v === undefined) continue;
    let node = resources;
    for (const key of f.path.slice(0, -1)) node = (node[key] ??= {}) as Record<string, unknown>;
    node[f.path.at(-1)!] = fieldValue(f.flag, f.kind, v, f.keep);
  }
  return resources;
}

/** The conditions that report the fields a command line sets. */
function conditionsFor(args: ReturnType<typeof parseArgs>): string[] {
  const set = FIELDS.filter((f) => stringFlag(args, f.flag) !== undefined);
  return [...(set.some((f) => !f.disk) ? ['ResourcesApplied'] : []), ...(set.some((f) => f.disk) ? ['DiskResized'] : [])];
}

export async function runSet(argv: string[], io: CliIO): Promise<number> {
  const args = parseArgs(argv, FLAGS, 'set');
  const name = args.positionals[0];
  if (!name || args.positionals.length > 1) throw new UsageError('set takes one VE name', 'set');
  // Every flag is checked before anything is written.
  const output = stringFlag(args, 'output');
  if (output !== undefined && output !== 'json' && output !== 'yaml') throw new UsageError(`unknown output format "${output}": use json or yaml`, 'set');
  const resources = resourcesPatch(args);
  if (Object.keys(resources).length === 0) throw new UsageError(`nothing to set: give at least one of ${FIELDS.map((f) => `--${f.flag}`).join(', ')}`, 'set');
  const timeoutMs = parseDuration(stringFlag(args, 'timeout') ?? '60s', '--timeout');
  const namespace = stringFlag(args, 'namespace') ?? 'default';
  const say = (line: string) => {
    if (!output) io.stdout(line);
  };
  const print = (ve: VirtualEnvironment) => {
    if (output === 'yaml') io.stdout(stringify(ve));
    else if (output === 'json') io.stdout(`${JSON.stringify(ve, null, 4)}\n`);
  };
  const conn = io.connect({ kubeconfig: stringFlag(args, 'kubeconfig'), stateDir: stringFlag(args, 'state-dir') });
  if (!(await conn.ves.get(name, namespace))) throw new KvzError('NotFound', veNotFound(name, namespace));
  const updated = await conn.ves.mergePatch(name, namespace, { spec: { resources } });
  say(`virtualenvironment.kubevz.io/${name} resources set (generation ${updated.metadata.generation ?? '?'})\n`);
  if (!boolFlag(args, 'wait', false)) {
    print(updated);
    return 0;
  }

  const deadline = io.now().getTime() + timeoutMs;
  const gen = updated.metadata.generation ?? 0;
  const watched = conditionsFor(args);
  for (;;) {
    const ve: VirtualEnvironment | undefined = await conn.ves.get(name, namespace);
    if (!ve) throw new KvzError('NotFound', veNotFound(name, namespace));
    const conds = watched.map((type) => ve.status?.conditions?.find((c) => c.type === type));
    if (conds.every((c) => c && (c.observedGeneration ?? 0) >= gen)) {
      const notApplied = (conds as Condition[]).filter((c) => c.status !== 'True');
      if (notApplied.length === 0) {
        say('applied live\n');
        print(ve);
        return 0;
      }
      for (const p of ve.status?.pendingResources ?? []) say(`pending ${p.field}: ${p.reason}\n`);
      print(ve);
      // Waiting for a restart is an outcome; anything else (a refused shrink, a failed write) is not.
      const failed = notApplied.filter((c) => c.reason !== 'RestartRequired');
      if (failed.length === 0) return 0;
      io.stderr(`error: not applied: ${failed.map((c) => c.message).join('; ')}\n`);
      return 1;
    }
    if (ve.status?.phase !== 'Running' && (ve.status?.observedGeneration ?? 0) >= gen) {
      say(`recorded; the VE is ${ve.status?.phase ?? 'not running'}: the limits apply when it starts\n`);
      print(ve);
      return 0;
    }
    if (timeoutMs > 0 && io.now().getTime() > deadline) {
      throw new KvzError('Unavailable', `timed out after ${timeoutMs / 1000}s waiting for the node agent to apply the resources of ${namespace}/${name}; see \`kvz get ve ${name} -o yaml\` (status.conditions ${watched.join(', ')})`);
    }
    await io.sleep(250);
  }
}
