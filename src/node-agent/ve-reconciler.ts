// Converges one VE bound to this node: finalizer first, then the host toward spec.powerState,
// live limits, and a status that says what the host really has. Level-based: it reads the
// object and the host afresh every time and never depends on which event woke it.

import { MIGRATION_ANNOTATION, NODE_LABEL, RESTART_REQUESTED_ANNOTATION, RESTARTED_ANNOTATION, VE_FINALIZER, type VirtualEnvironment } from '../api/types.js';
import { errorCode, errorMessage, isTerminal, KvzError } from '../core/errors.js';
import { nullRecorder, type EventRecorder } from '../core/events.js';
import { setCondition } from '../core/conditions.js';
import { withFinalizer } from '../core/finalizer.js';
import type { Logger } from '../core/logger.js';
import { splitKey, type Reconciler, type ReconcileResult } from '../core/reconcile.js';
import type { ResourceClient } from '../core/resource-client.js';
import { hostInfo, limitsDiff, LIVE_LIMIT_FIELDS, normalizeLimits, sameLimits, type LimitField, type VEConfig, type VEHostState, type VELimits, type VERuntime } from '../runtime/index.js';
import { resourcesReport, withResources, type ResourcesReport } from './resources-status.js';
import { addressConflict, chooseAddresses, claimsOfOthers } from './address-pool.js';
import { decideStart, RestartBackoff, type Hold } from './lifecycle.js';
import { configFromSpec, needsRestart } from './ve-config.js';
import { checkDiskFeatures, diskReport, DiskReportThrottle, resolveCloneSource, withDisk, type DiskReport } from './ve-disk.js';
import { buildStatus, statusPatch, type StatusInput } from './ve-status.js';

export interface VEReconcilerOptions {
  client: ResourceClient<VirtualEnvironment>;
  runtime: VERuntime;
  nodeName: string;
  /** The node bridge subnet, for VEs that declare no address. */
  subnet: string;
  /** The node's IPv6 subnet: VEs that declare no address get one from it too. */
  subnet6?: string;
  /** Crash back-off (restartPolicy); a fake clock in tests. */
  backoff?: RestartBackoff;
  /** The host rebooted since the agent last ran (lifecycle.ts detectReboot): onBoot decides who starts. */
  rebooted?: boolean;
  /** Every VE the agent knows on this node (informer cache). */
  knownVEs: () => VirtualEnvironment[];
  /**
   * Every VE of the cluster (an informer without the node filter), for address conflicts and
   * allocation: nodes may share one VE subnet. Default: knownVEs (conflicts within the node only).
   */
  clusterVEs?: () => VirtualEnvironment[];
  stopTimeoutMs: number;
  /** How often a healthy VE is looked at again even without events. */
  resyncMs: number;
  /** Events for `kubectl describe ve` (Created, Started, Stopped, Restarted, LimitsChanged, Failed, Destroyed). */
  events?: EventRecorder;
  /** Builds a VE's template from its VETemplate (template-reconciler.ts); without it, the runtime's cache alone. */
  templates?: { ensure(name: string, signal: AbortSignal): Promise<unknown> };
  /** Whether a migration on this node holds the VE (moving it, rolling it back, or receiving it): then it is left alone. */
  migrationHold?: (uid: string) => boolean;
  /** Whether this node's copy of a VE bound to another node must stay (a migration's incoming copy). */
  keepsMigrationCopy?: (ve: VirtualEnvironment) => boolean;
  /** Back-off after a refused suspend; a fake clock in tests. */
  suspendBackoff?: { initialMs: number; maxMs: number; now?: () => number };
  log: Logger;
}

/** How soon a VE held by a migration is looked at again (the migration's end also wakes it). */
const MIGRATION_HOLD_REQUEUE_MS = 10_000;

/** How soon a VE whose VETemplate does not exist is looked at again (the template informer also wakes it). */
const TEMPLATE_MISSING_REQUEUE_MS = 30_000;

/** How soon a VE refused for an address conflict is looked at again (the other VE may have gone). */
const ADDRESS_CONFLICT_REQUEUE_MS = 15_000;

export class VEReconciler implements Reconciler {
  readonly name = 've';

  private readonly events: EventRecorder;
  private readonly backoff: RestartBackoff;
  /** VEs this agent process has looked at (the first look after a reboot applies onBoot). */
  private readonly seen = new Set<string>();

