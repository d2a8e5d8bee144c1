// Pre-flight of a migration (docs/adr/004-migration.md, phase Scheduling): is the VE movable, which
// node takes it, can that node restore what the source dumps, and how long will the VE be frozen.
// Pure given the VE, the migration and the node caches, so the controller can run it again after a
// crash and tests can check every refusal.

import { controllerMayFail } from '../api/migration-phases.js';
import { MIGRATION_ANNOTATION, type VEMigration, type VENode, type VirtualEnvironment } from '../api/types.js';
import { add, formatAmounts, matchesSelector, nodeAllocatable, nodeHealth, veRequests, ZERO, type Amounts } from './capacity.js';

/** Fixed part of a stop-and-copy downtime (freeze, dump, restore, network up), ms. */
export const DOWNTIME_BASE_MS = 300;
/** Memory moves at about this rate when frozen (dump + send + restore), bytes per second. */
export const DOWNTIME_BYTES_PER_SEC = 100 * 1000 * 1000;
export const DEFAULT_MAX_DOWNTIME_MS = 5000;

export type PreflightResult =
  | { ok: true; sourceNode: string; targetNode: string; veUid: string; estimatedDowntimeMs: number; checks: string[] }
  | { ok: false; reason: string; message: string; estimatedDowntimeMs?: number; targetNode?: string; sourceNode?: string };

export interface PreflightInput {
  m: VEMigration;
  ve: VirtualEnvironment | undefined;
  nodes: VENode[];
  /** What each node has allotted (the scheduler's view). */
  allocated: Map<string, { amounts: Amounts; ves: number }>;
  now: number;
  nodeGraceMs: number;
}

/** Memory the VE holds now, in bytes (beancounter `memory` in bytes, or `physpages` in 4 KiB pages). */
export function memoryHeldBytes(ve: VirtualEnvironment): number {
  const bc = ve.status?.beancounters ?? [];
  const mem = bc.find((b) => b.resource === 'memory');
  if (mem?.held !== undefined) return mem.held;
  const pages = bc.find((b) => b.resource === 'physpages');
  return pages?.held !== undefined ? pages.held * 4096 : 0;
}

export function estimateDowntimeMs(ve: VirtualEnvironment): number {
  return Math.round(DOWNTIME_BASE_MS + (memoryHeldBytes(ve) / DOWNTIME_BYTES_PER_SEC) * 1000);
}

function ipv4(text: string): number | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(text);
  if (!m) return undefined;
  const parts = m.slice(1).map(Number);
  if (parts.some((p) => p > 255)) return undefined;
  return ((parts[0]! << 24) >>> 0) + (parts[1]! << 16) + (parts[2]! << 8) + parts[3]!;
}

/** Whether `address` (with or without /prefix) lies in `cidr`; undefined when either is not IPv4. */
export function inSubnet(address: string, cidr: string): boolean | undefined {
  const ip = ipv4(address.split('/')[0]!);
  const [net, bitsText] = cidr.split('/');
  const base = ipv4(net ?? '');
  const bits = Number(bitsText);
  if (ip === undefined || base === undefined || !Number.isInteger(bits) || bits < 0 || bits > 32) return undefined;
  const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
  return ((ip & mask) >>> 0) === ((base & mask) >>> 0);
}

type Check = { ok: true; note: string } | { ok: false; reason: string; message: string };

