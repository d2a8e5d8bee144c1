// `kvz clone SRC NEW`: creates VE NEW whose disk is a copy of SRC's (spec.cloneFrom), with
// SRC's template and resources but its own identity: name, hostname, addresses (allocated
// unless --ip is given; never copied) and MAC (derived from the new uid). The node agent makes
// the copy on SRC's node, SRC keeps running. Waits until NEW runs (or says why it cannot).

import { NODE_LABEL, type VirtualEnvironment } from '../api/types.js';
import { KvzError } from '../core/errors.js';
import { CONNECTION_FLAGS, UsageError, boolFlag, listFlag, parseArgs, parseDuration, stringFlag, type FlagSpec } from './args.js';
import type { CliIO } from './context.js';
import { veNotFound } from './resources.js';

const FLAGS: FlagSpec[] = [
  ...CONNECTION_FLAGS,
  { name: 'namespace', short: 'n', type: 'string' },
  { name: 'ip', type: 'string', multiple: true },
  { name: 'hostname', type: 'string' },
  { name: 'wait', type: 'boolean' },
  { name: 'timeout', type: 'string' },
];

const POLL_MS = 250;

/** The new VE object: SRC's recipe, NEW's identity. */
export function cloneObject(src: VirtualEnvironment, name: string, opts: { hostname?: string; ips: string[] }): VirtualEnvironment {
  const s = src.spec;
  const labels = Object.fromEntries(Object.entries(src.metadata.labels ?? {}).filter(([k]) => k !== NODE_LABEL));
  const spec: VirtualEnvironment['spec'] = { template: s.template, cloneFrom: src.metadata.name, hostname: opts.hostname ?? name, powerState: 'Running' };
  if (s.resources) spec.resources = structuredClone(s.resources);
  if (s.stopTimeoutSeconds !== undefined) spec.stopTimeoutSeconds = s.stopTimeoutSeconds;
  if (s.onBoot !== undefined) spec.onBoot = s.onBoot;
  // The copy is made on the source's node.
  const node = src.status?.nodeName ?? s.nodeName;
  if (node) spec.nodeName = node;
  if (s.network?.mode || opts.ips.length) {
    spec.network = {};
    if (s.network?.mode) spec.network.mode = s.network.mode;
    if (opts.ips.length) spec.network.addresses = opts.ips;
  }
  return {
    apiVersion: src.apiVersion ?? 'kubevz.io/v1alpha1',
    kind: 'VirtualEnvironment',
    metadata: { name, namespace: src.metadata.namespace, ...(Object.keys(labels).length ? { labels } : {}) },
    spec,
  };
}

export async function runClone(argv: string[], io: CliIO): Promise<number> {
  const args = parseArgs(argv, FLAGS, 'clone');
  const [srcName, name, extra] = args.positionals;
  if (!srcName || !name || extra !== undefined) throw new UsageError('clone needs a source and a new name, e.g. `kvz clone web1 web2`', 'clone');
  const namespace = stringFlag(args, 'namespace') ?? 'default';
  const ips = listFlag(args, 'ip').map((ip) => {
    if (!/^\d{1,3}(\.\d{1,3}){3}\/\d{1,2}$/.test(ip)) throw new UsageError(`--ip ${ip}: give an IPv4 address with its prefix, e.g. 10.213.0.20/24`, 'clone');
    return ip;
  });
  const timeout = stringFlag(args, 'timeout') ?? '2m';
  const timeoutMs = parseDuration(timeout, '--timeout');
  const conn = io.connect({ kubeconfig: stringFlag(args, 'kubeconfig'), stateDir: stringFlag(args, 'state-dir') });

  const src = await conn.ves.get(srcName, namespace);
  if (!src) throw new KvzError('NotFound', veNotFound(srcName, namespace));
  const srcIps = new Set([...(src.spec.network?.addresses ?? []), ...(src.status?.addresses ?? [])].map((a) => a.split('/')[0]));
  const clash = ips.filter((ip) => srcIps.has(ip.split('/')[0]));
  if (clash.length) throw new KvzError('Invalid', `--ip ${clash.join(', ')} is the address of "${srcName}"; give the clone its own address, or leave --ip out to get one allocated`);
  if (await conn.ves.get(name, namespace)) throw new KvzError('AlreadyExists', `virtualenvironment "${name}" already exists in namespace "${namespace}"; pick another name for the clone`);

  await conn.ves.create(cloneObject(src, name, { hostname: stringFlag(args, 'hostname'), ips }));
  io.stdout(`virtualenvironment.kubevz.io "${name}" created (clone of "${srcName}")\n`);
  if (!boolFlag(args, 'wait', true)) return 0;

  const start = io.now().getTime();
  for (;;) {
    const ve = await conn.ves.get(name, namespace);
    if (!ve) throw new KvzError('NotFound', `virtualenvironment "${name}" disappeared while waiting for it to run`);
    const phase = ve.status?.phase;
    if (phase === 'Running' && ve.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True')) {
      io.stdout(`virtualenvironment.kubevz.io "${name}" running at ${(ve.status?.addresses ?? []).join(', ') || 'no address'}\n`);
      return 0;
    }
    if (phase === 'Failed') throw new KvzError('Invalid', `the clone "${name}" failed: ${ve.status?.message ?? 'see kvz get ve ' + name + ' -o yaml'}`);
    if (timeoutMs > 0 && io.now().getTime() - start >= timeoutMs) {
      const why = ve.status?.message ?? ve.status?.conditions?.find((c) => c.type === 'Ready')?.message ?? `phase ${phase ?? 'Pending'}`;
      throw new KvzError('Unavailable', `timed out after ${timeout} waiting for the clone "${name}" to run (${why})`);
    }
    await io.sleep(POLL_MS);
  }
}
