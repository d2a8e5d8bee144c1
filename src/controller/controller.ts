// The cluster-side controller process: informers on VEs and VENodes feed two loops — the
// scheduler (keyed by VE) and node health/bookkeeping (keyed by node). Only the leader runs it
// (see core/leader-election.ts and cli/components.ts); start/stop are idempotent.

import type { VENode, VirtualEnvironment } from '../api/types.js';
import { ControllerLoop } from '../core/controller-loop.js';
import type { EventRecorder } from '../core/events.js';
import type { Logger } from '../core/logger.js';
import { objectKey } from '../core/reconcile.js';
import type { InformerHandle, ResourceClient } from '../core/resource-client.js';
import { boundNode } from './capacity.js';
import { NodeHealth } from './node-health.js';
import { Scheduler } from './scheduler.js';

export interface ControllerOptions {
  client: ResourceClient<VirtualEnvironment>;
  nodes: ResourceClient<VENode>;
  events?: EventRecorder;
  log: Logger;
  now?: () => number;
  /** Heartbeat age after which a node is not Ready (default 40 s). */
  nodeGraceMs?: number;
  /** Retry period for unschedulable VEs (default 30 s). */
  retryMs?: number;
}

export class Controller {
  private schedLoop: ControllerLoop | undefined;
  private nodeLoop: ControllerLoop | undefined;
  private veInformer: InformerHandle<VirtualEnvironment> | undefined;
  private nodeInformer: InformerHandle<VENode> | undefined;

  constructor(private readonly o: ControllerOptions) {}

  async start(): Promise<void> {
    if (this.schedLoop) return;
    const log = this.o.log.child({ component: 'controller' });
    const common = { events: this.o.events, now: this.o.now, nodeGraceMs: this.o.nodeGraceMs };
    const scheduler = new Scheduler({
      ...common,
      client: this.o.client,
      nodes: () => this.nodeInformer?.list() ?? [],
      ves: () => this.veInformer?.list() ?? [],
      retryMs: this.o.retryMs,
      log: log.child({ controller: 'scheduler' }),
    });
    const health = new NodeHealth({
      ...common,
      nodes: this.o.nodes,
      ves: this.o.client,
      cachedVEs: () => this.veInformer?.list() ?? [],
      allocated: () => scheduler.allocated(),
      log: log.child({ controller: 'node-health' }),
    });
    this.schedLoop = new ControllerLoop({ reconciler: scheduler, log, workers: 2 });
    this.nodeLoop = new ControllerLoop({ reconciler: health, log, workers: 2 });
    const sq = this.schedLoop.queue;
    const nq = this.nodeLoop.queue;
    const lastNode = new Map<string, string>();
    this.nodeInformer = await this.o.nodes.inform({}, (type, node) => {
      nq.add(node.metadata.name);
      // A node that appeared, came back or changed may take VEs that waited.
      if (type !== 'DELETED') for (const key of scheduler.unbound()) sq.add(key);
    });
    this.veInformer = await this.o.client.inform({}, (type, ve) => {
      const key = objectKey(ve);
      if (type !== 'DELETED') sq.add(key);
      const node = boundNode(ve);
      const before = lastNode.get(key);
      if (node) nq.add(node);
      if (before && before !== node) nq.add(before);
      if (type === 'DELETED' || !node) lastNode.delete(key);
      else lastNode.set(key, node);
    });
    this.schedLoop.start();
    this.nodeLoop.start();
    for (const ve of this.veInformer.list()) sq.add(objectKey(ve));
    for (const node of this.nodeInformer.list()) nq.add(node.metadata.name);
    log.info({ ves: this.veInformer.list().length, nodes: this.nodeInformer.list().length }, 'controller started');
  }

  async stop(): Promise<void> {
    await this.veInformer?.stop();
    await this.nodeInformer?.stop();
    await this.schedLoop?.stop();
    await this.nodeLoop?.stop();
    this.schedLoop = this.nodeLoop = undefined;
    this.veInformer = this.nodeInformer = undefined;
  }
}