  private readonly o: VEReconcilerOptions;
  /** namespace/name → resourceVersion of this reconciler's last write of the VE (isOwnWrite). */
  private readonly written = new Map<string, string>();
  /** VEs whose finalizer cleanup ran here: their deletion needs no search of the host. */
  private readonly cleaned = new Set<string>();

  constructor(o: VEReconcilerOptions) {
    this.o = { ...o, client: this.recordingWrites(o.client) };
    this.events = o.events ?? nullRecorder;
    this.backoff = o.backoff ?? new RestartBackoff();
  }

  /**
   * Whether `ve` is exactly what this reconciler's last write of it produced. The reconcile that
   * wrote it went on from that state, so the watch event of the write (its echo) needs no
   * reconcile of its own; with many VEs that halves the agent's work. Any other change, by
   * anyone, has another resourceVersion.
   */
  isOwnWrite(ve: VirtualEnvironment): boolean {
    const rv = ve.metadata.resourceVersion;
    return rv !== undefined && this.written.get(`${ve.metadata.namespace}/${ve.metadata.name}`) === rv;
  }

  private recordingWrites(client: ResourceClient<VirtualEnvironment>): ResourceClient<VirtualEnvironment> {
    const note = (ve: VirtualEnvironment): VirtualEnvironment => {
      if (ve.metadata.resourceVersion) this.written.set(`${ve.metadata.namespace}/${ve.metadata.name}`, ve.metadata.resourceVersion);
      return ve;
    };
    return {
      ref: client.ref,
      get: (name, namespace) => client.get(name, namespace),
      list: (opts) => client.list(opts),
      create: async (obj) => note(await client.create(obj)),
      mergePatch: async (name, namespace, patch) => note(await client.mergePatch(name, namespace, patch)),
      jsonPatch: async (name, namespace, ops) => note(await client.jsonPatch(name, namespace, ops)),
      applyPatch: async (obj, opts) => note(await client.applyPatch(obj, opts)),
      patchStatus: async (name, namespace, status) => note(await client.patchStatus(name, namespace, status)),
      jsonPatchStatus: async (name, namespace, ops) => note(await client.jsonPatchStatus(name, namespace, ops)),
      delete: (name, namespace) => client.delete(name, namespace),
      inform: (opts, onEvent) => client.inform(opts, onEvent),
    };
  }

  async reconcile(key: string, signal: AbortSignal): Promise<ReconcileResult> {
    const { namespace, name } = splitKey(key);
    const ve = await this.o.client.get(name, namespace);
    if (!ve) {
      this.written.delete(key);
      // A VE gone without its finalizer running here (deleted while unbound, or elsewhere) keeps no addresses.
      const live = new Set(this.o.knownVEs().map((o) => o.metadata.uid));
      for (const uid of this.allocations.keys()) if (!live.has(uid)) this.allocations.delete(uid);
      // Removed by its finalizer cleanup here already: no need to list every VE on the host.
      if (!this.cleaned.delete(key)) await this.cleanupByName(key);
      return {};
    }
    this.cleaned.delete(key);
    const boundTo = ve.metadata.labels?.[NODE_LABEL];
    const held = this.o.migrationHold?.(ve.metadata.uid ?? '') ?? false;
    if (boundTo !== this.o.nodeName && !ve.metadata.deletionTimestamp) {
      // Bound to another node: whatever we still hold for it must go (after a migration: the
      // source's dumped copy) — except the incoming copy of a migration to this node. Not bound
      // at all: wait for the controller, and never remove a VE only because its label went missing.
      if (!boundTo || this.o.keepsMigrationCopy?.(ve)) return {};
      // Still held by a migration flow here: look again soon (its end wakes us too).
      if (held) return { requeueAfterMs: MIGRATION_HOLD_REQUEUE_MS };
      await this.cleanupByName(key, ve.metadata.uid);
      return {};
    }
    const log = this.o.log.child({ ve: key, uid: ve.metadata.uid });
    // A migration owns the VE while the annotation is set (ADR 004): no restart of a dumped VE on
    // the source, no adoption on the target. A VE deleted mid-migration waits for the migration
    // to end (the controller fails it on deletion before Restoring), then the finalizer runs on
    // whichever node the VE is bound to: one copy is removed, never a copy in flight.
    if (ve.metadata.annotations?.[MIGRATION_ANNOTATION] !== undefined || held) {
      log.debug({ migration: ve.metadata.annotations?.[MIGRATION_ANNOTATION] }, 'a migration holds the VE; leaving it alone');
      return { requeueAfterMs: MIGRATION_HOLD_REQUEUE_MS };
    }
    try {
      const out = await withFinalizer(this.o.client, VE_FINALIZER, ve, async (ev) => {
        if (ev.kind === 'cleanup') {
          const res = await this.o.runtime.destroy(ev.obj.metadata.uid!, { timeoutMs: this.stopTimeoutMs(ev.obj), signal });
          this.cleaned.add(key);
          this.allocations.delete(ev.obj.metadata.uid!);
          if (res !== 'unchanged') {
            log.info('removed the VE from the host');
            this.events.event(ev.obj, 'Normal', 'Destroyed', `removed the VE from node ${this.o.nodeName}`);
          }
          return {};
        }
        return this.converge(ev.obj, log, signal);
      });
      return out ?? {};
    } catch (err) {
      // Aborted because the agent is stopping: not a failure of the VE (the next agent picks it up).
      if (!signal.aborted) await this.reportFailure(ve, err, log);
      throw err;
    }
  }

