// OpenVZ-style beancounters for the VEs of this node. One refresh pass (one timer for the whole
// node, not one per VE) reads every running VE's usage through the runtime, turns it into
// beancounter rows, updates the Prometheus gauges, and writes `status.beancounters` only when
// the rows changed and at most once per `minPublishMs` per VE, so a thousand idle VEs cost
// the API server nothing and a thousand busy ones a bounded rate.
//
// Rows and units (as /proc/user_beancounters): physpages, swappages, oomguarpages in 4 KiB
// pages; diskspace in 1 KiB blocks; numproc, numfile, numtcpsock, numothersock, diskinodes as
// counts. kubevz adds `cpu` (held = millicores over the last refresh, barrier = units, limit =
// the cap in millicores, failcnt = throttled CFS periods) and `netrxbytes`/`nettxbytes`
// (totals). Failure counts: physpages = memory.failcnt + memory.memsw.failcnt (v1) /
// memory.events max+oom (v2), never below the OOM-kill count (kernel 6.18 leaves the v1
// failcnt files at 0 even across OOM kills); oomguarpages = OOM kills; numproc = pids.events
// max; cpu = throttled periods. numfile, sockets and disk have no kernel failure counter: their
// failcnt stays 0. Sockets are accounted, never enforced: numtcpsock = TCP sockets in use (IPv4
// and IPv6: bound, listening, connected) in the VE's netns, numothersock = every other socket
// there (UNIX, UDP, raw, netlink, packet, TCP not yet bound). Counters are read every pass;
// the cgroup limits among them (physpages, swappages, numproc limit) every 10 s
// (LIMITS_MAX_AGE_MS) and on the pass after the agent reads limits back, which it does after
// every change it applies; disk figures every diskIntervalMs.

import type { Beancounter, VirtualEnvironment } from '../api/types.js';
import { errorMessage } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { ResourceClient } from '../core/resource-client.js';
import type { VEDiskUsage, VELimits, VERuntime, VEUsage } from '../runtime/index.js';
import type { BeancounterMetrics } from './metrics.js';
import { limitsFromSpec } from './ve-config.js';

const PAGE = 4096;
export const UNLIMITED = 'unlimited';

export interface CpuRate {
  /** CPU used since the previous refresh, in millicores (1000 = one CPU busy). */
  millicores: number;
  maxMillicores: number;
}

function pages(bytes: number): number {
  return Math.ceil(bytes / PAGE);
}

