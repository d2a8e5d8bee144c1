// Resource arithmetic for placement: what a VE asks of its node, what a node offers, and
// whether a node is fit to take new VEs. What a VE counts (documented in crds/venodes.yaml):
// its memory limit (else its memory guarantee), its CPU cap (the smaller of cpu.limit and
// cpu.cpus, in cores) and its disk space; a limit that is not set counts as zero, so a VE
// without limits always fits (as a BestEffort pod does) and placement spreads it by load.

import { parseBytes, parseCpuLimit } from '../api/quantity.js';
import { NODE_LABEL, type VENode, type VirtualEnvironment } from '../api/types.js';
import { findCondition } from '../core/conditions.js';

export interface Amounts {
  /** millicores */
  cpu: number;
  /** bytes */
  memory: number;
  /** bytes */
  disk: number;
}

export const ZERO: Amounts = { cpu: 0, memory: 0, disk: 0 };

export function add(a: Amounts, b: Amounts): Amounts {
  return { cpu: a.cpu + b.cpu, memory: a.memory + b.memory, disk: a.disk + b.disk };
}

/** What a VE takes from its node. Throws a field error for a malformed quantity. */
export function veRequests(ve: VirtualEnvironment): Amounts {
  const r = ve.spec.resources ?? {};
  const mem = r.memory?.limit ?? r.memory?.guarantee;
  let cores: number | undefined;
  if (r.cpu?.limit !== undefined) cores = parseCpuLimit(r.cpu.limit, 'spec.resources.cpu.limit');
  if (r.cpu?.cpus !== undefined) cores = cores === undefined ? r.cpu.cpus : Math.min(cores, r.cpu.cpus);
  return {
    cpu: cores === undefined ? 0 : Math.round(cores * 1000),
    memory: mem === undefined ? 0 : parseBytes(mem, r.memory?.limit !== undefined ? 'spec.resources.memory.limit' : 'spec.resources.memory.guarantee'),
    disk: r.disk?.space === undefined ? 0 : parseBytes(r.disk.space, 'spec.resources.disk.space'),
  };
}

/** A node's allocatable amounts (falling back to capacity); unparsable values count as zero. */
export function nodeAllocatable(node: VENode): Amounts {
  const a = node.status?.allocatable ?? node.status?.capacity ?? {};
  const safe = (f: () => number) => {
    try {
      return f();
    } catch {
      return 0;
    }
  };
  return {
    cpu: a.cpu === undefined ? 0 : safe(() => Math.round(parseCpuLimit(a.cpu!, 'cpu') * 1000)),
    memory: a.memory === undefined ? 0 : safe(() => parseBytes(a.memory!, 'memory')),
    disk: a.disk === undefined ? 0 : safe(() => parseBytes(a.disk!, 'disk')),
  };
}

/** Quantities as the API shows them: "1500m" or "2", bytes as "Ki" multiples or plain. */
export function formatAmounts(a: Amounts): { cpu: string; memory: string; disk: string } {
  const bytes = (n: number) => (n % 1024 === 0 && n > 0 ? `${n / 1024}Ki` : String(n));
  return { cpu: a.cpu % 1000 === 0 ? String(a.cpu / 1000) : `${a.cpu}m`, memory: bytes(a.memory), disk: bytes(a.disk) };
}

/** The node a VE is bound to (label the agents select on), or undefined. */
export function boundNode(ve: VirtualEnvironment): string | undefined {
  return ve.metadata.labels?.[NODE_LABEL] || undefined;
}

export type NodeHealth = { ready: true } | { ready: false; reason: string };

/**
 * Ready = the agent says Ready=True and its heartbeat is younger than `graceMs` by our clock.
 * The controller judges staleness itself too, so placement never waits for the health loop.
 */
export function nodeHealth(node: VENode, nowMs: number, graceMs: number): NodeHealth {
  const ready = findCondition(node.status?.conditions, 'Ready');
  if (ready?.status !== 'True') return { ready: false, reason: ready ? `Ready=${ready.status} (${ready.reason})` : 'never reported Ready' };
  const hb = Date.parse(node.status?.heartbeatTime ?? '');
  if (Number.isNaN(hb)) return { ready: false, reason: 'no heartbeat' };
  if (nowMs - hb > graceMs) return { ready: false, reason: `no heartbeat for ${Math.round((nowMs - hb) / 1000)}s` };
  return { ready: true };
}

/** Whether `labels` carry every key=value of `selector`. */
export function matchesSelector(selector: Record<string, string> | undefined, labels: Record<string, string> | undefined): boolean {
  return Object.entries(selector ?? {}).every(([k, v]) => labels?.[k] === v);
}