  private async converge(ve: VirtualEnvironment, log: Logger, signal: AbortSignal): Promise<ReconcileResult> {
    const uid = ve.metadata.uid!;
    let host = await this.o.runtime.inspect(uid);
    const addresses = this.addressesFor(ve, host);
    const config = configFromSpec(ve, addresses);
    const want = ve.spec.powerState ?? 'Running';
    const key = `${ve.metadata.namespace}/${ve.metadata.name}`;
    const firstLook = !this.seen.has(uid);
    this.seen.add(uid);

    if (want !== 'Suspended') this.suspendFailures.delete(uid);
    if (want === 'Suspended') return this.suspend(ve, host, addresses, log, signal);

    if (want === 'Stopped') {
      this.backoff.forget(key);
      // A suspended VE has no processes to stop: ensureStopped only discards its checkpoint.
      if (host.state !== 'absent' && host.state !== 'stopped' && host.state !== 'suspended') {
        await this.writeStatus(ve, { ...this.base(ve, addresses, host), phase: 'Running', ready: { status: 'False', reason: 'Stopping', message: 'stopping the VE' } });
      }
      const res = await this.o.runtime.ensureStopped(uid, { timeoutMs: this.stopTimeoutMs(ve), signal });
      if (res !== 'unchanged') {
        log.info('stopped');
        this.events.event(ve, 'Normal', 'Stopped', 'stopped the VE (spec.powerState is Stopped)');
      }
      await this.writeStatus(ve, { ...this.base(ve, addresses), phase: 'Stopped', ready: { status: 'False', reason: 'Stopped', message: 'spec.powerState is Stopped' } });
      return {};
    }

    // Checked before anything stops, restarts or resumes the VE (a refused address leaves it as
    // it was) and before any status write of this pass (one write per refusal: two would make the
    // first one's watch echo look foreign and wake the VE again at once, see isOwnWrite).
    const conflict = this.addressConflict(ve, addresses, host);
    // A clone that copied its source's address: prepareDisk (below) says so more precisely.
    const withCloneSource = conflict !== undefined && ve.spec.cloneFrom !== undefined && conflict.other === `${ve.metadata.namespace}/${ve.spec.cloneFrom}`;
    if (conflict && !withCloneSource) return this.refuseAddress(ve, conflict, host, log);

    if (host.state === 'suspended') {
      // Resume restores the checkpoint (memory, processes) rather than booting afresh.
      await this.writeStatus(ve, { ...this.base(ve, addresses), phase: 'Creating', ready: { status: 'False', reason: 'Resuming', message: 'restoring the VE from its suspend checkpoint' } });
      try {
        await this.o.runtime.resume(config, signal);
      } catch (err) {
        throw new KvzError(errorCode(err) ?? 'Internal', `resuming the VE from its checkpoint failed: ${errorMessage(err)}; the checkpoint is kept — set spec.powerState: Stopped to discard it, then Running to boot the VE afresh`, { cause: err, details: (err as KvzError).details });
      }
      log.info('resumed from the suspend checkpoint');
      this.events.event(ve, 'Normal', 'Resumed', `resumed the VE from its suspend checkpoint on node ${this.o.nodeName}`);
      host = await this.o.runtime.inspect(uid);
    }
    if (host.state === 'running' && host.config && needsRestart(host.config, config)) {
      log.info({ from: describe(host.config), to: describe(config) }, 'identity changed; restarting the VE');
      await this.o.runtime.ensureStopped(uid, { timeoutMs: this.stopTimeoutMs(ve), signal });
    }
    // `kvz restart` sets a new value of the restart-requested annotation; we restart once per value.
    const restartWanted = ve.metadata.annotations?.[RESTART_REQUESTED_ANNOTATION];
    const restart = restartWanted !== undefined && restartWanted !== ve.metadata.annotations?.[RESTARTED_ANNOTATION];
    if (restart && host.state === 'running') {
      log.info({ requested: restartWanted }, 'restart requested; stopping the VE');
      await this.o.runtime.ensureStopped(uid, { timeoutMs: this.stopTimeoutMs(ve), signal });
    }
    if (host.state !== 'running') {
      const hold = decideStart({
        key,
        generation: ve.metadata.generation ?? 1,
        ready: ve.status?.conditions?.find((c) => c.type === 'Ready'),
        phase: ve.status?.phase,
        hostState: host.state,
        known: host.config !== undefined,
        onBoot: ve.spec.onBoot ?? true,
        restartPolicy: ve.spec.restartPolicy ?? 'Always',
        firstLookAfterReboot: firstLook && this.o.rebooted === true,
      }, this.backoff);
      if (hold) return this.hold(ve, hold, addresses, log);
      await this.writeStatus(ve, { ...this.base(ve, addresses), phase: 'Creating', ready: { status: 'False', reason: 'Creating', message: `starting from template ${config.template}` } });
    }
    const noTemplate = await this.ensureTemplate(ve, config.template, addresses, signal);
    if (noTemplate) return noTemplate;
    await this.prepareDisk(ve, config);
    if (conflict) return this.refuseAddress(ve, conflict, host, log);
    let drifted: VELimits | undefined;
    const res = await this.o.runtime.ensureRunning(config, signal, (found) => { drifted = found; });
    if (drifted) await this.reportDrift(ve, uid, config.limits, drifted, log);
    if (res !== 'unchanged') {
      log.info({ result: res }, 'VE running');
      if (res === 'created' && host.state === 'absent' && !host.prepared) this.events.event(ve, 'Normal', 'Created', `created the VE on node ${this.o.nodeName} from template ${config.template}`);
    }
    const after = await this.o.runtime.inspect(uid);
    if (after.config && !sameLimits(after.config.limits, config.limits)) {
      await this.o.runtime.updateLimits(uid, config.limits, signal);
      log.info({ limits: config.limits }, 'limits applied live');
      this.events.event(ve, 'Normal', 'LimitsChanged', `applied limits live: ${JSON.stringify(config.limits)}`);
    }
    if (after.state !== 'running') throw new KvzError('Internal', `VE did not stay running (state ${after.state})`);
    this.backoff.running(key, after.pid);
    if (res !== 'unchanged') {
      const what = restart ? 'Restarted' : 'Started';
      this.events.event(ve, 'Normal', what, `${what.toLowerCase()} the VE on node ${this.o.nodeName} (init PID ${after.pid ?? '?'})`);
    }
    const resources = await this.resourcesReport(uid, config.limits, log);
    const disk = await this.diskReport(uid, config, log);
    await this.writeStatus(ve, { ...this.base(ve, addresses, after), phase: 'Running', ready: { status: 'True', reason: 'Running', message: '' } }, resources, disk);
    // Acknowledged only after the status shows the new init, so a waiting `kvz restart` reads it.
    if (restart) await this.o.client.mergePatch(ve.metadata.name, ve.metadata.namespace, { metadata: { annotations: { [RESTARTED_ANNOTATION]: restartWanted } } });
    return { requeueAfterMs: this.o.resyncMs };
  }

