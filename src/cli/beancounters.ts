// `kvz beancounters NAME`: the VE's status.beancounters as the familiar /proc/user_beancounters
// table (physpages/swappages/oomguarpages in 4 KiB pages, diskspace in 1 KiB blocks; kubevz
// adds cpu in millicores with units as barrier, and network byte totals).

import type { Beancounter } from '../api/types.js';
import { KvzError } from '../core/errors.js';
import { CONNECTION_FLAGS, UsageError, parseArgs, stringFlag, type FlagSpec } from './args.js';
import type { CliIO } from './context.js';
import { veNotFound } from './resources.js';

const FLAGS: FlagSpec[] = [...CONNECTION_FLAGS, { name: 'namespace', short: 'n', type: 'string' }];

/** OpenVZ prints LONG_MAX for "no limit". */
const LONG_MAX = '9223372036854775807';

export function beancounterTable(id: string, rows: Beancounter[]): string {
  const cell = (v: number | string | undefined) => (v === undefined ? '0' : v === 'unlimited' ? LONG_MAX : String(v));
  const lines = ['Version: 2.5', `${'uid'.padStart(id.length + 1)}  ${'resource'.padEnd(14)}${['held', 'maxheld', 'barrier', 'limit', 'failcnt'].map((h) => h.padStart(20)).join(' ')}`];
  rows.forEach((r, i) => {
    const lead = i === 0 ? `${id}:` : ''.padStart(id.length + 1);
    lines.push(`${lead}  ${r.resource.padEnd(14)}${[r.held, r.maxheld, r.barrier, r.limit, r.failcnt].map((v) => cell(v).padStart(20)).join(' ')}`);
  });
  return `${lines.join('\n')}\n`;
}

export async function runBeancounters(argv: string[], io: CliIO): Promise<number> {
  const args = parseArgs(argv, FLAGS, 'beancounters');
  const name = args.positionals[0];
  if (!name || args.positionals.length > 1) throw new UsageError('beancounters takes one VE name', 'beancounters');
  const namespace = stringFlag(args, 'namespace') ?? 'default';
  const conn = io.connect({ kubeconfig: stringFlag(args, 'kubeconfig'), stateDir: stringFlag(args, 'state-dir') });
  const ve = await conn.ves.get(name, namespace);
  if (!ve) throw new KvzError('NotFound', veNotFound(name, namespace));
  const rows = ve.status?.beancounters ?? [];
  if (rows.length === 0) {
    io.stderr(`no beancounters yet for ${namespace}/${name} (phase ${ve.status?.phase ?? 'unknown'}): the node agent publishes them every few seconds while the VE runs\n`);
    return 1;
  }
  io.stdout(beancounterTable(`${namespace}/${name}`, rows));
  return 0;
}