/** Beancounter rows from one usage reading. Pure: the refresher adds what needs history. */
export function beancountersFrom(u: VEUsage, o: { limits?: VELimits; disk?: VEDiskUsage; cpu?: CpuRate; maxProcesses?: number } = {}): Beancounter[] {
  const l = o.limits ?? {};
  const rows: Beancounter[] = [];
  const lim = (n: number | undefined) => (n === undefined ? UNLIMITED : n);
  const memLimit = u.memory.limit === undefined ? UNLIMITED : pages(u.memory.limit);
  const guarantee = l.memoryGuaranteeBytes === undefined ? 0 : pages(l.memoryGuaranteeBytes);
  rows.push({ resource: 'physpages', held: pages(u.memory.held), maxheld: pages(u.memory.maxheld ?? u.memory.held), barrier: guarantee, limit: memLimit, failcnt: u.memory.failcnt });
  if (u.swap) {
    const sl = u.swap.limit === undefined ? UNLIMITED : pages(u.swap.limit);
    rows.push({ resource: 'swappages', held: pages(u.swap.held), maxheld: pages(u.swap.maxheld ?? u.swap.held), barrier: 0, limit: sl, failcnt: u.swap.failcnt });
  }
  rows.push({ resource: 'oomguarpages', held: pages(u.memory.held), maxheld: pages(u.memory.maxheld ?? u.memory.held), barrier: guarantee, limit: UNLIMITED, failcnt: u.memory.oomKills });
  const procMax = Math.max(u.processes.held, u.processes.maxheld ?? 0, o.maxProcesses ?? 0);
  rows.push({ resource: 'numproc', held: u.processes.held, maxheld: procMax, barrier: lim(u.processes.limit), limit: lim(u.processes.limit), failcnt: u.processes.failcnt });
  if (u.openFiles !== undefined) rows.push({ resource: 'numfile', held: u.openFiles, maxheld: u.openFiles, barrier: lim(l.openFiles), limit: lim(l.openFiles), failcnt: 0 });
  if (u.sockets) {
    rows.push({ resource: 'numtcpsock', held: u.sockets.tcp, maxheld: u.sockets.tcp, barrier: UNLIMITED, limit: UNLIMITED, failcnt: 0 });
    rows.push({ resource: 'numothersock', held: u.sockets.other, maxheld: u.sockets.other, barrier: UNLIMITED, limit: UNLIMITED, failcnt: 0 });
  }
  const quota = l.cpuQuotaUs === undefined ? UNLIMITED : Math.round((l.cpuQuotaUs / (l.cpuPeriodUs ?? 100_000)) * 1000);
  rows.push({ resource: 'cpu', held: o.cpu?.millicores ?? 0, maxheld: o.cpu?.maxMillicores ?? 0, barrier: l.cpuShares ?? 1024, limit: quota, failcnt: u.cpu.throttledPeriods });
  if (o.disk) {
    const used = Math.ceil((o.disk.usedBytes ?? 0) / 1024);
    rows.push({ resource: 'diskspace', held: used, maxheld: used, barrier: Math.floor(o.disk.sizeBytes / 1024), limit: Math.floor(o.disk.sizeBytes / 1024), failcnt: 0 });
    rows.push({ resource: 'diskinodes', held: o.disk.inodesUsed ?? 0, maxheld: o.disk.inodesUsed ?? 0, barrier: o.disk.inodes, limit: o.disk.inodes, failcnt: 0 });
  }
  if (u.network) {
    rows.push({ resource: 'netrxbytes', held: u.network.rxBytes, maxheld: u.network.rxBytes, barrier: UNLIMITED, limit: UNLIMITED, failcnt: 0 });
    rows.push({ resource: 'nettxbytes', held: u.network.txBytes, maxheld: u.network.txBytes, barrier: UNLIMITED, limit: UNLIMITED, failcnt: 0 });
  }
  return rows;
}

/** Whether two row lists say the same, field by field (cheaper than a JSON string per VE per pass). */
function sameRows(a: readonly Beancounter[], b: readonly Beancounter[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!;
    const y = b[i]!;
    if (x.resource !== y.resource || x.held !== y.held || x.maxheld !== y.maxheld || x.barrier !== y.barrier || x.limit !== y.limit || x.failcnt !== y.failcnt) return false;
  }
  return true;
}

/** The limits beancounters show besides those read from the cgroup each pass. */
function limitsOf(ve: VirtualEnvironment): VELimits | undefined {
  let limits: VELimits | undefined;
  try {
    limits = limitsFromSpec(ve);
  } catch {
    return undefined; // an invalid spec is reported by the reconciler
  }
  // numfile shows what init really has (openFiles may wait for a restart), not the spec.
  const appliedNofile = (ve.status?.appliedResources as { openFiles?: unknown } | undefined)?.openFiles;
  if (typeof appliedNofile === 'number') limits.openFiles = appliedNofile;
  return limits;
}

interface VEState {
  cpuUs: number;
  at: number;
  maxMillicores: number;
  maxProcesses: number;
  publishedAt: number;
  /** The rows last written to status (or found there). */
  published: readonly Beancounter[];
  /** The last disk reading and when it was taken (see diskIntervalMs). */
  disk?: VEDiskUsage;
  diskAt: number;
  /** The VE object the limits were computed from: the informer hands out a new one on change. */
  limitsOf?: VirtualEnvironment;
  limits?: VELimits;
}

export interface BeancounterRefresherOptions {
  runtime: VERuntime;
  client: ResourceClient<VirtualEnvironment>;
  /** The VEs of this node (the agent's informer cache). */
  ves: () => VirtualEnvironment[];
  log: Logger;
  metrics?: BeancounterMetrics;
  /** How often the pass runs [2000]. */
  intervalMs?: number;
  /**
   * How often each VE's disk figures are read [10000]. Disk usage moves slowly, and reading it
   * (the disk record and the mount table) cost more than all cgroup counters of a pass together.
   */
  diskIntervalMs?: number;
  /** At most one status write per VE this often [5000]. */
  minPublishMs?: number;
  now?: () => number;
}

