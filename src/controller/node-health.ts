// Node health and bookkeeping, per VENode (after the node lifecycle controller): a node whose
// agent stopped heartbeating for longer than the grace period gets Ready=Unknown, and so does
// every VE bound to it — reported, never moved (moving a VE is a migration, a decision for a
// human or a policy). The agent's next heartbeat and reconcile put both back. It also writes
// status.allocated: what the VEs bound to the node take (see capacity.ts).

import type { VENode, VirtualEnvironment } from '../api/types.js';
import { findCondition, setCondition } from '../core/conditions.js';
import { nullRecorder, type EventRecorder } from '../core/events.js';
import type { Logger } from '../core/logger.js';
import type { Reconciler, ReconcileResult } from '../core/reconcile.js';
import type { ResourceClient } from '../core/resource-client.js';
import { boundNode, formatAmounts, type Amounts } from './capacity.js';

export interface NodeHealthOptions {
  nodes: ResourceClient<VENode>;
  ves: ResourceClient<VirtualEnvironment>;
  /** VEs as the controller's informer sees them. */
  cachedVEs: () => VirtualEnvironment[];
  /** What each node has allotted (the scheduler's view, including bindings in flight). */
  allocated: () => Map<string, { amounts: Amounts; ves: number }>;
  events?: EventRecorder;
  log: Logger;
  now?: () => number;
  /** Heartbeat age after which the node is Ready=Unknown (default 40 s). */
  nodeGraceMs?: number;
}

export class NodeHealth implements Reconciler {
  readonly name = 'node-health';

  constructor(private readonly o: NodeHealthOptions) {}

  private now(): number {
    return this.o.now?.() ?? Date.now();
  }

  async reconcile(name: string): Promise<ReconcileResult> {
    const node = await this.o.nodes.get(name);
    if (!node) return {};
    const events = this.o.events ?? nullRecorder;
    const grace = this.o.nodeGraceMs ?? 40_000;
    const now = this.now();

    const alloc = this.o.allocated().get(name) ?? { amounts: { cpu: 0, memory: 0, disk: 0 }, ves: 0 };
    const allocated = { ...formatAmounts(alloc.amounts), ves: alloc.ves };
    const patch: Record<string, unknown> = {};
    if (JSON.stringify(node.status?.allocated) !== JSON.stringify(allocated)) patch.allocated = allocated;

    const hbText = node.status?.heartbeatTime;
    const hb = Date.parse(hbText ?? '');
    const stale = Number.isNaN(hb) || now - hb > grace;
    const ready = findCondition(node.status?.conditions, 'Ready');
    if (stale && ready && ready.status !== 'Unknown') {
      const message = hbText ? `the node agent stopped posting heartbeats (last at ${hbText}); its VEs are reported Unknown and left in place` : 'the node agent never posted a heartbeat';
      patch.conditions = setCondition(node.status?.conditions, { type: 'Ready', status: 'Unknown', reason: 'NodeStatusUnknown', message, observedGeneration: node.metadata.generation }, new Date(now));
      events.event(node, 'Warning', 'NodeNotReady', message);
      this.o.log.warn({ node: name, lastHeartbeat: hbText }, 'node agent stopped heartbeating; node is Ready=Unknown');
    }
    if (Object.keys(patch).length > 0) await this.o.nodes.patchStatus(name, undefined, patch);

    if (stale && ready) {
      for (const ve of this.o.cachedVEs()) {
        if (boundNode(ve) !== name || ve.metadata.deletionTimestamp) continue;
        if (findCondition(ve.status?.conditions, 'Ready')?.status === 'Unknown') continue;
        const message = `node ${name} is not ready: its agent stopped heartbeating (last at ${hbText ?? 'never'}); the VE's state is unknown`;
        const conditions = setCondition(ve.status?.conditions, { type: 'Ready', status: 'Unknown', reason: 'NodeNotReady', message, observedGeneration: ve.metadata.generation }, new Date(now));
        await this.o.ves.patchStatus(ve.metadata.name, ve.metadata.namespace, { conditions });
        events.event(ve, 'Warning', 'NodeNotReady', message);
      }
      // Look again in a while: VEs bound meanwhile get marked too.
      return { requeueAfterMs: grace };
    }
    if (stale) return { requeueAfterMs: grace };
    // Wake up just after the heartbeat would go stale.
    return { requeueAfterMs: Math.max(100, hb + grace - now + 50) };
  }
}
