// `kvz template list|build|import|delete`: VETemplates through the API. `build` (and `import`)
// ask every node agent to build now (annotation kubevz.io/build-request with a fresh token) and
// follow the node's status entry — a progress bar on a terminal, one line per stage otherwise.
// `delete` refuses while VEs use the template and names them.

import { randomBytes } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { stringify } from 'yaml';
import {
  API_VERSION,
  BUILTIN_BUSYBOX_TEMPLATE,
  TEMPLATE_BUILD_ANNOTATION,
  type TemplateInitFlavor,
  type TemplateNodeStatus,
  type VETemplate,
} from '../api/types.js';
import { KvzError } from '../core/errors.js';
import type { ResourceClient } from '../core/resource-client.js';
import { CONNECTION_FLAGS, UsageError, boolFlag, parseArgs, parseDuration, stringFlag, type FlagSpec, type ParsedArgs } from './args.js';
import type { CliIO, Connection } from './context.js';
import { ageOf, renderTable } from './table.js';

const FLAGS: FlagSpec[] = [
  ...CONNECTION_FLAGS,
  { name: 'output', short: 'o', type: 'string' },
  { name: 'wait', type: 'boolean' },
  { name: 'timeout', type: 'string' },
  { name: 'node', type: 'string' },
  { name: 'sha256', type: 'string' },
  { name: 'init', type: 'string' },
];

const POLL_MS = 250;
const INIT_FLAVORS: TemplateInitFlavor[] = ['auto', 'systemd', 'sysvinit', 'busybox', 'other'];

export async function runTemplate(argv: string[], io: CliIO): Promise<number> {
  const args = parseArgs(argv, FLAGS, 'template');
  const [sub, ...rest] = args.positionals;
  if (!sub || !['list', 'ls', 'build', 'import', 'delete', 'rm'].includes(sub)) {
    throw new UsageError(sub ? `unknown template subcommand "${sub}": use list, build, import or delete` : 'template needs a subcommand: list, build, import or delete', 'template');
  }
  const conn = io.connect({ kubeconfig: stringFlag(args, 'kubeconfig'), stateDir: stringFlag(args, 'state-dir') });
  const client = templatesOf(conn);
  switch (sub) {
    case 'list':
    case 'ls':
      return list(client, conn, args, io);
    case 'build':
      return build(client, need(rest[0], 'build'), args, io);
    case 'import':
      return importTarball(client, need(rest[0], 'import'), need(rest[1], 'import', 'FILE'), args, io);
    case 'delete':
    case 'rm':
      return remove(client, conn, rest, io);
    default:
      throw new UsageError(`unknown template subcommand "${sub}"`, 'template');
  }
}

function need(v: string | undefined, sub: string, what = 'NAME'): string {
  if (!v) throw new UsageError(`template ${sub} needs ${what}, e.g. \`kvz template ${sub} debian-12${what === 'FILE' ? ' ./rootfs.tar.xz' : ''}\``, 'template');
  return v;
}

function templatesOf(conn: Connection): ResourceClient<VETemplate> {
  if (!conn.templates) throw new KvzError('Internal', 'this connection has no VETemplate client');
  return conn.templates;
}

// ---- list ----

/** One row per template: this cluster's view (first node's entry, and how many nodes are Ready). */
export function templateRows(items: VETemplate[], now: Date): string[][] {
  const rows = items.map((t) => {
    const nodes = t.status?.nodes ?? [];
    const first = nodes[0];
    const ready = nodes.filter((n) => n.stage === 'Ready').length;
    return [
      t.metadata.name,
      t.spec.source,
      first?.init ?? t.spec.init?.flavor ?? '',
      first ? `${first.stage}${first.stage !== 'Ready' && first.stage !== 'Failed' && first.percent !== undefined ? ` ${first.percent}%` : ''}` : 'NotBuilt',
      nodes.length ? `${ready}/${nodes.length}` : '0',
      first?.sizeBytes !== undefined ? humanBytes(first.sizeBytes) : '',
      first?.digest?.slice(0, 12) ?? '',
      ageOf(t.metadata.creationTimestamp, now),
    ];
  });
  return rows;
}

