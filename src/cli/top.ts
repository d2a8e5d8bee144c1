// `kvz top`: every VE (of a node, or all) with CPU %, memory, processes, disk and network, from
// the beancounters the node agents publish; redrawn every --interval until Ctrl-C, or printed
// once with --once.

import type { VirtualEnvironment } from '../api/types.js';
import { CONNECTION_FLAGS, boolFlag, parseArgs, parseDuration, stringFlag, type FlagSpec } from './args.js';
import type { CliIO } from './context.js';

const FLAGS: FlagSpec[] = [
  ...CONNECTION_FLAGS,
  { name: 'namespace', short: 'n', type: 'string' },
  { name: 'all-namespaces', short: 'A', type: 'boolean' },
  { name: 'node', type: 'string' },
  { name: 'once', type: 'boolean' },
  { name: 'interval', type: 'string' },
];

function human(bytes: number): string {
  const units = ['B', 'Ki', 'Mi', 'Gi', 'Ti'];
  let v = bytes;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v >= 10 || i === 0 ? Math.round(v) : v.toFixed(1)}${units[i]}`;
}

export function topFrame(ves: VirtualEnvironment[], opts: { allNamespaces: boolean }): string {
  const header = ['NAME', 'NODE', 'PHASE', 'CPU%', 'CPULIM', 'MEM', 'MEMLIM', 'MEM%', 'PROCS', 'DISK', 'NET RX/TX', 'TCP', 'FAILS'];
  const rows = ves.map((ve) => {
    const bc = new Map((ve.status?.beancounters ?? []).map((b) => [b.resource, b]));
    const num = (r: string, k: 'held' | 'limit' | 'failcnt') => {
      const v = bc.get(r)?.[k];
      return typeof v === 'number' ? v : undefined;
    };
    const mem = (num('physpages', 'held') ?? 0) * 4096;
    const memLim = num('physpages', 'limit');
    const cpu = num('cpu', 'held');
    const cpuLim = num('cpu', 'limit');
    const disk = num('diskspace', 'held');
    const fails = ['physpages', 'swappages', 'numproc', 'cpu'].reduce((s, r) => s + (num(r, 'failcnt') ?? 0), 0);
    const rx = num('netrxbytes', 'held');
    const tx = num('nettxbytes', 'held');
    return [
      opts.allNamespaces ? `${ve.metadata.namespace}/${ve.metadata.name}` : ve.metadata.name,
      ve.status?.nodeName ?? '',
      ve.status?.phase ?? '',
      cpu === undefined ? '-' : (cpu / 10).toFixed(1),
      cpuLim === undefined ? '-' : `${cpuLim / 10}%`,
      bc.size ? human(mem) : '-',
      memLim === undefined ? '-' : human(memLim * 4096),
      memLim ? ((mem / (memLim * 4096)) * 100).toFixed(1) : '-',
      num('numproc', 'held') === undefined ? '-' : `${num('numproc', 'held')}/${num('numproc', 'limit') ?? '-'}`,
      disk === undefined ? '-' : human(disk * 1024),
      rx === undefined ? '-' : `${human(rx)}/${human(tx ?? 0)}`,
      num('numtcpsock', 'held') === undefined ? '-' : String(num('numtcpsock', 'held')),
      bc.size ? String(fails) : '-',
    ];
  });
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i < 3 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ').trimEnd();
  return `${[line(header), ...rows.map(line)].join('\n')}\n`;
}

export async function runTop(argv: string[], io: CliIO): Promise<number> {
  const args = parseArgs(argv, FLAGS, 'top');
  const all = boolFlag(args, 'all-namespaces');
  const namespace = stringFlag(args, 'namespace') ?? 'default';
  const node = stringFlag(args, 'node');
  const once = boolFlag(args, 'once');
  const intervalMs = parseDuration(stringFlag(args, 'interval') ?? '2s', '--interval');
  const conn = io.connect({ kubeconfig: stringFlag(args, 'kubeconfig'), stateDir: stringFlag(args, 'state-dir') });
  let stopped = false;
  const onSig = () => {
    stopped = true;
  };
  if (!once) process.once('SIGINT', onSig);
  try {
    do {
      let ves = await conn.ves.list(all ? {} : { namespace });
      if (node) ves = ves.filter((ve) => ve.status?.nodeName === node);
      ves.sort((a, b) => `${a.metadata.namespace}/${a.metadata.name}`.localeCompare(`${b.metadata.namespace}/${b.metadata.name}`));
      const title = `kvz top — ${ves.length} VE(s)${node ? ` on node ${node}` : ''} — ${io.now().toISOString()}\n`;
      io.stdout(`${once ? '' : '\x1b[H\x1b[2J'}${title}${topFrame(ves, { allNamespaces: all })}`);
      if (!once) await io.sleep(intervalMs);
    } while (!once && !stopped);
  } finally {
    process.off('SIGINT', onSig);
  }
  return 0;
}