  /** Refused suspends by VE uid: a refusal is retried with back-off, not in a hot loop. */
  private readonly suspendFailures = new Map<string, { generation: number; failures: number; retryAt: number; reason: string; message: string }>();

  /**
   * spec.powerState Suspended: checkpoint the running VE to its state dir. A VE that cannot be
   * checkpointed (CheckpointFailed, e.g. a user namespace) keeps running: Ready stays True and
   * the Suspended condition (False) carries the runtime's reason, retried with back-off.
   */
  private async suspend(ve: VirtualEnvironment, host: VEHostState, addresses: string[], log: Logger, signal: AbortSignal): Promise<ReconcileResult> {
    const uid = ve.metadata.uid!;
    const generation = ve.metadata.generation ?? 1;
    if (host.state === 'suspended') {
      this.suspendFailures.delete(uid);
      await this.writeSuspendStatus(ve, { ...this.base(ve, addresses), phase: 'Suspended', ready: { status: 'False', reason: 'Suspended', message: 'checkpointed to disk (spec.powerState is Suspended)' } }, { status: 'True', reason: 'Checkpointed', message: '' });
      return {};
    }
    if (host.state !== 'running') {
      // Nothing runs, so there is nothing to checkpoint; it stays as it is.
      const message = 'the VE is not running, so there is nothing to suspend; set spec.powerState: Running to start it';
      await this.writeSuspendStatus(ve, { ...this.base(ve, addresses), phase: 'Stopped', ready: { status: 'False', reason: 'NotRunning', message } }, { status: 'False', reason: 'NotRunning', message });
      return {};
    }
    const now = this.suspendClock();
    const prev = this.suspendFailures.get(uid);
    const failed = prev && prev.generation === generation ? prev : undefined;
    if (failed && now < failed.retryAt) return { requeueAfterMs: failed.retryAt - now };
    try {
      await this.o.runtime.suspend(uid, signal);
    } catch (err) {
      if (signal.aborted) throw err;
      const failures = (failed?.failures ?? 0) + 1;
      const b = this.o.suspendBackoff ?? { initialMs: 30_000, maxMs: 600_000 };
      const delay = Math.min(b.maxMs, b.initialMs * 2 ** (failures - 1));
      const details = (err as KvzError).details ?? {};
      const tail = typeof details.criuLog === 'string' ? details.criuLog : typeof details.log === 'string' ? details.log : '';
      const reason = errorCode(err) === 'CommandFailed' || errorCode(err) === undefined ? 'CheckpointFailed' : String(details.reason ?? errorCode(err) ?? 'CheckpointFailed');
      const message = `the VE could not be suspended and keeps running: ${errorMessage(err)}${tail && !errorMessage(err).includes(tail) ? `\n${tail}` : ''}`;
      this.suspendFailures.set(uid, { generation, failures, retryAt: now + delay, reason, message });
      log.warn({ err: errorMessage(err), failures, retryInMs: delay }, 'suspend refused; the VE keeps running');
      if (failures === 1) this.events.event(ve, 'Warning', 'SuspendFailed', message);
      const after = await this.o.runtime.inspect(uid);
      const running = after.state === 'running';
      await this.writeSuspendStatus(ve, { ...this.base(ve, addresses, after), phase: running ? 'Running' : 'Failed', ready: running ? { status: 'True', reason: 'Running', message: '' } : { status: 'False', reason, message } }, { status: 'False', reason: 'CheckpointFailed', message });
      return { requeueAfterMs: delay };
    }
    this.suspendFailures.delete(uid);
    log.info('suspended (checkpointed to disk)');
    this.events.event(ve, 'Normal', 'Suspended', `suspended the VE on node ${this.o.nodeName}: its memory and processes are checkpointed to disk`);
    await this.writeSuspendStatus(ve, { ...this.base(ve, addresses), phase: 'Suspended', ready: { status: 'False', reason: 'Suspended', message: 'checkpointed to disk (spec.powerState is Suspended)' } }, { status: 'True', reason: 'Checkpointed', message: '' });
    return {};
  }