/** Whether `target` can take `ve` from `source` (everything but the downtime estimate). */
export function checkTarget(i: PreflightInput, ve: VirtualEnvironment, source: VENode | undefined, target: VENode, explicit: boolean): Check[] {
  const live = (i.m.spec.mode ?? 'live') === 'live';
  const name = target.metadata.name;
  const out: Check[] = [];
  const health = nodeHealth(target, i.now, i.nodeGraceMs);
  out.push(health.ready ? { ok: true, note: `target node ${name} is Ready` } : { ok: false, reason: 'TargetNotReady', message: `target node ${name} is not ready: ${health.reason}` });
  out.push(target.spec?.unschedulable ? { ok: false, reason: 'TargetUnschedulable', message: `target node ${name} is cordoned (spec.unschedulable); uncordon it or pick another --to node` } : { ok: true, note: `target node ${name} is schedulable` });
  if (!explicit && !matchesSelector(ve.spec.nodeSelector, target.metadata.labels)) {
    out.push({ ok: false, reason: 'NodeSelectorMismatch', message: `node ${name} does not match the VE's spec.nodeSelector` });
  }
  if (live) {
    const sf = source?.status?.features ?? {};
    const tf = target.status?.features ?? {};
    if (!sf.criu || !tf.criu) {
      const which = [!sf.criu ? `source node ${source?.metadata.name ?? '(unknown)'}` : '', !tf.criu ? `target node ${name}` : ''].filter(Boolean).join(' and ');
      // The node agent publishes why (its runtime's own reason), which says what to fix there.
      const why = [!sf.criu ? sf.reasons?.criu : undefined, !tf.criu ? tf.reasons?.criu : undefined].filter(Boolean).join('; ');
      out.push({ ok: false, reason: 'CheckpointUnsupported', message: `${which} cannot checkpoint/restore (VENode status.features.criu is not true${why ? `: ${why}` : ''}); install CRIU >= 4.2 there, or use mode offline (kvz migrate --offline)` });
    } else out.push({ ok: true, note: 'CRIU usable on both nodes' });
    if (sf.cgroupVersion !== tf.cgroupVersion) {
      out.push({ ok: false, reason: 'CgroupVersionMismatch', message: `source uses cgroup ${sf.cgroupVersion ?? '(unknown)'} and target ${name} cgroup ${tf.cgroupVersion ?? '(unknown)'}; a checkpoint cannot be restored across cgroup versions: use mode offline` });
    } else out.push({ ok: true, note: `same cgroup version (${tf.cgroupVersion ?? 'unknown'})` });
    if (sf.criuVersion !== tf.criuVersion) {
      out.push({ ok: false, reason: 'CriuVersionMismatch', message: `source has CRIU ${sf.criuVersion ?? '(unknown)'} and target ${name} CRIU ${tf.criuVersion ?? '(unknown)'}; install the same CRIU version on both, or use mode offline` });
    } else out.push({ ok: true, note: `same CRIU version (${tf.criuVersion ?? 'unknown'})` });
  }
  const subnet = target.status?.nodeInfo?.subnet;
  if ((ve.spec.network?.mode ?? 'bridged') === 'bridged' && subnet) {
    const outside = (ve.status?.addresses ?? []).filter((a) => inSubnet(a, subnet) === false);
    out.push(
      outside.length
        ? { ok: false, reason: 'SubnetMismatch', message: `address ${outside.join(', ')} is outside target node ${name}'s bridge subnet ${subnet}; a bridged VE keeps its addresses, so pick a node on the same subnet` }
        : { ok: true, note: `addresses inside target subnet ${subnet}` },
    );
  }
  let req: Amounts = ZERO;
  try {
    req = veRequests(ve);
  } catch {
    /* a malformed quantity counts as zero, as in the scheduler */
  }
  const cap = nodeAllocatable(target);
  const used = i.allocated.get(name)?.amounts ?? ZERO;
  const after = add(used, req);
  const short = (['memory', 'cpu', 'disk'] as const).filter((r) => req[r] > 0 && after[r] > cap[r]);
  if (short.length) {
    const f = formatAmounts(req);
    const free = formatAmounts({ cpu: Math.max(0, cap.cpu - used.cpu), memory: Math.max(0, cap.memory - used.memory), disk: Math.max(0, cap.disk - used.disk) });
    out.push({ ok: false, reason: 'InsufficientCapacity', message: `target node ${name} has insufficient ${short.join(', ')} (VE needs cpu ${f.cpu}, memory ${f.memory}, disk ${f.disk}; free cpu ${free.cpu}, memory ${free.memory}, disk ${free.disk})` });
  } else out.push({ ok: true, note: `capacity on ${name}` });
  return out;
}

function fullness(i: PreflightInput, ve: VirtualEnvironment, node: VENode): number {
  let req: Amounts = ZERO;
  try {
    req = veRequests(ve);
  } catch {
    /* zero */
  }
  const cap = nodeAllocatable(node);
  const after = add(i.allocated.get(node.metadata.name)?.amounts ?? ZERO, req);
  const frac = (r: keyof Amounts) => (cap[r] > 0 ? after[r] / cap[r] : 0);
  return Math.max(frac('memory'), frac('cpu'), frac('disk'));
}

