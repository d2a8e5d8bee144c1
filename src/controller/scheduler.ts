// The scheduler: binds each VE that is not yet bound to one Ready VENode with room for it.
// Filters (each failure counted per reason, as kube-scheduler reports them): node Ready with a
// fresh heartbeat, not cordoned (spec.unschedulable), spec.nodeSelector matches the VENode's
// labels, enough unallocated memory, CPU and disk. Among fitting nodes it takes the one whose
// fullest resource would be least full afterwards (spreads by capacity), then fewest VEs, then
// name. A VE that names a node (spec.nodeName) goes there unchecked, as a pod with nodeName.
// Binding = label kubevz.io/node (agents select on it) + status.nodeName + Scheduled=True.
// Unschedulable = Scheduled=False with the reasons; it is retried when nodes change and every
// `retryMs`. Once bound a VE stays where it is: moving it is a migration. That holds when
// spec.nodeName later names another node too — rebinding would cold-restart the VE on the new
// node; instead PinnedMove (migration.ts) creates a live VEMigration for a running VE.

import { NODE_LABEL, type VENode, type VirtualEnvironment } from '../api/types.js';
import { findCondition, setCondition } from '../core/conditions.js';
import { errorCode, errorMessage } from '../core/errors.js';
import { nullRecorder, type EventRecorder } from '../core/events.js';
import type { Logger } from '../core/logger.js';
import { objectKey, splitKey, type Reconciler, type ReconcileResult } from '../core/reconcile.js';
import type { ResourceClient } from '../core/resource-client.js';
import { add, boundNode, formatAmounts, matchesSelector, nodeAllocatable, nodeHealth, veRequests, ZERO, type Amounts } from './capacity.js';

export interface SchedulerOptions {
  client: ResourceClient<VirtualEnvironment>;
  /** VENodes as the controller's informer sees them. */
  nodes: () => VENode[];
  /** VEs as the controller's informer sees them (for what each node has allotted). */
  ves: () => VirtualEnvironment[];
  /**
   * One VE from the informer cache. Given, placement starts from it instead of a GET, and the
   * binding is conditional on its resourceVersion: a stale copy costs a conflict and a GET.
   */
  cached?: (name: string, namespace?: string) => VirtualEnvironment | undefined;
  events?: EventRecorder;
  log: Logger;
  now?: () => number;
  /** A node whose heartbeat is older than this is not Ready (default 40 s, kubelet's grace). */
  nodeGraceMs?: number;
  /** Look at an unschedulable VE again after this long even if no node changed (default 30 s). */
  retryMs?: number;
}

export interface Placement {
  node?: string;
  /** "0/3 nodes available: 2 insufficient memory, 1 NotReady" when no node fits. */
  message: string;
}

export class Scheduler implements Reconciler {
  readonly name = 'scheduler';
  /** Bindings made but not yet seen in the informer cache (uid → node, requests). */
  private readonly assumed = new Map<string, { node: string; req: Amounts }>();
  /** veRequests per informer object (objects are replaced, never mutated, on change). */
  private readonly requests = new WeakMap<VirtualEnvironment, Amounts>();

  constructor(private readonly o: SchedulerOptions) {}

  private now(): number {
    return this.o.now?.() ?? Date.now();
  }

  async reconcile(key: string): Promise<ReconcileResult> {
    const { namespace, name } = splitKey(key);
    const fromCache = this.o.cached?.(name, namespace);
    if (fromCache) {
      try {
        return await this.schedule(key, fromCache, true);
      } catch (err) {
        if (errorCode(err) !== 'Conflict') throw err;
        // The cached copy was stale: decide again on the stored object.
      }
    }
    const ve = await this.o.client.get(name, namespace);
    return ve ? this.schedule(key, ve, false) : {};
  }

