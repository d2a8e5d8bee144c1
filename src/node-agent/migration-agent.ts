// The node agent's migration roles in one place: watches VEMigrations of all namespaces, serves
// the data channel when it listens, and hands each migration to the target role (this node is
// status.targetNode) and the source role (status.sourceNode). On start it first finishes or
// rolls back moves a previous agent left (source markers).

import { MIGRATION_ANNOTATION, type KubeObject, type VEMigration, type VENode, type VirtualEnvironment } from '../api/types.js';
import { ControllerLoop } from '../core/controller-loop.js';
import { errorMessage } from '../core/errors.js';
import type { EventRecorder } from '../core/events.js';
import type { Logger } from '../core/logger.js';
import { objectKey, splitKey, type Reconciler, type ReconcileResult } from '../core/reconcile.js';
import type { InformerHandle, ResourceClient } from '../core/resource-client.js';
import type { VERuntime } from '../runtime/index.js';
import { MigrationChannelServer } from './migration-channel.js';
import { MigrationSource } from './migration-source.js';
import { MigrationTarget } from './migration-target.js';
import { isTerminalPhase } from './migration-status.js';

export interface MigrationAgentOptions {
  nodeName: string;
  migrations: ResourceClient<VEMigration>;
  secrets: ResourceClient<KubeObject>;
  ves: ResourceClient<VirtualEnvironment>;
  /** The cluster's VENodes: a source waiting for a lost target's answer stops when its VENode is deleted. */
  nodes?: ResourceClient<VENode>;
  runtime: VERuntime;
  stateDir: string;
  subnet: string;
  subnet6?: string;
  /** HOST:PORT for the data channel; without it this node cannot be a migration target. */
  listen?: string;
  /** The address sources use to reach the channel (default: the bound address). */
  advertise?: string;
  templates?: { ensure(name: string, signal: AbortSignal): Promise<unknown> };
  stopTimeoutMs: number;
  events?: EventRecorder;
  log: Logger;
  /** Called with the VE's key (namespace/name) when a migration of it ended, so the VE reconciler looks at once. */
  onEnded?: (veKey: string) => void;
  /** How often markers that could not be settled yet are looked at again [30 s]. */
  recoverRetryMs?: number;
}

export class MigrationAgent implements Reconciler {
  readonly name = 'vemigration';
  readonly target: MigrationTarget;
  readonly source: MigrationSource;
  private channel: MigrationChannelServer | undefined;
  private endpoint: { address: string; port: number } | undefined;
  private loop: ControllerLoop | undefined;
  private informer: InformerHandle<VEMigration> | undefined;
  private retry: NodeJS.Timeout | undefined;
  private readonly log: Logger;

  constructor(private readonly o: MigrationAgentOptions) {
    this.log = o.log.child({ component: 'migration' });
    this.target = new MigrationTarget({
      nodeName: o.nodeName, migrations: o.migrations, ves: o.ves, runtime: o.runtime, stateDir: o.stateDir,
      subnet: o.subnet, subnet6: o.subnet6, endpoint: () => this.endpoint, templates: o.templates, events: o.events, log: this.log,
    });
    this.source = new MigrationSource({
      nodeName: o.nodeName, migrations: o.migrations, secrets: o.secrets, ves: o.ves, nodes: o.nodes, runtime: o.runtime, stateDir: o.stateDir,
      configFor: (ve) => this.target.configFor(ve), stopTimeoutMs: o.stopTimeoutMs, events: o.events, log: this.log,
      onReleased: (veKey) => o.onEnded?.(veKey),
    });
  }

  /** Where this node's data channel is reached (after start, when listening). */
  get address(): { address: string; port: number } | undefined {
    return this.endpoint;
  }

  async start(): Promise<void> {
    if (this.o.listen) {
      this.channel = new MigrationChannelServer({ nodeName: this.o.nodeName, migrations: this.o.migrations, secrets: this.o.secrets, handler: this.target, log: this.log });
      const bound = await this.channel.listen(this.o.listen);
      const unspecified = bound.host === '0.0.0.0' || bound.host === '::';
      if (unspecified && !this.o.advertise) this.log.warn({ listen: this.o.listen }, 'the migration channel listens on all addresses but no --migration-address was given; advertising 127.0.0.1, which only works on one host');
      this.endpoint = { address: this.o.advertise ?? (unspecified ? '127.0.0.1' : bound.host), port: bound.port };
    }
    await this.recover();
    this.loop = new ControllerLoop({ reconciler: this, log: this.log, workers: 2 });
    const queue = this.loop.queue;
    this.informer = await this.o.migrations.inform({}, (type, obj) => {
      const key = objectKey(obj);
      // Abort signals reach a running source flow at once, not after a queue turn.
      if (type === 'DELETED') this.source.onMigration(key, undefined);
      queue.add(key);
    });
    this.loop.start();
    for (const m of this.informer.list()) queue.add(objectKey(m));
  }

  private async recover(): Promise<void> {
    const left = await this.source.recover().catch((err: unknown) => {
      this.log.warn({ err: errorMessage(err) }, 'recovering interrupted migrations failed; will try again');
      return 1;
    });
    if (left > 0) {
      this.retry = setTimeout(() => void this.recover(), this.o.recoverRetryMs ?? 30_000);
      this.retry.unref();
    }
  }

  async reconcile(key: string, signal: AbortSignal): Promise<ReconcileResult> {
    const { namespace, name } = splitKey(key);
    const mig = await this.o.migrations.get(name, namespace);
    this.source.onMigration(key, mig);
    await this.target.reconcile(key, mig, signal);
    if (mig && isTerminalPhase(mig.status?.phase)) this.o.onEnded?.(`${mig.metadata.namespace}/${mig.spec.ve}`);
    return {};
  }

  /**
   * Whether the VE reconciler must leave this VE alone: it is being moved or rolled back by
   * this agent, or it is the incoming copy of an active migration.
   */
  holds(veUid: string | undefined): boolean {
    if (!veUid) return false;
    if (this.source.holds(veUid) || this.target.holdsIncoming(veUid)) return true;
    return (this.informer?.list() ?? []).some((m) => m.status?.veUid === veUid && !isTerminalPhase(m.status.phase) && (m.status.targetNode === this.o.nodeName || m.status.sourceNode === this.o.nodeName));
  }

  /**
   * Whether this node's copy of a VE bound elsewhere must stay: it is the incoming copy of a
   * migration to this node (the VE's annotation names it), running here after a success until the
   * controller rebinds the VE.
   */
  keepsCopy(ve: VirtualEnvironment): boolean {
    if (this.target.holdsIncoming(ve.metadata.uid ?? '')) return true;
    const name = ve.metadata.annotations?.[MIGRATION_ANNOTATION];
    if (!name) return false;
    const m = this.informer?.get(name, ve.metadata.namespace);
    return m?.status?.targetNode === this.o.nodeName && m.status.veUid === ve.metadata.uid && m.status.phase !== 'Failed';
  }

  async stop(): Promise<void> {
    if (this.retry) clearTimeout(this.retry);
    await this.informer?.stop();
    await this.loop?.stop();
    await this.source.stop();
    await this.channel?.close();
  }
}