  private suspendClock(): number {
    return this.o.suspendBackoff?.now?.() ?? Date.now();
  }

  /** The status plus a `Suspended` condition (True: checkpointed; False: why not). */
  private async writeSuspendStatus(ve: VirtualEnvironment, input: StatusInput, suspended: { status: 'True' | 'False'; reason: string; message: string }): Promise<void> {
    let next = buildStatus(ve, input);
    next = { ...next, conditions: setCondition(next.conditions, { type: 'Suspended', ...suspended, observedGeneration: ve.metadata.generation ?? 1 }) };
    const patch = statusPatch(ve.status, next);
    if (!patch) return;
    const updated = await this.o.client.patchStatus(ve.metadata.name, ve.metadata.namespace, patch);
    ve.status = updated.status;
  }

  /** The VE's template on this node; a VETemplate that does not exist is a condition and a slow requeue, not a crash loop. */
  private async ensureTemplate(ve: VirtualEnvironment, name: string, addresses: string[], signal: AbortSignal): Promise<ReconcileResult | undefined> {
    try {
      if (this.o.templates) await this.o.templates.ensure(name, signal);
      else await this.o.runtime.ensureTemplate(name, undefined, { signal });
      return undefined;
    } catch (err) {
      if (errorCode(err) !== 'NotFound') throw err;
      const message = errorMessage(err);
      await this.writeStatus(ve, { ...this.base(ve, addresses), phase: 'Pending', ready: { status: 'False', reason: 'TemplateNotFound', message }, message });
      return { requeueAfterMs: TEMPLATE_MISSING_REQUEUE_MS };
    }
  }

