// The node agent: watches the VEs bound to its node (label kubevz.io/node), reconciles each
// through one ControllerLoop, notices dead inits, and removes host leftovers whose resource is
// gone. It adopts running VEs on start without restarting them: the host is the truth.

import { MIGRATION_ANNOTATION, NODE_LABEL, type KubeObject, type VEMigration, type VENode, type VETemplate, type VirtualEnvironment } from '../api/types.js';
import { ControllerLoop } from '../core/controller-loop.js';
import { errorMessage, KvzError } from '../core/errors.js';
import type { EventRecorder } from '../core/events.js';
import type { Logger } from '../core/logger.js';
import { objectKey } from '../core/reconcile.js';
import type { InformerHandle, ResourceClient } from '../core/resource-client.js';
import type { VERuntime } from '../runtime/index.js';
import { BeancounterRefresher } from './beancounters.js';
import { ExitWatcher } from './exit-watcher.js';
import { detectReboot, type RestartBackoff } from './lifecycle.js';
import type { BeancounterMetrics } from './metrics.js';
import { NodeRegistration, type HostProbe, type NodeRegistrationOptions } from './node-registration.js';
import { MigrationAgent } from './migration-agent.js';
import { TemplateAgent } from './template-reconciler.js';
import { VEReconciler } from './ve-reconciler.js';

export interface NodeAgentOptions {
  nodeName: string;
  client: ResourceClient<VirtualEnvironment>;
  runtime: VERuntime;
  subnet: string;
  /** The node's IPv6 subnet (`--subnet6`); VEs without declared addresses get one from it too. */
  subnet6?: string;
  /** Where the agent records the host's boot id, to tell a host reboot (onBoot) from an agent restart. */
  stateDir?: string;
  /** For tests: the file holding the host's boot id [/proc/sys/kernel/random/boot_id]. */
  bootIdPath?: string;
  /** For tests: crash back-off with a fake clock or a short schedule. */
  backoff?: RestartBackoff;
  log: Logger;
  stopTimeoutMs?: number;
  resyncMs?: number;
  orphanScanMs?: number;
  workers?: number;
  /** Beancounter refresh: one pass over all VEs every intervalMs [2000], status at most every minPublishMs per VE [5000]. */
  beancounters?: { intervalMs?: number; minPublishMs?: number };
  /** Prometheus gauges the refresh pass keeps current (served by `kvz up --metrics-listen`). */
  metrics?: BeancounterMetrics;
  /** Events about VEs (Created, Started, Stopped, LimitsChanged, Failed, ...). */
  events?: EventRecorder;
  /** When given, the agent registers its VENode and heartbeats (see node-registration.ts). */
  registration?: { nodes: ResourceClient<VENode>; probe: HostProbe } & Partial<Pick<NodeRegistrationOptions, 'labels' | 'reserved' | 'nodeInfo' | 'heartbeatMs'>>;
  /** VETemplates: when given, the agent builds templates from their recipes and reports per-node status. */
  templates?: ResourceClient<VETemplate>;
  /**
   * VEMigrations (ADR 004): when given (and stateDir is set), the agent acts as migration source
   * and target. `listen` (HOST:PORT, port 0 = free) serves the data channel; `advertise` is the
   * address other nodes reach it at.
   */
  migrations?: { client: ResourceClient<VEMigration>; secrets: ResourceClient<KubeObject>; listen?: string; advertise?: string };
  /** Start and supervise the runtime's node services (lxcfs) [true]; they outlive the agent (teardownNode ends them). */
  nodeServices?: boolean;
}

export class NodeAgent {
  private loop: ControllerLoop | undefined;
  private informer: InformerHandle<VirtualEnvironment> | undefined;
  /** Every VE of the cluster (no node filter): addresses are unique across nodes sharing a subnet. */
  private clusterInformer: InformerHandle<VirtualEnvironment> | undefined;
  private exitWatcher: ExitWatcher | undefined;
  private orphanTimer: NodeJS.Timeout | undefined;
  private beancounters: BeancounterRefresher | undefined;
  private registration: NodeRegistration | undefined;
  private templateAgent: TemplateAgent | undefined;
  private migrationAgent: MigrationAgent | undefined;
  private servicesStarted = false;
  private readonly log: Logger;