export function humanBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(v < 10 ? 1 : 0)}${units[i]}`;
}

async function list(client: ResourceClient<VETemplate>, _conn: Connection, args: ParsedArgs, io: CliIO): Promise<number> {
  const items = (await client.list()).sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
  const out = stringFlag(args, 'output');
  if (out === 'yaml') io.stdout(stringify({ apiVersion: 'v1', kind: 'List', items }));
  else if (out === 'json') io.stdout(`${JSON.stringify({ apiVersion: 'v1', kind: 'List', items }, null, 2)}\n`);
  else if (out === 'name') io.stdout(items.map((t) => `vetemplate.kubevz.io/${t.metadata.name}\n`).join(''));
  else if (out !== undefined) throw new UsageError(`unknown output format "${out}": use yaml, json or name`, 'template');
  else {
    const rows = templateRows(items, io.now());
    if (!items.some((t) => t.metadata.name === BUILTIN_BUSYBOX_TEMPLATE)) {
      rows.push([BUILTIN_BUSYBOX_TEMPLATE, 'busybox (built-in)', 'busybox', 'OnDemand', '', '', '', '']);
    }
    io.stdout(renderTable(['NAME', 'SOURCE', 'INIT', 'STAGE', 'READY', 'SIZE', 'DIGEST', 'AGE'], rows));
  }
  return 0;
}

// ---- build / import ----

async function build(client: ResourceClient<VETemplate>, name: string, args: ParsedArgs, io: CliIO): Promise<number> {
  let vet = await client.get(name);
  if (!vet && name === BUILTIN_BUSYBOX_TEMPLATE) {
    // Building the built-in template through the API needs its declaration.
    vet = await client.create({ apiVersion: API_VERSION, kind: 'VETemplate', metadata: { name }, spec: { source: 'busybox' } });
  }
  if (!vet) throw new KvzError('NotFound', `vetemplate "${name}" not found: declare it first (kubectl apply -f manifests/examples/...), or use \`kvz template import ${name} FILE\``);
  return requestAndFollow(client, name, args, io);
}

async function importTarball(client: ResourceClient<VETemplate>, name: string, file: string, args: ParsedArgs, io: CliIO): Promise<number> {
  const path = file.startsWith('file:') ? new URL(file).pathname : resolve(file);
  if (!existsSync(path) || !statSync(path).isFile()) {
    throw new KvzError('Invalid', `${path} is not a file: give a root filesystem tarball (.tar, .tar.gz, .tar.xz, .tar.zst) on this host`);
  }
  const init = stringFlag(args, 'init');
  if (init !== undefined && !INIT_FLAVORS.includes(init as TemplateInitFlavor)) {
    throw new UsageError(`--init ${init}: use one of ${INIT_FLAVORS.join(', ')}`, 'template');
  }
  const sha256 = stringFlag(args, 'sha256');
  const spec: VETemplate['spec'] = {
    source: 'tarball',
    tarball: { url: pathToFileURL(path).href, ...(sha256 ? { sha256 } : {}) },
    ...(init ? { init: { flavor: init as TemplateInitFlavor } } : {}),
  };
  const existing = await client.get(name);
  if (existing) {
    await client.mergePatch(name, undefined, { spec: { ...spec, debootstrap: null, busybox: null } });
    io.stdout(`vetemplate.kubevz.io/${name} configured\n`);
  } else {
    await client.create({ apiVersion: API_VERSION, kind: 'VETemplate', metadata: { name }, spec });
    io.stdout(`vetemplate.kubevz.io/${name} created\n`);
  }
  return requestAndFollow(client, name, args, io);
}

async function requestAndFollow(client: ResourceClient<VETemplate>, name: string, args: ParsedArgs, io: CliIO): Promise<number> {
  const token = `${io.now().toISOString()}-${randomBytes(3).toString('hex')}`;
  await client.mergePatch(name, undefined, { metadata: { annotations: { [TEMPLATE_BUILD_ANNOTATION]: token } } });
  if (!boolFlag(args, 'wait', true)) {
    io.stdout(`vetemplate.kubevz.io/${name} build requested\n`);
    return 0;
  }
  const timeout = stringFlag(args, 'timeout');
  const timeoutMs = timeout ? parseDuration(timeout, '--timeout') : 0;
  const node = stringFlag(args, 'node');
  const bar = new ProgressView(io, name);
  const start = io.now().getTime();
  for (;;) {
    const vet = await client.get(name);
    if (!vet) throw new KvzError('NotFound', `vetemplate "${name}" was deleted while building`);
    const entry = followedEntry(vet.status?.nodes, token, node);
    if (entry) bar.update(entry);
    if (entry?.buildRequest === token && (entry.stage === 'Ready' || entry.stage === 'Failed')) {
      bar.done(entry);
      if (entry.stage === 'Failed') throw new KvzError('CommandFailed', `building template "${name}" on node ${entry.node} failed: ${entry.message ?? 'no reason given'}`);
      return 0;
    }
    const elapsed = io.now().getTime() - start;
    if (timeoutMs > 0 && elapsed >= timeoutMs) {
      bar.clear();
      throw new KvzError('Unavailable', `timed out after ${timeout} waiting for a node agent to build template "${name}"${entry ? ` (last: ${entry.stage} on ${entry.node})` : '; is a node agent running (kvz up)?'}`);
    }
    if (!entry && elapsed >= 10_000) bar.waiting();
    await io.sleep(POLL_MS);
  }
}

