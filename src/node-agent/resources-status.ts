// What the VE's status says about its resources: `appliedResources` (what the host holds, in
// the spec's shape, every key always present so a merge patch never leaves a stale one),
// `pendingResources` (each spec field the host does not hold yet, with the reason) and the
// `ResourcesApplied` condition. GitOps tools then never see a change silently ignored.

import type { Condition, VEStatus } from '../api/types.js';
import { setCondition } from '../core/conditions.js';
import { limitsDiff, RESTART_LIMIT_FIELDS, type LimitField, type VELimits } from '../runtime/index.js';

export interface ResourcesReport {
  applied: Record<string, unknown>;
  pending: { field: string; reason: string }[];
  condition: { status: Condition['status']; reason: string; message: string };
}

/** The spec field each runtime limit comes from. */
export const SPEC_FIELD: Record<LimitField, string> = {
  memoryBytes: 'spec.resources.memory.limit',
  swapBytes: 'spec.resources.memory.swap',
  memoryGuaranteeBytes: 'spec.resources.memory.guarantee',
  cpuShares: 'spec.resources.cpu.units',
  cpuQuotaUs: 'spec.resources.cpu.limit',
  cpuPeriodUs: 'spec.resources.cpu.limit',
  cpuset: 'spec.resources.cpu.cpuset',
  pids: 'spec.resources.processes',
  openFiles: 'spec.resources.openFiles',
  ioWeight: 'spec.resources.disk.ioWeight',
  readBps: 'spec.resources.disk.readBps',
  writeBps: 'spec.resources.disk.writeBps',
  readIops: 'spec.resources.disk.readIops',
  writeIops: 'spec.resources.disk.writeIops',
};

/** Bytes as the spec would write them: "256Mi" when exact, else the plain number. */
export function formatBytes(n: number | undefined): string | number {
  if (n === undefined) return 'unlimited';
  for (const [suffix, mult] of [['Ti', 2 ** 40], ['Gi', 2 ** 30], ['Mi', 2 ** 20], ['Ki', 2 ** 10]] as const) {
    if (n >= mult && n % mult === 0) return `${n / mult}${suffix}`;
  }
  return n;
}

/** The host's limits in the spec's shape. */
export function appliedResources(a: VELimits): Record<string, unknown> {
  const cpuLimit = a.cpuQuotaUs === undefined ? 'unlimited' : `${Math.round((a.cpuQuotaUs / (a.cpuPeriodUs ?? 100_000)) * 1000) / 10}%`;
  return {
    cpu: { units: a.cpuShares ?? 1024, limit: cpuLimit, cpuset: a.cpuset ?? 'all' },
    memory: { limit: formatBytes(a.memoryBytes), swap: a.memoryBytes === undefined ? 'unlimited' : formatBytes(a.swapBytes ?? 0), guarantee: a.memoryGuaranteeBytes === undefined ? 'none' : formatBytes(a.memoryGuaranteeBytes) },
    processes: a.pids ?? 'unlimited',
    openFiles: a.openFiles ?? 'unknown',
    disk: {
      ioWeight: a.ioWeight ?? 100,
      readBps: a.readBps ?? 'unlimited',
      writeBps: a.writeBps ?? 'unlimited',
      readIops: a.readIops ?? 'unlimited',
      writeIops: a.writeIops ?? 'unlimited',
    },
  };
}

function show(field: LimitField, l: VELimits): string {
  const v = l[field];
  if (v === undefined && field === 'ioWeight') return '100 (the default)';
  if (v === undefined) return field === 'cpuset' ? 'all CPUs' : 'unlimited';
  return String(v);
}

export interface ReportOptions {
  /** This node's hard RLIMIT_NOFILE: openFiles above it is capped at start. */
  nofileHard?: number;
}

/** Compares the limits the spec asks for with those the host holds. */
export function resourcesReport(desired: VELimits, actual: VELimits, o: ReportOptions = {}): ResourcesReport {
  const restartOnly = new Set<string>(RESTART_LIMIT_FIELDS);
  const seen = new Set<string>();
  const pending: ResourcesReport['pending'] = [];
  let restart = false;
  for (const f of limitsDiff(desired, actual)) {
    const field = SPEC_FIELD[f];
    if (seen.has(field)) continue;
    seen.add(field);
    if (f === 'openFiles' && o.nofileHard !== undefined && (desired.openFiles ?? 0) > o.nofileHard) {
      pending.push({ field, reason: `HostLimit: this node's hard RLIMIT_NOFILE is ${o.nofileHard}; the VE runs with ${show(f, actual)}, not ${show(f, desired)}` });
    } else if (restartOnly.has(f)) {
      restart = true;
      pending.push({ field, reason: `RestartRequired: set at the VE's start (RLIMIT_NOFILE is inherited from init); restart the VE to go from ${show(f, actual)} to ${show(f, desired)}` });
    } else {
      pending.push({ field, reason: `NotApplied: the host holds ${show(f, actual)}, not ${show(f, desired)}; see the node agent's log` });
    }
  }
  const condition: ResourcesReport['condition'] =
    pending.length === 0
      ? { status: 'True', reason: 'Applied', message: 'the host holds every declared resource limit' }
      : { status: 'False', reason: restart ? 'RestartRequired' : 'NotApplied', message: pending.map((p) => `${p.field}: ${p.reason}`).join('; ') };
  return { applied: appliedResources(actual), pending, condition };
}

/** Puts a report into a status being built (conditions keep their transition times). */
export function withResources(status: VEStatus, r: ResourcesReport, generation: number, now = new Date()): VEStatus {
  return {
    ...status,
    appliedResources: r.applied,
    pendingResources: r.pending,
    conditions: setCondition(status.conditions, { type: 'ResourcesApplied', ...r.condition, observedGeneration: generation }, now),
  };
}