  constructor(private readonly o: NodeAgentOptions) {
    this.log = o.log.child({ component: 'node-agent', node: o.nodeName });
  }

  async start(): Promise<void> {
    // lxcfs before any VE is created or adopted (those started from now on read their own figures
    // in /proc), and before registering (the VENode reports whether it runs). Never fails.
    if (this.o.nodeServices !== false && this.o.runtime.startNodeServices) {
      await this.o.runtime.startNodeServices();
      this.servicesStarted = true;
    }
    if (this.o.registration) {
      // Register first: the controller places VEs only on nodes that have reported in.
      const reg = this.o.registration;
      const probe = { ...reg.probe, features: async () => ({ ...(await reg.probe.features()), ...(await this.lxcfsFeature()) }) };
      this.registration = new NodeRegistration({ ...reg, probe, nodeName: this.o.nodeName, events: this.o.events, log: this.log });
      await this.registration.start();
    }
    if (this.o.templates) {
      this.templateAgent = new TemplateAgent({ client: this.o.templates, runtime: this.o.runtime, nodeName: this.o.nodeName, log: this.log });
      // A template that appears or changes wakes the VEs waiting for it.
      await this.templateAgent.start((name) => {
        for (const ve of this.informer?.list() ?? []) if (ve.spec.template === name) this.loop?.queue.add(objectKey(ve));
      });
    }
    // A host reboot since the last run: VEs with onBoot: false stay Stopped (lifecycle.ts).
    const boot = this.o.stateDir ? await detectReboot({ stateDir: this.o.stateDir, bootIdPath: this.o.bootIdPath }) : undefined;
    if (boot?.rebooted) this.log.info({ bootId: boot.bootId, previous: boot.previous }, 'host rebooted since the agent last ran; starting only VEs with onBoot');
    if (this.o.migrations) {
      if (!this.o.stateDir) throw new KvzError('Invalid', 'migrations need the agent\'s state dir (NodeAgentOptions.stateDir) for checkpoint images and crash markers');
      this.migrationAgent = new MigrationAgent({
        nodeName: this.o.nodeName, migrations: this.o.migrations.client, secrets: this.o.migrations.secrets, ves: this.o.client, nodes: this.o.registration?.nodes, runtime: this.o.runtime,
        stateDir: this.o.stateDir, subnet: this.o.subnet, subnet6: this.o.subnet6, listen: this.o.migrations.listen, advertise: this.o.migrations.advertise,
        templates: this.templateAgent?.builds, stopTimeoutMs: this.o.stopTimeoutMs ?? 10_000, events: this.o.events, log: this.log,
        onEnded: (veKey) => this.loop?.queue.add(veKey),
      });
      // Before the VE loop: interrupted moves are settled first, so no VE reconcile races a rollback.
      await this.migrationAgent.start();
    }
    const migrationHold = this.migrationAgent ? (uid: string) => this.migrationAgent!.holds(uid) : undefined;
    const reconciler = new VEReconciler({
      migrationHold,
      keepsMigrationCopy: this.migrationAgent ? (ve) => this.migrationAgent!.keepsCopy(ve) : undefined,
      subnet6: this.o.subnet6,
      rebooted: boot?.rebooted ?? false,
      backoff: this.o.backoff,
      templates: this.templateAgent?.builds,
      client: this.o.client,
      runtime: this.o.runtime,
      nodeName: this.o.nodeName,
      subnet: this.o.subnet,
      knownVEs: () => this.informer?.list() ?? [],
      clusterVEs: () => this.clusterInformer?.list() ?? this.informer?.list() ?? [],
      stopTimeoutMs: this.o.stopTimeoutMs ?? 10_000,
      resyncMs: this.o.resyncMs ?? 30_000,
      events: this.o.events,
      log: this.log,
    });
    this.loop = new ControllerLoop({ reconciler, log: this.log, workers: this.o.workers ?? 4 });
    const queue = this.loop.queue;
    // A cache only: a VE refused for an address conflict looks again on its own (requeue).
    this.clusterInformer = await this.o.client.inform({}, () => {});
    // The echo of the reconciler's own write wakes nothing (ve-reconciler.ts isOwnWrite).
    this.informer = await this.o.client.inform({ labelSelector: `${NODE_LABEL}=${this.o.nodeName}` }, (type, obj) => {
      if (type === 'DELETED' || !reconciler.isOwnWrite(obj)) queue.add(objectKey(obj));
    });
    this.loop.start();
    for (const ve of this.informer.list()) queue.add(objectKey(ve));

    this.exitWatcher = new ExitWatcher(
      () =>
        (this.informer?.list() ?? [])
          .filter((ve) => ve.status?.phase === 'Running' && ve.status.initPid)
          .map((ve) => ({ key: objectKey(ve), pid: ve.status!.initPid! })),
      (key) => queue.add(key),
    );
    this.exitWatcher.start();

    this.beancounters = new BeancounterRefresher({
      runtime: this.o.runtime,
      client: this.o.client,
      ves: () => this.informer?.list() ?? [],
      log: this.log.child({ component: 'beancounters' }),
      metrics: this.o.metrics,
      intervalMs: this.o.beancounters?.intervalMs,
      minPublishMs: this.o.beancounters?.minPublishMs,
    });
    this.beancounters.start();

    await this.scanOrphans();
    this.orphanTimer = setInterval(() => void this.scanOrphans(), this.o.orphanScanMs ?? 60_000);
    this.orphanTimer.unref();
    this.log.info({ ves: this.informer.list().length }, 'node agent started');
  }

