// The cluster-side controller process: informers on VEs, VENodes and VEMigrations feed the loops —
// the scheduler (keyed by VE), node health/bookkeeping (keyed by node), and, when given the
// VEMigration and Secret clients, migration orchestration (keyed by VEMigration; a VE event wakes
// the migrations that name the VE) and pinned moves (keyed by VE). Only the leader runs it
// (see core/leader-election.ts and cli/components.ts); start/stop are idempotent.

import type { VEMigration, VENode, VirtualEnvironment } from '../api/types.js';
import { ControllerLoop } from '../core/controller-loop.js';
import type { EventRecorder } from '../core/events.js';
import type { Logger } from '../core/logger.js';
import { objectKey } from '../core/reconcile.js';
import type { InformerHandle, ResourceClient } from '../core/resource-client.js';
import { boundNode } from './capacity.js';
import { MigrationController, PinnedMove, type Secret } from './migration.js';
import { NodeHealth } from './node-health.js';
import { Scheduler } from './scheduler.js';

/** How long VE changes are gathered before their node's status.allocated is written. */
const ALLOCATED_COALESCE_MS = 500;

export interface ControllerOptions {
  client: ResourceClient<VirtualEnvironment>;
  nodes: ResourceClient<VENode>;
  /** VEMigrations and core/v1 Secrets: both given = migrations are orchestrated. */
  migrations?: ResourceClient<VEMigration>;
  secrets?: ResourceClient<Secret>;
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
  private migLoop: ControllerLoop | undefined;
  private pinLoop: ControllerLoop | undefined;
  private migInformer: InformerHandle<VEMigration> | undefined;

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
      cached: (name, namespace) => this.veInformer?.get(name, namespace),
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
    const { migrations, secrets } = this.o;
    if (migrations && secrets) {
      const mig = new MigrationController({
        ...common,
        migrations,
        ves: this.o.client,
        secrets,
        nodes: () => this.nodeInformer?.list() ?? [],
        allocated: () => scheduler.allocated(),
        log: log.child({ controller: 'migration' }),
      });
      this.migLoop = new ControllerLoop({ reconciler: mig, log, workers: 2 });
      this.pinLoop = new ControllerLoop({ reconciler: new PinnedMove({ ves: this.o.client, migrations, events: this.o.events, log: log.child({ controller: 'pinned-move' }) }), log, workers: 1 });
      const mq = this.migLoop.queue;
      this.migInformer = await migrations.inform({}, (type, m) => {
        if (type !== 'DELETED') mq.add(objectKey(m));
        // A migration ending may free a pinned VE to move again.
        else this.pinLoop?.queue.add(`${m.metadata.namespace}/${m.spec.ve}`);
      });
    }
    const mq = this.migLoop?.queue;
    const pq = this.pinLoop?.queue;
    const lastNode = new Map<string, string>();
    // What of a node matters to health and placement: a write of status.allocated alone (ours,
    // coalesced below) needs neither a health look nor a retry of the VEs that wait.
    const nodeState = new Map<string, string>();
    this.nodeInformer = await this.o.nodes.inform({}, (type, node) => {
      const name = node.metadata.name;
      const state = JSON.stringify([node.metadata.generation, node.metadata.labels, node.spec, { ...node.status, allocated: undefined }]);
      if (type !== 'DELETED' && nodeState.get(name) === state) return;
      if (type === 'DELETED') nodeState.delete(name);
      else nodeState.set(name, state);
      nq.add(name);
      // A node that appeared, came back or changed may take VEs that waited.
      if (type !== 'DELETED') for (const key of scheduler.unbound()) sq.add(key);
    });
    this.veInformer = await this.o.client.inform({}, (type, ve) => {
      const key = objectKey(ve);
      // Filtered on the event's object (the newest state seen), so that a burst of status writes
      // does not cost a reconcile (and a GET) each: a bound VE stays bound, so only unbound ones
      // concern the scheduler, and only a VE whose spec.nodeName differs from where it runs
      // concerns the pinned move. Any later change brings a newer event.
      if (type !== 'DELETED' && !boundNode(ve) && !ve.metadata.deletionTimestamp) sq.add(key);
      if (type !== 'DELETED' && ve.spec.nodeName && ve.status?.nodeName && ve.spec.nodeName !== ve.status.nodeName) pq?.add(key);
      if (mq) {
        for (const m of this.migInformer?.list() ?? []) {
          if (m.metadata.namespace === ve.metadata.namespace && m.spec.ve === ve.metadata.name) mq.add(objectKey(m));
        }
      }
      // status.allocated of the node changes with its VEs: coalesced, so that a burst of VE
      // changes costs the node one status write per window rather than one per VE.
      const node = boundNode(ve);
      const before = lastNode.get(key);
      if (node) nq.addAfter(node, ALLOCATED_COALESCE_MS);
      if (before && before !== node) nq.addAfter(before, ALLOCATED_COALESCE_MS);
      if (type === 'DELETED' || !node) lastNode.delete(key);
      else lastNode.set(key, node);
    });
    this.schedLoop.start();
    this.nodeLoop.start();
    this.migLoop?.start();
    this.pinLoop?.start();
    for (const m of this.migInformer?.list() ?? []) mq?.add(objectKey(m));
    for (const ve of this.veInformer.list()) sq.add(objectKey(ve));
    for (const node of this.nodeInformer.list()) nq.add(node.metadata.name);
    log.info({ ves: this.veInformer.list().length, nodes: this.nodeInformer.list().length }, 'controller started');
  }

  async stop(): Promise<void> {
    await this.veInformer?.stop();
    await this.nodeInformer?.stop();
    await this.migInformer?.stop();
    await this.schedLoop?.stop();
    await this.nodeLoop?.stop();
    await this.migLoop?.stop();
    await this.pinLoop?.stop();
    this.schedLoop = this.nodeLoop = this.migLoop = this.pinLoop = undefined;
    this.veInformer = this.nodeInformer = undefined;
    this.migInformer = undefined;
  }
}