  /** `conditional`: the binding must apply to exactly this resourceVersion of the VE. */
  private async schedule(key: string, ve: VirtualEnvironment, conditional: boolean): Promise<ReconcileResult> {
    const { namespace, name } = splitKey(key);
    const { client, log } = this.o;
    const events = this.o.events ?? nullRecorder;
    if (ve.metadata.deletionTimestamp) return {};
    if (boundNode(ve)) return {};
    const generation = ve.metadata.generation;

    // Placement and its reservation (`assumed`) happen in one synchronous step, with no await in
    // between: the next placement, by any worker, already counts this one. The writes that follow
    // need no lock; a failed binding gives its reservation back.
    let placement: Placement;
    if (ve.spec.nodeName) placement = { node: ve.spec.nodeName, message: `pinned by spec.nodeName to node ${ve.spec.nodeName}` };
    else {
      try {
        placement = this.place(ve);
      } catch (err) {
        placement = { message: `cannot be scheduled: ${errorMessage(err)}` };
      }
    }
    const uid = ve.metadata.uid;
    if (placement.node && uid) {
      let req: Amounts = ZERO;
      try {
        req = veRequests(ve);
      } catch {
        /* pinned with a malformed quantity: the agent reports the field */
      }
      this.assumed.set(uid, { node: placement.node, req });
    }

    if (!placement.node && conditional) {
      // Unschedulable is reported from the stored object, not from a possibly stale copy.
      const fresh = await client.get(name, namespace);
      return fresh ? this.schedule(key, fresh, false) : {};
    }
    if (!placement.node) {
      const conditions = setCondition(ve.status?.conditions, { type: 'Scheduled', status: 'False', reason: 'Unschedulable', message: placement.message, observedGeneration: generation });
      const withReady = findCondition(conditions, 'Ready')?.status === 'True' ? conditions : setCondition(conditions, { type: 'Ready', status: 'False', reason: 'Unschedulable', message: 'waiting for a node with room for the VE', observedGeneration: generation });
      const changed = JSON.stringify(withReady) !== JSON.stringify(ve.status?.conditions) || ve.status?.phase !== 'Pending' || ve.status?.observedGeneration !== generation;
      if (changed) {
        await client.patchStatus(name, namespace, { phase: 'Pending', observedGeneration: generation, conditions: withReady });
        events.event(ve, 'Warning', 'FailedScheduling', placement.message);
        log.info({ ve: key, reason: placement.message }, 'VE cannot be scheduled yet');
      }
      return { requeueAfterMs: this.o.retryMs ?? 30_000 };
    }

    const node = placement.node;
    try {
      const rv = conditional && ve.metadata.resourceVersion ? { resourceVersion: ve.metadata.resourceVersion } : {};
      await client.mergePatch(name, namespace, { metadata: { ...rv, labels: { [NODE_LABEL]: node } } });
    } catch (err) {
      if (uid) this.assumed.delete(uid);
      throw err;
    }
    const conditions = setCondition(ve.status?.conditions, {
      type: 'Scheduled',
      status: 'True',
      reason: ve.spec.nodeName ? 'Pinned' : 'Scheduled',
      message: ve.spec.nodeName ? placement.message : `bound to node ${node}`,
      observedGeneration: generation,
    });
    await client.patchStatus(name, namespace, { phase: ve.status?.phase ?? 'Pending', nodeName: node, observedGeneration: generation, conditions });
    events.event(ve, 'Normal', 'Scheduled', `Successfully assigned ${key} to ${node}`);
    log.info({ ve: key, node }, 'VE bound to node');
    return {};
  }

  /** What every node has allotted: VEs bound to it (informer) plus bindings not yet seen there. */
  allocated(): Map<string, { amounts: Amounts; ves: number }> {
    const out = new Map<string, { amounts: Amounts; ves: number }>();
    const seen = new Set<string>();
    const count = (node: string, req: Amounts) => {
      const cur = out.get(node);
      if (cur) {
        cur.amounts = add(cur.amounts, req);
        cur.ves++;
      } else out.set(node, { amounts: req, ves: 1 });
    };
    for (const ve of this.o.ves()) {
      const node = boundNode(ve);
      if (!node) continue;
      if (ve.metadata.uid) {
        seen.add(ve.metadata.uid);
        this.assumed.delete(ve.metadata.uid);
      }
      let req = this.requests.get(ve);
      if (!req) {
        try {
          req = veRequests(ve);
        } catch {
          req = ZERO; // counted as zero; its agent reports the bad field
        }
        this.requests.set(ve, req);
      }
      count(node, req);
    }
    for (const [uid, a] of this.assumed) if (!seen.has(uid)) count(a.node, a.req);
    return out;
  }

  /** Picks a node for `ve` (or says why none fits). Pure given the caches. */
  place(ve: VirtualEnvironment): Placement {
    const req = veRequests(ve);
    const nodes = this.o.nodes();
    const allocated = this.allocated();
    const now = this.now();
    const reasons = new Map<string, number>();
    const note = (r: string) => reasons.set(r, (reasons.get(r) ?? 0) + 1);
    const fits: { name: string; score: number; ves: number }[] = [];
    for (const node of nodes) {
      const name = node.metadata.name;
      const health = nodeHealth(node, now, this.o.nodeGraceMs ?? 40_000);
      if (!health.ready) {
        note('NotReady');
        continue;
      }
      if (node.spec?.unschedulable) {
        note('unschedulable');
        continue;
      }
      if (!matchesSelector(ve.spec.nodeSelector, node.metadata.labels)) {
        note("didn't match nodeSelector");
        continue;
      }
      const cap = nodeAllocatable(node);
      const used = allocated.get(name) ?? { amounts: ZERO, ves: 0 };
      const after = add(used.amounts, req);
      let fit = true;
      for (const r of ['memory', 'cpu', 'disk'] as const) {
        if (req[r] > 0 && after[r] > cap[r]) {
          note(`insufficient ${r}`);
          fit = false;
        }
      }
      if (!fit) continue;
      const frac = (r: keyof Amounts) => (cap[r] > 0 ? after[r] / cap[r] : 0);
      fits.push({ name, score: Math.max(frac('memory'), frac('cpu'), frac('disk')), ves: used.ves });
    }
    if (fits.length > 0) {
      fits.sort((a, b) => a.score - b.score || a.ves - b.ves || a.name.localeCompare(b.name));
      return { node: fits[0]!.name, message: '' };
    }
    if (nodes.length === 0) return { message: '0/0 nodes available: no node agent has registered a VENode (start one with `kvz node-agent` or `kvz up`)' };
    const parts = [...reasons.entries()].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])).map(([r, n]) => `${n} ${r}`);
    const f = formatAmounts(req);
    return { message: `0/${nodes.length} nodes available: ${parts.join(', ')} (VE needs cpu ${f.cpu}, memory ${f.memory}, disk ${f.disk})` };
  }

  /** Keys of VEs that wait for a node (to retry them when nodes change). */
  unbound(): string[] {
    return this.o.ves().filter((ve) => !boundNode(ve) && !ve.metadata.deletionTimestamp).map((ve) => objectKey(ve));
  }
}