  private stopTimeoutMs(ve: VirtualEnvironment): number {
    const s = ve.spec.stopTimeoutSeconds;
    return s === undefined ? this.o.stopTimeoutMs : s * 1000;
  }

  private base(ve: VirtualEnvironment, addresses: string[], host?: VEHostState): Omit<StatusInput, 'phase' | 'ready'> {
    return { nodeName: this.o.nodeName, addresses, initPid: host?.state === 'running' ? host.pid : undefined, security: host?.security };
  }

  /**
   * Addresses this reconciler allocated, by VE uid. Several workers allocate at once, before any
   * of their status writes is back in the informer cache: without these, two VEs of a burst get
   * the same free address (and one of them an AddressConflict for good).
   */
  private readonly allocations = new Map<string, string[]>();

  /** Every VE of the cluster, for address checks (the node's own when not wired). */
  private clusterVEs(): VirtualEnvironment[] {
    return (this.o.clusterVEs ?? this.o.knownVEs)();
  }

  /** Declared addresses, else the ones already allocated (host, status), else free ones (address-pool.ts). */
  private addressesFor(ve: VirtualEnvironment, host: VEHostState): string[] {
    const uid = ve.metadata.uid ?? '';
    const declared = ve.spec.network?.addresses ?? [];
    const mine = this.allocations.get(uid);
    let allocated = false;
    const usedByOthers = (): string[] => {
      allocated = true;
      const used: string[] = [];
      for (const o of this.clusterVEs()) {
        if (o.metadata.uid === uid) continue;
        for (const a of o.spec.network?.addresses ?? []) used.push(a);
        for (const a of o.status?.addresses ?? []) used.push(a);
      }
      for (const [other, addrs] of this.allocations) if (other !== uid) used.push(...addrs);
      return used;
    };
    const pool = { subnet: this.o.subnet, subnet6: this.o.subnet6, usedByOthers };
    const fromCache = mine && !declared.length && !host.config?.addresses?.length && !ve.status?.addresses?.length;
    let addresses = fromCache ? mine : chooseAddresses({ ...pool, declared, applied: host.config?.addresses, reported: ve.status?.addresses });
    // Pool addresses another VE has a better claim on, and that this VE neither runs with nor has
    // in a checkpoint: two agents of one shared subnet picked the same free address at once
    // (neither saw the other's yet). The loser picks again rather than waiting for the winner to go.
    const settled = host.state === 'running' || host.state === 'paused' || host.state === 'suspended';
    if (!declared.length && !settled && this.addressConflict(ve, addresses, host)) {
      addresses = chooseAddresses({ ...pool, declared: [] });
    }
    // Kept until the VE goes (its status reaches the other workers' cache only later), or until
    // it declares addresses of its own.
    if (allocated) this.allocations.set(uid, addresses);
    else if (declared.length) this.allocations.delete(uid);
    return addresses;
  }

  /** Another VE of the cluster with a better claim on one of these addresses (address-pool.ts addressConflict). */
  private addressConflict(ve: VirtualEnvironment, addresses: string[], host: VEHostState): { address: string; other: string; node?: string } | undefined {
    const running = host.state === 'running' && host.addresses.length > 0;
    const self = {
      key: `${ve.metadata.namespace}/${ve.metadata.name}`, uid: ve.metadata.uid ?? '', addresses, created: ve.metadata.creationTimestamp,
      // Only what the VE runs with now counts as held: a running VE whose spec asks for another
      // VE's address does not win it by running.
      holds: running, held: running ? host.addresses : [],
    };
    return addressConflict(self, claimsOfOthers(this.clusterVEs(), self.uid));
  }