export interface RefreshResult {
  read: number;
  published: number;
  failed: number;
}

export class BeancounterRefresher {
  private readonly state = new Map<string, VEState>();
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<RefreshResult> | undefined;
  private readonly now: () => number;

  constructor(private readonly o: BeancounterRefresherOptions) {
    this.now = o.now ?? (() => performance.now());
  }

  start(): void {
    this.timer = setInterval(() => void this.refresh(), this.o.intervalMs ?? 2000);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.running?.catch(() => undefined);
  }

  /** One pass over every running VE of the node; passes never overlap. */
  refresh(): Promise<RefreshResult> {
    this.running ??= this.pass().finally(() => (this.running = undefined));
    return this.running;
  }

  private async pass(): Promise<RefreshResult> {
    const ves = this.o.ves().filter((ve) => ve.status?.phase === 'Running' && ve.status.initPid && ve.metadata.uid && !ve.metadata.deletionTimestamp);
    const live = new Set(ves.map((ve) => ve.metadata.uid!));
    for (const uid of this.state.keys()) {
      if (!live.has(uid)) this.state.delete(uid);
    }
    this.o.metrics?.retain(ves.map((ve) => ({ namespace: ve.metadata.namespace, name: ve.metadata.name })));
    const out: RefreshResult = { read: 0, published: 0, failed: 0 };
    await Promise.all(
      ves.map(async (ve) => {
        try {
          const published = await this.refreshOne(ve);
          out.read++;
          if (published) out.published++;
        } catch (err) {
          out.failed++;
          this.o.log.debug({ ve: `${ve.metadata.namespace}/${ve.metadata.name}`, err: errorMessage(err) }, 'beancounter refresh failed');
        }
      }),
    );
    return out;
  }

  private async refreshOne(ve: VirtualEnvironment): Promise<boolean> {
    const uid = ve.metadata.uid!;
    const prev = this.state.get(uid);
    const diskDue = !prev || this.now() - prev.diskAt >= (this.o.diskIntervalMs ?? 10_000);
    const [usage, disk] = await Promise.all([this.o.runtime.readUsage(uid, ve.status!.initPid), diskDue ? this.o.runtime.diskUsage(uid).catch(() => undefined) : prev.disk]);
    const now = this.now();
    let millicores = 0;
    if (prev && now > prev.at && usage.cpu.usageUs >= prev.cpuUs) millicores = Math.round(((usage.cpu.usageUs - prev.cpuUs) / 1000 / (now - prev.at)) * 1000);
    const st: VEState = prev ?? { cpuUs: 0, at: 0, maxMillicores: 0, maxProcesses: 0, publishedAt: -Infinity, published: ve.status?.beancounters ?? [], diskAt: 0 };
    if (diskDue) {
      st.disk = disk;
      st.diskAt = now;
    }
    st.cpuUs = usage.cpu.usageUs;
    st.at = now;
    st.maxMillicores = Math.max(st.maxMillicores, millicores);
    st.maxProcesses = Math.max(st.maxProcesses, usage.processes.held);
    this.state.set(uid, st);

    if (st.limitsOf !== ve) {
      st.limitsOf = ve;
      st.limits = limitsOf(ve);
    }
    const limits = st.limits;
    const rows = beancountersFrom(usage, { limits, disk, cpu: prev ? { millicores, maxMillicores: st.maxMillicores } : undefined, maxProcesses: st.maxProcesses });
    this.o.metrics?.set({ namespace: ve.metadata.namespace, name: ve.metadata.name }, rows);

    if (sameRows(rows, st.published) || now - st.publishedAt < (this.o.minPublishMs ?? 5000)) return false;
    await this.o.client.patchStatus(ve.metadata.name, ve.metadata.namespace, { beancounters: rows });
    st.published = rows;
    st.publishedAt = now;
    return true;
  }
}
