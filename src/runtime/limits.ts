// VELimits ↔ OCI LinuxResources. One function builds the resources both for the bundle and for
// `runc update -r -`, so a created VE and an updated one hold exactly the same cgroup values.
// Every field is written explicitly (-1 = unlimited, defaults for shares/period) because runc
// update treats 0/absent as "leave as is", which would keep a limit the spec no longer has.

import type { VELimits } from './types.js';

export const DEFAULT_CPU_SHARES = 1024;
export const DEFAULT_CPU_PERIOD_US = 100_000;

export interface OciResources {
  memory: { limit: number; swap: number };
  cpu: { shares: number; quota: number; period: number };
  pids: { limit: number };
}

export function ociResources(l: VELimits): OciResources {
  const mem = l.memoryBytes;
  return {
    // OCI `swap` is memory+swap (memory.memsw.limit_in_bytes on v1).
    memory: { limit: mem ?? -1, swap: mem === undefined ? -1 : mem + (l.swapBytes ?? 0) },
    cpu: {
      shares: l.cpuShares ?? DEFAULT_CPU_SHARES,
      quota: l.cpuQuotaUs ?? -1,
      period: l.cpuPeriodUs ?? DEFAULT_CPU_PERIOD_US,
    },
    pids: { limit: l.pids ?? -1 },
  };
}

/** The JSON document for `runc update -r -`. */
export function runcUpdateJson(l: VELimits): string {
  return JSON.stringify(ociResources(l));
}

/**
 * Limits with defaults made explicit, so that "not set" and "set to the default" compare
 * equal (swap undefined ≡ 0, shares undefined ≡ 1024, period undefined ≡ 100000).
 */
export function normalizeLimits(l: VELimits): VELimits {
  const out: VELimits = {
    cpuShares: l.cpuShares ?? DEFAULT_CPU_SHARES,
    cpuPeriodUs: l.cpuPeriodUs ?? DEFAULT_CPU_PERIOD_US,
  };
  if (l.memoryBytes !== undefined) {
    // The kernel rounds memory limits down to whole pages.
    const mem = pageFloor(l.memoryBytes);
    out.memoryBytes = mem;
    out.swapBytes = pageFloor(l.memoryBytes + (l.swapBytes ?? 0)) - mem;
  }
  if (l.cpuQuotaUs !== undefined) out.cpuQuotaUs = l.cpuQuotaUs;
  if (l.pids !== undefined) out.pids = l.pids;
  return out;
}

const PAGE = 4096;
function pageFloor(n: number): number {
  return Math.floor(n / PAGE) * PAGE;
}

/** Whether two limit sets put the same values into the cgroup. */
export function sameLimits(a: VELimits, b: VELimits): boolean {
  const x = normalizeLimits(a);
  const y = normalizeLimits(b);
  const keys: (keyof VELimits)[] = ['memoryBytes', 'swapBytes', 'cpuShares', 'cpuQuotaUs', 'cpuPeriodUs', 'pids'];
  return keys.every((k) => x[k] === y[k]);
}
