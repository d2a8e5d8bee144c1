// The VE's disk as the agent sees it: spec → runtime disk config (size, inodes, quota), the
// clone source resolved to a uid on this node (with the refusals a clone needs), and what the
// status says (status.disk, DiskResized condition, pendingResources) — never a silent no-op.
//
// Decisions: the disk grows online where the node can (CAP_SYS_RESOURCE), else at the next
// stop/start (DiskResized=False RestartRequired). It never shrinks: below the used space the
// request is refused (ShrinkRefused, naming used vs requested), above it as unsupported
// (ShrinkUnsupported). Inodes are fixed by mkfs at creation (ext4 adds more only as the disk
// grows by whole block groups): asking for more later is reported InodesFixed, not applied.

import { parseBytes } from '../api/quantity.js';
import { NODE_LABEL, type Condition, type VEStatus, type VirtualEnvironment } from '../api/types.js';
import { setCondition } from '../core/conditions.js';
import { KvzError, TerminalError } from '../core/errors.js';
import type { ResourceClient } from '../core/resource-client.js';
import type { NodeFeature, VEConfig, VEDiskConfig, VEDiskUsage, VERuntime } from '../runtime/index.js';

export const DEFAULT_DISK_SPACE = 2 * 1024 ** 3;
const FIELD_SPACE = 'spec.resources.disk.space';
const FIELD_INODES = 'spec.resources.disk.inodes';
const FIELD_QUOTA = 'spec.resources.disk.quotaUgidLimit';

export function diskFromSpec(ve: VirtualEnvironment): VEDiskConfig {
  const d = ve.spec.resources?.disk;
  let sizeBytes = DEFAULT_DISK_SPACE;
  if (d?.space !== undefined) {
    try {
      sizeBytes = parseBytes(d.space, FIELD_SPACE);
    } catch (err) {
      throw new TerminalError((err as Error).message, { cause: err });
    }
  }
  const out: VEDiskConfig = { sizeBytes };
  if (d?.inodes !== undefined) out.inodes = d.inodes;
  if (d?.quotaUgidLimit) out.quotaUgidLimit = d.quotaUgidLimit;
  return out;
}

/** Refuses what this node cannot do, naming the field. */
export function checkDiskFeatures(disk: VEDiskConfig, features: Record<string, NodeFeature>, nodeName: string): void {
  const q = features.diskQuotaUgid;
  if ((disk.quotaUgidLimit ?? 0) > 0 && !q?.available) {
    throw new TerminalError(`${FIELD_QUOTA}: second-level (per-user/group) quota is not available on node ${nodeName}: ${q?.reason ?? 'not detected'}; set it to 0 or remove it`);
  }
}

/** Bytes as a spec would write them ("2Gi") when exact, else the number. */
export function showBytes(n: number): string {
  for (const [s, m] of [['Ti', 2 ** 40], ['Gi', 2 ** 30], ['Mi', 2 ** 20], ['Ki', 2 ** 10]] as const) {
    if (n >= m && n % m === 0) return `${n / m}${s}`;
  }
  if (n >= 2 ** 20) return `${(n / 2 ** 20).toFixed(1)}Mi`;
  return String(n);
}

/**
 * For a VE whose disk does not exist yet and whose spec says cloneFrom: the source's uid, after
 * the checks that make a clone safe. Not-yet-there sources are retryable; the rest is terminal.
 */
export async function resolveCloneSource(o: {
  ve: VirtualEnvironment;
  config: VEConfig;
  client: ResourceClient<VirtualEnvironment>;
  runtime: VERuntime;
  nodeName: string;
}): Promise<string> {
  const { ve, config } = o;
  const name = ve.spec.cloneFrom!;
  const ns = ve.metadata.namespace;
  if (name === ve.metadata.name) throw new TerminalError('spec.cloneFrom: a VE cannot be cloned from itself');
  const src = await o.client.get(name, ns);
  if (!src?.metadata.uid) throw new KvzError('NotFound', `spec.cloneFrom: virtualenvironment "${name}" not found in namespace "${ns}"; create it first (the clone waits for it)`);
  const srcNode = src.metadata.labels?.[NODE_LABEL] ?? src.status?.nodeName;
  if (srcNode && srcNode !== o.nodeName) {
    throw new TerminalError(`spec.cloneFrom: "${name}" is on node ${srcNode}, this VE on ${o.nodeName}; a clone is made on its source's node: set spec.nodeName: ${srcNode}`);
  }
  if (src.spec.template !== ve.spec.template) {
    throw new TerminalError(`spec.template: the clone source "${name}" uses template ${src.spec.template}; a clone's disk is an overlay layer over its source's template, so it must use ${src.spec.template}`);
  }
  const srcAddrs = new Set([...(src.spec.network?.addresses ?? []), ...(src.status?.addresses ?? [])].map((a) => a.split('/')[0]));
  const clash = config.addresses.map((a) => a.split('/')[0]).filter((a) => srcAddrs.has(a));
  if (clash.length) {
    throw new TerminalError(`spec.network.addresses: ${clash.join(', ')} is the address of the clone source "${name}"; give the clone its own address or leave spec.network.addresses empty to get one allocated`);
  }
  const srcDisk = await o.runtime.diskUsage(src.metadata.uid);
  if (!srcDisk) throw new KvzError('Unavailable', `spec.cloneFrom: "${name}" has no disk on node ${o.nodeName} yet; the clone waits until it is created`);
  const want = config.disk?.sizeBytes ?? DEFAULT_DISK_SPACE;
  if (want < srcDisk.sizeBytes) {
    throw new TerminalError(`${FIELD_SPACE}: ${showBytes(want)} is smaller than the disk of the clone source "${name}" (${showBytes(srcDisk.sizeBytes)}); disks cannot shrink: ask for at least ${showBytes(srcDisk.sizeBytes)}`);
  }
  return src.metadata.uid;
}