/** Validation, target choice and pre-flight for `m`; touches nothing. */
export function preflight(i: PreflightInput): PreflightResult {
  const { m, ve } = i;
  const live = (m.spec.mode ?? 'live') === 'live';
  if (!controllerMayFail(m.status?.phase)) return { ok: false, reason: 'Internal', message: 'pre-flight runs only before Restoring' };
  if (!ve) return { ok: false, reason: 'VENotFound', message: `virtualenvironment "${m.spec.ve}" not found in namespace "${m.metadata.namespace}"` };
  if (ve.metadata.deletionTimestamp) return { ok: false, reason: 'VETerminating', message: `virtualenvironment "${ve.metadata.name}" is being deleted` };
  const sourceNode = ve.status?.nodeName;
  if (!sourceNode) return { ok: false, reason: 'VENotScheduled', message: `virtualenvironment "${ve.metadata.name}" is not on any node yet (status.nodeName is empty); there is nothing to migrate` };
  if (!ve.metadata.uid) return { ok: false, reason: 'VENotFound', message: `virtualenvironment "${ve.metadata.name}" has no uid` };
  const holder = ve.metadata.annotations?.[MIGRATION_ANNOTATION];
  if (holder && holder !== m.metadata.name) {
    return { ok: false, reason: 'AlreadyMigrating', message: `virtualenvironment "${ve.metadata.name}" is being moved by VEMigration "${holder}"; wait for it to end (kubectl get vem ${holder})` };
  }
  // Once this migration claimed the VE, its phase says Migrating: judge by what it was before.
  const phase = ve.status?.phase === 'Migrating' && holder === m.metadata.name ? 'Running' : ve.status?.phase;
  if (live && phase !== 'Running') {
    return { ok: false, reason: 'VENotRunning', message: `live migration needs a Running VE; "${ve.metadata.name}" is ${phase ?? 'Pending'}: start it, or use mode offline` };
  }
  if (!live && !['Running', 'Stopped', 'Suspended'].includes(phase ?? '')) {
    return { ok: false, reason: 'VENotSettled', message: `virtualenvironment "${ve.metadata.name}" is ${phase ?? 'Pending'}; offline migration needs it Running, Stopped or Suspended` };
  }
  const source = i.nodes.find((n) => n.metadata.name === sourceNode);
  const estimatedDowntimeMs = estimateDowntimeMs(ve);

  let target: VENode;
  let checks: Check[];
  if (m.spec.targetNode) {
    if (m.spec.targetNode === sourceNode) return { ok: false, reason: 'SameNode', message: `virtualenvironment "${ve.metadata.name}" already runs on node ${sourceNode}`, sourceNode };
    const t = i.nodes.find((n) => n.metadata.name === m.spec.targetNode);
    if (!t) return { ok: false, reason: 'TargetNotFound', message: `no VENode "${m.spec.targetNode}" (is a node agent running there? \`kubectl get venodes\`)`, sourceNode };
    target = t;
    checks = checkTarget(i, ve, source, t, true);
    const bad = checks.find((c): c is Extract<Check, { ok: false }> => !c.ok);
    if (bad) return { ...bad, ok: false, sourceNode, targetNode: t.metadata.name, estimatedDowntimeMs };
  } else {
    const fits: { node: VENode; checks: Check[]; score: number }[] = [];
    const refusals: string[] = [];
    for (const n of i.nodes) {
      if (n.metadata.name === sourceNode) continue;
      const c = checkTarget(i, ve, source, n, false);
      const bad = c.find((x): x is Extract<Check, { ok: false }> => !x.ok);
      if (bad) refusals.push(`${n.metadata.name}: ${bad.reason}`);
      else fits.push({ node: n, checks: c, score: fullness(i, ve, n) });
    }
    if (!fits.length) {
      const why = refusals.length ? refusals.join('; ') : 'there is no other node';
      return { ok: false, reason: 'NoTargetNode', message: `no node can take virtualenvironment "${ve.metadata.name}" (${why})`, sourceNode, estimatedDowntimeMs };
    }
    fits.sort((a, b) => a.score - b.score || a.node.metadata.name.localeCompare(b.node.metadata.name));
    target = fits[0]!.node;
    checks = fits[0]!.checks;
  }
  const maxDowntimeMs = m.spec.maxDowntimeMs ?? DEFAULT_MAX_DOWNTIME_MS;
  const notes = checks.map((c) => (c.ok ? c.note : ''));
  if (live) {
    if (estimatedDowntimeMs > maxDowntimeMs && !m.spec.allowDowntimeOverrun) {
      return {
        ok: false,
        reason: 'DowntimeEstimateExceeded',
        message: `estimated downtime ${estimatedDowntimeMs} ms (${Math.round(memoryHeldBytes(ve) / 1048576)} MiB of memory at ~100 MB/s) exceeds maxDowntimeMs ${maxDowntimeMs}; raise maxDowntimeMs, set allowDowntimeOverrun, or use mode offline`,
        sourceNode,
        targetNode: target.metadata.name,
        estimatedDowntimeMs,
      };
    }
    notes.push(estimatedDowntimeMs > maxDowntimeMs ? `estimated downtime ${estimatedDowntimeMs} ms exceeds ${maxDowntimeMs} ms (allowDowntimeOverrun)` : `estimated downtime ${estimatedDowntimeMs} ms within ${maxDowntimeMs} ms`);
  }
  return { ok: true, sourceNode, targetNode: target.metadata.name, veUid: ve.metadata.uid, estimatedDowntimeMs, checks: notes.filter(Boolean) };
}