  /**
   * Refuses addresses another VE has a better claim on: AddressConflict names that VE and its
   * node. The VE keeps its last good state: one not running stays so (Pending); a running one
   * keeps running with the addresses it has, its spec change not applied.
   */
  private async refuseAddress(ve: VirtualEnvironment, conflict: { address: string; other: string; node?: string }, host: VEHostState, log: Logger): Promise<ReconcileResult> {
    const where = conflict.node ? ` on node ${conflict.node}` : '';
    const running = host.state === 'running';
    const keeps = running ? `; the VE keeps running with ${host.addresses.join(', ') || 'its current addresses'}` : '';
    const message = `address ${conflict.address} is already used by VE ${conflict.other}${where}${keeps}; declare another address in spec.network.addresses (or leave it empty to get a free one)`;
    log.warn({ address: conflict.address, other: conflict.other, otherNode: conflict.node }, running ? 'address conflict; not applying the new addresses' : 'address conflict; not starting the VE');
    if (ve.status?.conditions?.find((c) => c.type === 'Ready')?.reason !== 'AddressConflict') this.events.event(ve, 'Warning', 'AddressConflict', message);
    // Status says what the host has: the running VE's addresses, none for one not started.
    const addresses = running ? (host.config?.addresses ?? host.addresses) : [];
    await this.writeStatus(ve, { ...this.base(ve, addresses, host), phase: running ? 'Running' : 'Pending', ready: { status: 'False', reason: 'AddressConflict', message }, message });
    return { requeueAfterMs: ADDRESS_CONFLICT_REQUEUE_MS };
  }

  /** A VE that should run but is held back (crash back-off, restartPolicy Never, onBoot after a reboot). */
  private async hold(ve: VirtualEnvironment, hold: Hold, addresses: string[], log: Logger): Promise<ReconcileResult> {
    if (hold.newCrash) {
      log.warn({ failures: hold.newCrash.failures, retryInMs: hold.requeueAfterMs }, 'VE init exited; restarting after back-off');
      this.events.event(ve, 'Warning', 'BackOff', hold.message);
    } else if (ve.status?.conditions?.find((c) => c.type === 'Ready')?.reason !== hold.reason) {
      log.info({ reason: hold.reason }, hold.message);
      this.events.event(ve, 'Normal', hold.reason, hold.message);
    }
    await this.writeStatus(ve, { ...this.base(ve, addresses), phase: hold.phase, ready: { status: 'False', reason: hold.reason, message: hold.message }, ...(hold.stalled ? { stalled: true } : {}) });
    return hold.requeueAfterMs === undefined ? {} : { requeueAfterMs: hold.requeueAfterMs };
  }

  /** Declared limits against what the host holds (appliedResources, pendingResources, ResourcesApplied). */
  private async resourcesReport(uid: string, desired: VELimits, log: Logger): Promise<ResourcesReport | undefined> {
    try {
      return resourcesReport(desired, await this.o.runtime.readLimits(uid), { nofileHard: hostInfo().nofileHard });
    } catch (err) {
      log.warn({ err: errorMessage(err) }, 'could not read the VE\'s limits back from the host');
      return undefined;
    }
  }

  /**
   * Limits changed on the host behind the agent's back (a hand-written cgroup file), which
   * ensureRunning put back, are said so (log + Warning Event LimitsRestored). Fields
   * the host cannot hold even after the re-apply are not drift: resourcesReport lists them as
   * pending, without an Event every resync.
   */
  private async reportDrift(ve: VirtualEnvironment, uid: string, desired: VELimits, found: VELimits, log: Logger): Promise<void> {
    const still = new Set(limitsDiff(desired, await this.o.runtime.readLimits(uid).catch(() => desired), LIVE_LIMIT_FIELDS));
    const restored = limitsDiff(desired, found, LIVE_LIMIT_FIELDS).filter((f) => !still.has(f));
    if (!restored.length) return;
    // Normalized, so an unset field shows as what it means (swap 0, shares 1024), not "unset".
    const [a, d] = [normalizeLimits(found), normalizeLimits(desired)];
    const text = restored.map((f) => `${f} ${String(a[f] ?? 'unlimited')} (declared ${String(d[f] ?? 'unlimited')})`).join(', ');
    log.warn({ fields: restored, found: pick(found, restored), declared: pick(desired, restored) }, 'limits were changed on the host; put back the declared ones');
    this.events.event(ve, 'Warning', 'LimitsRestored', `limits changed on the host were put back: ${text}`);
  }

