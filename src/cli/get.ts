// `kvz get ve|vem [NAME]`: a kubectl-like table, or the objects as YAML/JSON/names.

import { stringify } from 'yaml';
import type { KubeObject, VEMigration, VirtualEnvironment } from '../api/types.js';
import { KvzError } from '../core/errors.js';
import { CONNECTION_FLAGS, UsageError, boolFlag, parseArgs, stringFlag, type FlagSpec } from './args.js';
import type { CliIO, Connection as CliConnection } from './context.js';
import { parseResource, veNotFound } from './resources.js';
import { ageOf, renderTable, veTable } from './table.js';

const FLAGS: FlagSpec[] = [
  ...CONNECTION_FLAGS,
  { name: 'output', short: 'o', type: 'string' },
  { name: 'namespace', short: 'n', type: 'string' },
  { name: 'all-namespaces', short: 'A', type: 'boolean' },
];

const FORMATS = ['yaml', 'json', 'wide', 'name'];

export async function runGet(argv: string[], io: CliIO): Promise<number> {
  const args = parseArgs(argv, FLAGS, 'get');
  const { kind, name: slashName } = parseResource(args.positionals[0], 'get', ['ve', 'vem']);
  const names = [...(slashName ? [slashName] : []), ...args.positionals.slice(1)];
  if (names.length > 1) throw new UsageError('get takes at most one name', 'get');
  const name = names[0];
  const output = stringFlag(args, 'output');
  if (output !== undefined && !FORMATS.includes(output)) throw new UsageError(`unknown output format "${output}": use one of ${FORMATS.join(', ')}`, 'get');
  const all = boolFlag(args, 'all-namespaces');
  if (all && name) throw new UsageError('a name cannot be combined with --all-namespaces', 'get');
  const namespace = stringFlag(args, 'namespace') ?? 'default';
  const conn = io.connect({ kubeconfig: stringFlag(args, 'kubeconfig'), stateDir: stringFlag(args, 'state-dir') });
  if (kind === 'vem') return getMigrations(io, conn.migrations, { name, namespace, all, output });

  let ves: VirtualEnvironment[];
  if (name) {
    const ve = await conn.ves.get(name, namespace);
    if (!ve) throw new KvzError('NotFound', veNotFound(name, namespace));
    ves = [ve];
  } else {
    ves = await conn.ves.list(all ? {} : { namespace });
    ves.sort((a, b) => `${a.metadata.namespace}/${a.metadata.name}`.localeCompare(`${b.metadata.namespace}/${b.metadata.name}`));
  }

  if (output === 'yaml' || output === 'json') {
    const doc = name ? ves[0] : { apiVersion: 'v1', kind: 'List', items: ves, metadata: { resourceVersion: '' } };
    io.stdout(output === 'yaml' ? stringify(doc) : `${JSON.stringify(doc, null, 4)}\n`);
    return 0;
  }
  if (output === 'name') {
    for (const ve of ves) io.stdout(`virtualenvironment.kubevz.io/${ve.metadata.name}\n`);
    return 0;
  }
  if (ves.length === 0) {
    io.stderr(all ? 'No resources found\n' : `No resources found in ${namespace} namespace.\n`);
    return 0;
  }
  io.stdout(veTable(ves, { wide: output === 'wide', allNamespaces: all, now: io.now() }));
  return 0;
}

async function getMigrations(io: CliIO, client: CliConnection['migrations'], o: { name?: string; namespace: string; all: boolean; output?: string }): Promise<number> {
  if (!client) throw new KvzError('Unavailable', 'this connection has no client for VEMigrations');
  let items: VEMigration[];
  if (o.name) {
    const m = await client.get(o.name, o.namespace);
    if (!m) throw new KvzError('NotFound', `vemigration "${o.name}" not found in namespace "${o.namespace}"`);
    items = [m];
  } else {
    items = await client.list(o.all ? {} : { namespace: o.namespace });
    items.sort((a, b) => `${a.metadata.namespace}/${a.metadata.name}`.localeCompare(`${b.metadata.namespace}/${b.metadata.name}`));
  }
  if (o.output === 'yaml' || o.output === 'json') {
    const doc: KubeObject | undefined = o.name ? items[0] : { apiVersion: 'v1', kind: 'List', items, metadata: { resourceVersion: '' } };
    io.stdout(o.output === 'yaml' ? stringify(doc) : `${JSON.stringify(doc, null, 4)}\n`);
    return 0;
  }
  if (o.output === 'name') {
    for (const m of items) io.stdout(`vemigration.kubevz.io/${m.metadata.name}\n`);
    return 0;
  }
  if (items.length === 0) {
    io.stderr(o.all ? 'No resources found\n' : `No resources found in ${o.namespace} namespace.\n`);
    return 0;
  }
  const header = ['NAME', 'VE', 'MODE', 'SOURCE', 'TARGET', 'PHASE', 'DOWNTIME', 'AGE'];
  if (o.output === 'wide') header.push('METHOD', 'BYTES', 'REASON');
  if (o.all) header.unshift('NAMESPACE');
  const rows = items.map((m) => {
    const s = m.status ?? {};
    const row = [m.metadata.name, m.spec.ve, m.spec.mode ?? 'live', s.sourceNode ?? '<none>', s.targetNode ?? m.spec.targetNode ?? '<none>', s.phase ?? '<none>', s.downtimeMs !== undefined ? `${s.downtimeMs}ms` : '<none>', ageOf(m.metadata.creationTimestamp, io.now())];
    if (o.output === 'wide') row.push(s.method ?? '<none>', s.bytesTransferred !== undefined ? String(s.bytesTransferred) : '<none>', s.reason ?? '<none>');
    if (o.all) row.unshift(m.metadata.namespace);
    return row;
  });
  io.stdout(renderTable(header, rows));
  return 0;
}