export interface DiskReport {
  disk: Record<string, unknown>;
  pending: { field: string; reason: string }[];
  condition: { status: Condition['status']; reason: string; message: string };
}

/** Compares the declared disk with the host's. */
export function diskReport(desired: VEDiskConfig, usage: VEDiskUsage, onlineGrow: NodeFeature | undefined): DiskReport {
  const disk: Record<string, unknown> = { size: showBytes(usage.sizeBytes), sizeBytes: usage.sizeBytes, inodes: usage.inodes };
  if (usage.usedBytes !== undefined) disk.usedBytes = usage.usedBytes;
  if (usage.availableBytes !== undefined) disk.availableBytes = usage.availableBytes;
  if (usage.inodesUsed !== undefined) disk.inodesUsed = usage.inodesUsed;
  const pending: DiskReport['pending'] = [];
  let reason = 'Applied';
  const want = desired.sizeBytes;
  const have = usage.sizeBytes;
  // Sizes are rounded to the 4 KiB block: compare at that grain.
  const wantBlocks = Math.ceil(want / 4096);
  const haveBlocks = Math.ceil(have / 4096);
  if (wantBlocks > haveBlocks) {
    reason = onlineGrow?.available ? 'NotApplied' : 'RestartRequired';
    pending.push({
      field: FIELD_SPACE,
      reason: onlineGrow?.available
        ? `NotApplied: the disk is ${showBytes(have)}, not ${showBytes(want)}; see the node agent's log`
        : `RestartRequired: the disk is ${showBytes(have)}; it grows to ${showBytes(want)} at the VE's next stop/start (${onlineGrow?.reason ?? 'online grow is not available on this node'})`,
    });
  } else if (wantBlocks < haveBlocks) {
    const used = usage.usedBytes;
    if (used !== undefined && want < used) {
      reason = 'ShrinkRefused';
      pending.push({ field: FIELD_SPACE, reason: `ShrinkRefused: requested ${showBytes(want)} is below the ${showBytes(used)} the VE uses (disk ${showBytes(have)}); disks never shrink — set it back to ${showBytes(have)} or more` });
    } else {
      reason = 'ShrinkUnsupported';
      pending.push({ field: FIELD_SPACE, reason: `ShrinkUnsupported: shrinking a VE disk is not supported (online or offline); it stays ${showBytes(have)} (used ${used === undefined ? 'unknown' : showBytes(used)}) — set it back to ${showBytes(have)} or more` });
    }
  }
  if (desired.inodes !== undefined && desired.inodes > usage.inodes) {
    if (reason === 'Applied') reason = 'InodesFixed';
    pending.push({ field: FIELD_INODES, reason: `InodesFixed: the inode count is set when the disk is made (${usage.inodes} now; it grows only with the disk size); ${desired.inodes} is not applied` });
  }
  const condition: DiskReport['condition'] =
    pending.length === 0
      ? { status: 'True', reason: 'Applied', message: `the disk is ${showBytes(have)} with ${usage.inodes} inodes` }
      : { status: 'False', reason, message: pending.map((p) => `${p.field}: ${p.reason}`).join('; ') };
  return { disk, pending, condition };
}

/** Puts a disk report into a status being built: status.disk, DiskResized, pendingResources (merged with others' entries). */
export function withDisk(status: VEStatus, r: DiskReport, generation: number, now = new Date()): VEStatus {
  const others = (status.pendingResources ?? []).filter((p) => !p.field.startsWith('spec.resources.disk.space') && !p.field.startsWith(FIELD_INODES));
  return {
    ...status,
    disk: r.disk,
    pendingResources: [...others, ...r.pending],
    conditions: setCondition(status.conditions, { type: 'DiskResized', ...r.condition, observedGeneration: generation }, now),
  };
}

/**
 * Usage numbers change with every write; refreshing them at most every `intervalMs` per VE
 * keeps an idle VE's status (and the API server) quiet. Size or condition changes go through
 * at once because the report then differs in more than the usage fields.
 */
export class DiskReportThrottle {
  private last = new Map<string, { at: number; report: DiskReport }>();
  constructor(
    private readonly intervalMs = 60_000,
    private readonly now = () => Date.now(),
  ) {}

  pick(uid: string, fresh: DiskReport): DiskReport {
    const prev = this.last.get(uid);
    const stable = (r: DiskReport) => JSON.stringify([r.disk.sizeBytes, r.disk.inodes, r.pending, r.condition]);
    if (prev && stable(prev.report) === stable(fresh) && this.now() - prev.at < this.intervalMs) return prev.report;
    this.last.set(uid, { at: this.now(), report: fresh });
    return fresh;
  }

  forget(uid: string): void {
    this.last.delete(uid);
  }
}
