// Human output like kubectl's: ages (`45s`, `3m12s`, `2h`, `3d`) and tables whose columns are
// padded to the widest cell plus three spaces (kubectl's tabwriter settings).

import { humanDuration } from '../api/duration.js';
import type { VirtualEnvironment } from '../api/types.js';

/** kubectl's HumanDuration (k8s.io/apimachinery/pkg/util/duration). */
export const formatAge = humanDuration;

export function ageOf(timestamp: string | undefined, now: Date): string {
  if (!timestamp) return '<unknown>';
  const t = Date.parse(timestamp);
  return Number.isNaN(t) ? '<unknown>' : formatAge(now.getTime() - t);
}

/** Columns padded to the widest cell + 3 (minimum 6); the last column is not padded. */
export function renderTable(header: string[], rows: string[][]): string {
  const all = [header, ...rows];
  const widths = header.map((_, i) => Math.max(6, ...all.map((r) => (r[i] ?? '').length + 3)));
  return all.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i] ?? 0))).join('') + '\n').join('');
}

const NONE = '<none>';

export interface VETableOptions {
  wide?: boolean;
  allNamespaces?: boolean;
  now: Date;
}

export function veTable(ves: VirtualEnvironment[], opts: VETableOptions): string {
  const header = ['NAME', 'PHASE', 'NODE', 'IP', 'READY', 'AGE'];
  if (opts.wide) header.push('TEMPLATE', 'HOSTNAME');
  if (opts.allNamespaces) header.unshift('NAMESPACE');
  const rows = ves.map((ve) => {
    const ready = ve.status?.conditions?.find((c) => c.type === 'Ready')?.status;
    const phase = ve.metadata.deletionTimestamp ? 'Terminating' : ve.status?.phase;
    const ip = ve.status?.addresses?.[0]?.replace(/\/\d+$/, '');
    const row = [ve.metadata.name, phase ?? NONE, ve.status?.nodeName || NONE, ip || NONE, ready ?? NONE, ageOf(ve.metadata.creationTimestamp, opts.now)];
    if (opts.wide) row.push(ve.spec?.template || NONE, ve.spec?.hostname || ve.metadata.name);
    if (opts.allNamespaces) row.unshift(ve.metadata.namespace ?? '');
    return row;
  });
  return renderTable(header, rows);
}