  /** VENode features.lxcfs: whether the runtime's lxcfs serves VE /proc files (absent for runtimes without node services). */
  private async lxcfsFeature(): Promise<{ lxcfs?: boolean }> {
    if (!this.o.runtime.startNodeServices) return {};
    const f = (await this.o.runtime.nodeFeatures()).lxcfs;
    return { lxcfs: f?.available ?? false };
  }

  /** The migration data channel's address (when listening). */
  get migrationAddress(): { address: string; port: number } | undefined {
    return this.migrationAgent?.address;
  }

  /**
   * Host VEs whose resource no longer exists (deleted while the agent was down, or recreated
   * under a new uid), or that moved to another node while the agent was down. Never the
   * incoming copy of an active migration, nor a VE a migration of this node is moving.
   */
  async scanOrphans(): Promise<void> {
    try {
      const known = new Set((this.informer?.list() ?? []).map((ve) => ve.metadata.uid));
      for (const host of await this.o.runtime.list()) {
        if (known.has(host.uid)) continue;
        if (this.migrationAgent?.holds(host.uid)) continue;
        const [namespace, name] = (host.config?.name ?? '').split('/');
        if (!namespace || !name) continue;
        const ve = await this.o.client.get(name, namespace);
        if (ve && ve.metadata.uid === host.uid) {
          const boundTo = ve.metadata.labels?.[NODE_LABEL];
          // Exists, just not (yet) bound here; or a migration's copy (annotated): leave it.
          if (!boundTo || boundTo === this.o.nodeName || ve.metadata.annotations?.[MIGRATION_ANNOTATION] !== undefined || !this.migrationAgent) continue;
          // Bound to another node after a finished migration: the copy left here goes (below).
        }
        await this.o.runtime.destroy(host.uid, { timeoutMs: this.o.stopTimeoutMs ?? 10_000 });
        this.log.info({ ve: host.config?.name, uid: host.uid }, 'removed a leftover VE that has no resource');
      }
    } catch (err) {
      this.log.warn({ err: errorMessage(err) }, 'orphan scan failed; will retry');
    }
  }

  /** Stops watching and reconciling; the VEs keep running. */
  async stop(): Promise<void> {
    // lxcfs keeps serving the VEs; the next agent adopts it.
    if (this.servicesStarted) this.o.runtime.releaseNodeServices?.();
    this.servicesStarted = false;
    this.registration?.stop();
    this.exitWatcher?.stop();
    await this.beancounters?.stop();
    if (this.orphanTimer) clearInterval(this.orphanTimer);
    await this.templateAgent?.stop();
    await this.migrationAgent?.stop();
    await this.informer?.stop();
    await this.clusterInformer?.stop();
    await this.loop?.stop();
    this.log.info('node agent stopped; VEs keep running');
  }
}
