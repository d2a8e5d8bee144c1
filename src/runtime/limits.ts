// VELimits ↔ OCI LinuxResources. One function builds the resources both for the bundle and for
// `runc update -r -`, so a created VE and an updated one hold exactly the same cgroup values.
// Every field runc update knows is written explicitly (-1 = unlimited, defaults for shares,
// period and weight) because runc update treats 0/absent as "leave as is", which would keep a
// limit the spec no longer has. runc 1.1.5 `update -r` cannot change block I/O throttles: the
// runtime writes those cgroup files itself (cgroup-v1.ts / cgroup-v2.ts). RLIMIT_NOFILE of a
// running init cannot be changed for its children at all: it waits for a restart.

import type { VELimits } from './types.js';

export const DEFAULT_CPU_SHARES = 1024;
export const DEFAULT_CPU_PERIOD_US = 100_000;
/** bfq's blkio.bfq.weight default and cgroup v2's io.weight default. */
export const DEFAULT_IO_WEIGHT = 100;

/** A block device as major:minor. */
export interface BlockDevice {
  major: number;
  minor: number;
}

export interface ThrottleDevice extends BlockDevice {
  rate: number;
}

export interface OciResources {
  memory: { limit: number; swap: number; reservation: number };
  cpu: { shares: number; quota: number; period: number; cpus?: string };
  pids: { limit: number };
  blockIO: {
    weight: number;
    throttleReadBpsDevice?: ThrottleDevice[];
    throttleWriteBpsDevice?: ThrottleDevice[];
    throttleReadIOPSDevice?: ThrottleDevice[];
    throttleWriteIOPSDevice?: ThrottleDevice[];
  };
}

export interface OciResourceOptions {
  /** The host's CPUs ("0-1"): written when the VE has no cpuset, so an update widens it again. */
  allCpus?: string;
  /** The device the VE's files live on; throttles go into the bundle only when it is known. */
  device?: BlockDevice;
}

export function ociResources(l: VELimits, o: OciResourceOptions = {}): OciResources {
  const mem = l.memoryBytes;
  const cpus = l.cpuset ?? o.allCpus;
  const out: OciResources = {
    // OCI `swap` is memory+swap (memory.memsw.limit_in_bytes on v1).
    memory: { limit: mem ?? -1, swap: mem === undefined ? -1 : mem + (l.swapBytes ?? 0), reservation: l.memoryGuaranteeBytes ?? -1 },
    cpu: {
      shares: l.cpuShares ?? DEFAULT_CPU_SHARES,
      quota: l.cpuQuotaUs ?? -1,
      period: l.cpuPeriodUs ?? DEFAULT_CPU_PERIOD_US,
      ...(cpus !== undefined ? { cpus } : {}),
    },
    pids: { limit: l.pids ?? -1 },
    blockIO: { weight: l.ioWeight ?? DEFAULT_IO_WEIGHT },
  };
  if (o.device) {
    const dev = (rate: number | undefined): ThrottleDevice[] | undefined => (rate ? [{ ...o.device!, rate }] : undefined);
    const t = { throttleReadBpsDevice: dev(l.readBps), throttleWriteBpsDevice: dev(l.writeBps), throttleReadIOPSDevice: dev(l.readIops), throttleWriteIOPSDevice: dev(l.writeIops) };
    for (const [k, v] of Object.entries(t)) if (v) (out.blockIO as Record<string, unknown>)[k] = v;
  }
  return out;
}

/** The JSON document for `runc update -r -` (throttles are not in it: runc 1.1.5 ignores them). */
export function runcUpdateJson(l: VELimits, o: Pick<OciResourceOptions, 'allCpus'> = {}): string {
  const r = ociResources(l, { allCpus: o.allCpus });
  return JSON.stringify({ memory: r.memory, cpu: r.cpu, pids: r.pids, blockIO: { weight: r.blockIO.weight } });
}

/** Fields the kernel takes while the VE runs. */
export const LIVE_LIMIT_FIELDS = [
  'memoryBytes', 'swapBytes', 'memoryGuaranteeBytes', 'cpuShares', 'cpuQuotaUs', 'cpuPeriodUs', 'cpuset', 'pids',
  'ioWeight', 'readBps', 'writeBps', 'readIops', 'writeIops',
] as const satisfies readonly (keyof VELimits)[];
/** Fields that only a restart of the VE applies (RLIMIT_NOFILE is inherited at fork). */
export const RESTART_LIMIT_FIELDS = ['openFiles'] as const satisfies readonly (keyof VELimits)[];
export type LimitField = (typeof LIVE_LIMIT_FIELDS)[number] | (typeof RESTART_LIMIT_FIELDS)[number];