/** The entry to follow: the requested node's, else one acting on this request, else one that is building. */
export function followedEntry(nodes: TemplateNodeStatus[] | undefined, token: string, node?: string): TemplateNodeStatus | undefined {
  const list = (nodes ?? []).filter((n) => !node || n.node === node);
  return (
    list.find((n) => n.buildRequest === token) ??
    list.find((n) => n.stage !== 'Ready' && n.stage !== 'Failed' && n.stage !== 'Removed')
  );
}

/** Renders build progress: a redrawn bar on a terminal, a line per stage otherwise. */
export class ProgressView {
  private lastStage = '';
  private drawn = false;
  private warned = false;
  private readonly tty: boolean;

  constructor(
    private readonly io: CliIO,
    private readonly name: string,
    tty?: boolean,
  ) {
    this.tty = tty ?? ((io as { stderrIsTTY?: boolean }).stderrIsTTY ?? (io.env === process.env && process.stderr.isTTY === true));
  }

  static bar(percent: number, width = 30): string {
    const p = Math.max(0, Math.min(100, Math.round(percent)));
    const full = Math.round((p / 100) * width);
    return `[${'#'.repeat(full)}${'.'.repeat(width - full)}] ${String(p).padStart(3)}%`;
  }

  update(e: TemplateNodeStatus): void {
    const percent = e.stage === 'Ready' ? 100 : (e.percent ?? 0);
    if (this.tty) {
      const msg = (e.message ?? '').replace(/\s+/g, ' ').slice(0, 40);
      this.io.stderr(`\r\x1b[2K${this.name} ${ProgressView.bar(percent)} ${e.stage}${msg && e.stage !== 'Failed' ? `  ${msg}` : ''}`);
      this.drawn = true;
    } else if (e.stage !== this.lastStage) {
      this.io.stderr(`${this.name}: ${e.stage} ${percent}% on ${e.node}\n`);
    }
    this.lastStage = e.stage;
  }

  waiting(): void {
    if (this.warned) return;
    this.warned = true;
    this.clear();
    this.io.stderr(`waiting for a node agent to pick up the build of "${this.name}"; is one running (kvz up)?\n`);
  }

  clear(): void {
    if (this.tty && this.drawn) this.io.stderr('\r\x1b[2K');
    this.drawn = false;
  }

  done(e: TemplateNodeStatus): void {
    if (this.tty && this.drawn) this.io.stderr('\n');
    if (e.stage === 'Ready') {
      const size = e.sizeBytes !== undefined ? `, ${humanBytes(e.sizeBytes)} packed` : '';
      const unpacked = e.unpackedBytes !== undefined ? `, ${humanBytes(e.unpackedBytes)} unpacked` : '';
      const secs = e.buildMs !== undefined ? ` in ${(e.buildMs / 1000).toFixed(1)}s` : '';
      this.io.stdout(`vetemplate.kubevz.io/${this.name} ready on ${e.node}: init ${e.init ?? '?'}, digest ${e.digest?.slice(0, 12) ?? '?'}${size}${unpacked}${secs}\n`);
    }
  }
}

// ---- delete ----

async function remove(client: ResourceClient<VETemplate>, conn: Connection, names: string[], io: CliIO): Promise<number> {
  if (names.length === 0) throw new UsageError('template delete needs NAME, e.g. `kvz template delete debian-12`', 'template');
  const ves = await conn.ves.list({});
  let failed = false;
  for (const name of names) {
    const users = ves.filter((v) => v.spec.template === name).map((v) => `${v.metadata.namespace}/${v.metadata.name}`);
    if (users.length > 0) {
      io.stderr(`error: template "${name}" is in use by ${users.length === 1 ? 'VE' : 'VEs'} ${users.join(', ')}: delete ${users.length === 1 ? 'it' : 'them'} or change spec.template first\n`);
      failed = true;
      continue;
    }
    if (await client.delete(name)) io.stdout(`vetemplate.kubevz.io "${name}" deleted\n`);
    else {
      io.stderr(`error: vetemplate "${name}" not found${name === BUILTIN_BUSYBOX_TEMPLATE ? ' (the built-in busybox needs no declaration and cannot be deleted)' : ''}\n`);
      failed = true;
    }
  }
  return failed ? 1 : 0;
}