  /** Refuses disk features this node lacks; for a VE not made yet with spec.cloneFrom, resolves its source on this node. */
  private async prepareDisk(ve: VirtualEnvironment, config: VEConfig): Promise<void> {
    if (!config.disk) return;
    checkDiskFeatures(config.disk, await this.o.runtime.nodeFeatures(), this.o.nodeName);
    if (ve.spec.cloneFrom && !(await this.o.runtime.diskUsage(config.uid))) {
      config.disk.cloneFrom = await resolveCloneSource({ ve, config, client: this.o.client, runtime: this.o.runtime, nodeName: this.o.nodeName });
    }
  }

  private readonly diskThrottle = new DiskReportThrottle();

  /** status.disk and the DiskResized condition (usage refreshed at most once a minute). */
  private async diskReport(uid: string, config: VEConfig, log: Logger): Promise<DiskReport | undefined> {
    if (!config.disk) return undefined;
    try {
      const usage = await this.o.runtime.diskUsage(uid);
      if (!usage) return undefined;
      const features = await this.o.runtime.nodeFeatures();
      return this.diskThrottle.pick(uid, diskReport(config.disk, usage, features.diskOnlineGrow));
    } catch (err) {
      log.warn({ err: errorMessage(err) }, 'could not read the VE\'s disk usage');
      return undefined;
    }
  }

  private async writeStatus(ve: VirtualEnvironment, input: StatusInput, resources?: ResourcesReport, disk?: DiskReport): Promise<void> {
    let next = buildStatus(ve, input);
    // Suspended speaks only while spec.powerState is Suspended (writeSuspendStatus); a resumed or stopped VE drops it.
    if (next.conditions?.some((c) => c.type === 'Suspended')) next = { ...next, conditions: next.conditions.filter((c) => c.type !== 'Suspended') };
    if (resources) next = withResources(next, resources, ve.metadata.generation ?? 1);
    if (disk) next = withDisk(next, disk, ve.metadata.generation ?? 1);
    const patch = statusPatch(ve.status, next);
    if (!patch) return;
    const updated = await this.o.client.patchStatus(ve.metadata.name, ve.metadata.namespace, patch);
    ve.status = updated.status;
  }

  private async reportFailure(ve: VirtualEnvironment, err: unknown, log: Logger): Promise<void> {
    if (ve.metadata.deletionTimestamp) return;
    const terminal = isTerminal(err);
    this.events.event(ve, 'Warning', 'Failed', errorMessage(err));
    try {
      const fresh = (await this.o.client.get(ve.metadata.name, ve.metadata.namespace)) ?? ve;
      const host = await this.o.runtime.inspect(fresh.metadata.uid!).catch(() => undefined);
      await this.writeStatus(fresh, {
        nodeName: this.o.nodeName,
        addresses: host?.config?.addresses ?? fresh.spec.network?.addresses ?? [],
        initPid: host?.state === 'running' ? host.pid : undefined,
        phase: terminal ? 'Failed' : (fresh.status?.phase ?? 'Pending'),
        ready: { status: 'False', reason: terminal ? 'InvalidSpec' : 'ReconcileError', message: errorMessage(err) },
        message: errorMessage(err),
      });
    } catch (statusErr) {
      log.warn({ err: errorMessage(statusErr) }, 'could not record the failure in status');
    }
  }

  /** The object is gone (or bound elsewhere): remove host state recorded under that name. */
  private async cleanupByName(key: string, onlyUid?: string): Promise<void> {
    for (const host of await this.o.runtime.list()) {
      if (host.config?.name !== key) continue;
      if (onlyUid && host.uid !== onlyUid) continue;
      await this.o.runtime.destroy(host.uid, { timeoutMs: this.o.stopTimeoutMs });
      this.o.log.info({ ve: key, uid: host.uid }, 'removed a VE whose resource is gone');
    }
  }
}

function pick(l: VELimits, fields: readonly LimitField[]): Partial<VELimits> {
  return Object.fromEntries(fields.map((f) => [f, l[f]]));
}

function describe(c: VEConfig): string {
  return `${c.hostname} ${c.template} ${c.addresses.join(',')}`;
}