/**
 * Limits with defaults made explicit, so that "not set" and "set to the default" compare
 * equal (swap undefined ≡ 0, shares undefined ≡ 1024, period undefined ≡ 100000, weight ≡ 100,
 * throttle 0 ≡ none), page rounding as the kernel does it, and cpusets in canonical form.
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
  if (l.memoryGuaranteeBytes !== undefined) out.memoryGuaranteeBytes = pageFloor(l.memoryGuaranteeBytes);
  if (l.cpuQuotaUs !== undefined) out.cpuQuotaUs = l.cpuQuotaUs;
  if (l.pids !== undefined) out.pids = l.pids;
  if (l.cpuset !== undefined) out.cpuset = formatCpuset(parseCpuset(l.cpuset));
  if (l.openFiles !== undefined) out.openFiles = l.openFiles;
  out.ioWeight = l.ioWeight ?? DEFAULT_IO_WEIGHT;
  for (const k of ['readBps', 'writeBps', 'readIops', 'writeIops'] as const) if (l[k]) out[k] = l[k];
  if (l.cpuWeight !== undefined) out.cpuWeight = l.cpuWeight;
  return out;
}

const PAGE = 4096;
function pageFloor(n: number): number {
  return Math.floor(n / PAGE) * PAGE;
}

/** cgroup v2 cpu.weight from v1 shares, the conversion runc and the kernel docs use. */
export function sharesToWeight(shares: number): number {
  return Math.floor(1 + ((shares - 2) * 9999) / 262142);
}
export function weightToShares(weight: number): number {
  return Math.round(2 + ((weight - 1) * 262142) / 9999);
}

/**
 * Fields in which `actual` (read from the kernel) differs from `desired`. A desired openFiles
 * of undefined means "the runtime's default" and never differs. When the kernel reports a raw
 * cgroup v2 cpu.weight, shares are compared in weight space (the conversion is lossy).
 */
export function limitsDiff(desired: VELimits, actual: VELimits, fields: readonly LimitField[] = [...LIVE_LIMIT_FIELDS, ...RESTART_LIMIT_FIELDS]): LimitField[] {
  const d = normalizeLimits(desired);
  const a = normalizeLimits(actual);
  return fields.filter((k) => {
    if (k === 'openFiles' && d.openFiles === undefined) return false;
    if (k === 'cpuShares' && a.cpuWeight !== undefined) return sharesToWeight(d.cpuShares!) !== a.cpuWeight;
    return d[k] !== a[k];
  });
}

/** Whether two limit sets put the same values into the cgroup (the live fields). */
export function sameLimits(a: VELimits, b: VELimits): boolean {
  return limitsDiff(a, b, LIVE_LIMIT_FIELDS).length === 0;
}

/** Whether two limit sets are the same in every field, restart-only ones included. */
export function limitsEqual(a: VELimits, b: VELimits): boolean {
  const x = normalizeLimits(a);
  const y = normalizeLimits(b);
  return [...LIVE_LIMIT_FIELDS, ...RESTART_LIMIT_FIELDS].every((k) => x[k] === y[k]);
}

/** CPU numbers of a cpuset list ("0-2,5" → [0,1,2,5]); throws a plain Error on bad syntax. */
export function parseCpuset(s: string): number[] {
  const out = new Set<number>();
  const text = s.trim();
  if (text === '') return [];
  for (const part of text.split(',')) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part.trim());
    if (!m) throw new Error(`invalid cpuset ${JSON.stringify(s)}: expected a list such as "0-1" or "0,2"`);
    const lo = Number(m[1]);
    const hi = m[2] === undefined ? lo : Number(m[2]);
    if (hi < lo) throw new Error(`invalid cpuset ${JSON.stringify(s)}: range ${part} runs backwards`);
    for (let i = lo; i <= hi; i++) out.add(i);
  }
  return [...out].sort((a, b) => a - b);
}

/** Canonical cpuset list: [0,1,2,5] → "0-2,5". */
export function formatCpuset(cpus: number[]): string {
  const parts: string[] = [];
  for (let i = 0; i < cpus.length; ) {
    let j = i;
    while (j + 1 < cpus.length && cpus[j + 1] === cpus[j]! + 1) j++;
    parts.push(i === j ? `${cpus[i]}` : `${cpus[i]}-${cpus[j]}`);
    i = j + 1;
  }
  return parts.join(',');
}
