// Converges one VE bound to this node: finalizer first, then the host toward spec.powerState,
// live limits, and a status that says what the host really has. Level-based: it reads the
// object and the host afresh every time and never depends on which event woke it.

import { NODE_LABEL, VE_FINALIZER, type VirtualEnvironment } from '../api/types.js';
import { errorMessage, isTerminal, KvzError } from '../core/errors.js';
import { withFinalizer } from '../core/finalizer.js';
import type { Logger } from '../core/logger.js';
import { splitKey, type Reconciler, type ReconcileResult } from '../core/reconcile.js';
import type { ResourceClient } from '../core/resource-client.js';
import { sameLimits, type VEConfig, type VEHostState, type VERuntime } from '../runtime/index.js';
import { allocateAddress } from './address-pool.js';
import { configFromSpec, needsRestart } from './ve-config.js';
import { buildStatus, statusPatch, type StatusInput } from './ve-status.js';

export interface VEReconcilerOptions {
  client: ResourceClient<VirtualEnvironment>;
  runtime: VERuntime;
  nodeName: string;
  /** The node bridge subnet, for VEs that declare no address. */
  subnet: string;
  /** Every VE the agent knows on this node (informer cache), for address allocation. */
  knownVEs: () => VirtualEnvironment[];
  stopTimeoutMs: number;
  /** How often a healthy VE is looked at again even without events. */
  resyncMs: number;
  log: Logger;
}

export class VEReconciler implements Reconciler {
  readonly name = 've';

  constructor(private readonly o: VEReconcilerOptions) {}

  async reconcile(key: string, signal: AbortSignal): Promise<ReconcileResult> {
    const { namespace, name } = splitKey(key);
    const ve = await this.o.client.get(name, namespace);
    if (!ve) {
      await this.cleanupByName(key);
      return {};
    }
    const boundTo = ve.metadata.labels?.[NODE_LABEL];
    if (boundTo !== this.o.nodeName && !ve.metadata.deletionTimestamp) {
      // Bound to another node: whatever we still hold for it must go. Not bound at all: wait
      // for the controller, and never remove a VE only because its label went missing.
      if (boundTo) await this.cleanupByName(key, ve.metadata.uid);
      return {};
    }
    const log = this.o.log.child({ ve: key, uid: ve.metadata.uid });
    try {
      const out = await withFinalizer(this.o.client, VE_FINALIZER, ve, async (ev) => {
        if (ev.kind === 'cleanup') {
          const res = await this.o.runtime.destroy(ev.obj.metadata.uid!, { timeoutMs: this.stopTimeoutMs(ev.obj), signal });
          if (res !== 'unchanged') log.info('removed the VE from the host');
          return {};
        }
        return this.converge(ev.obj, log, signal);
      });
      return out ?? {};
    } catch (err) {
      await this.reportFailure(ve, err, log);
      throw err;
    }
  }

  private async converge(ve: VirtualEnvironment, log: Logger, signal: AbortSignal): Promise<ReconcileResult> {
    const uid = ve.metadata.uid!;
    const host = await this.o.runtime.inspect(uid);
    const addresses = this.addressesFor(ve, host);
    const config = configFromSpec(ve, addresses);
    const want = ve.spec.powerState ?? 'Running';

    if (want === 'Stopped') {
      if (host.state !== 'absent' && host.state !== 'stopped') {
        await this.writeStatus(ve, { ...this.base(ve, addresses, host), phase: 'Running', ready: { status: 'False', reason: 'Stopping', message: 'stopping the VE' } });
      }
      const res = await this.o.runtime.ensureStopped(uid, { timeoutMs: this.stopTimeoutMs(ve), signal });
      if (res !== 'unchanged') log.info('stopped');
      await this.writeStatus(ve, { ...this.base(ve, addresses), phase: 'Stopped', ready: { status: 'False', reason: 'Stopped', message: 'spec.powerState is Stopped' } });
      return {};
    }

    if (host.state === 'running' && host.config && needsRestart(host.config, config)) {
      log.info({ from: describe(host.config), to: describe(config) }, 'identity changed; restarting the VE');
      await this.o.runtime.ensureStopped(uid, { timeoutMs: this.stopTimeoutMs(ve), signal });
    }
    if (host.state !== 'running') {
      await this.writeStatus(ve, { ...this.base(ve, addresses), phase: 'Creating', ready: { status: 'False', reason: 'Creating', message: `starting from template ${config.template}` } });
    }
    await this.o.runtime.ensureTemplate(config.template, signal);
    const res = await this.o.runtime.ensureRunning(config, signal);
    if (res !== 'unchanged') log.info({ result: res }, 'VE running');
    const after = await this.o.runtime.inspect(uid);
    if (after.config && !sameLimits(after.config.limits, config.limits)) {
      await this.o.runtime.updateLimits(uid, config.limits, signal);
      log.info({ limits: config.limits }, 'limits applied live');
    }
    if (after.state !== 'running') throw new KvzError('Internal', `VE did not stay running (state ${after.state})`);
    await this.writeStatus(ve, { ...this.base(ve, addresses, after), phase: 'Running', ready: { status: 'True', reason: 'Running', message: '' } });
    return { requeueAfterMs: this.o.resyncMs };
  }

  private stopTimeoutMs(ve: VirtualEnvironment): number {
    const s = ve.spec.stopTimeoutSeconds;
    return s === undefined ? this.o.stopTimeoutMs : s * 1000;
  }

  private base(ve: VirtualEnvironment, addresses: string[], host?: VEHostState): Omit<StatusInput, 'phase' | 'ready'> {
    return { nodeName: this.o.nodeName, addresses, initPid: host?.state === 'running' ? host.pid : undefined };
  }

  /** Declared addresses, else the ones already allocated (status, host), else a free one. */
  private addressesFor(ve: VirtualEnvironment, host: VEHostState): string[] {
    const declared = ve.spec.network?.addresses ?? [];
    if (declared.length) return declared;
    if (host.config?.addresses.length) return host.config.addresses;
    const prefix = this.o.subnet.split('/')[1];
    const fromStatus = ve.status?.addresses?.filter(Boolean) ?? [];
    if (fromStatus.length) return fromStatus.map((a) => (a.includes('/') ? a : `${a}/${prefix}`));
    const used = this.o.knownVEs()
      .filter((o) => o.metadata.uid !== ve.metadata.uid)
      .flatMap((o) => [...(o.spec.network?.addresses ?? []), ...(o.status?.addresses ?? [])]);
    return [allocateAddress(this.o.subnet, used)];
  }

  private async writeStatus(ve: VirtualEnvironment, input: StatusInput): Promise<void> {
    const next = buildStatus(ve, input);
    const patch = statusPatch(ve.status, next);
    if (!patch) return;
    const updated = await this.o.client.patchStatus(ve.metadata.name, ve.metadata.namespace, patch);
    ve.status = updated.status;
  }

  private async reportFailure(ve: VirtualEnvironment, err: unknown, log: Logger): Promise<void> {
    if (ve.metadata.deletionTimestamp) return;
    const terminal = isTerminal(err);
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

function describe(c: VEConfig): string {
  return `${c.hostname} ${c.template} ${c.addresses.join(',')}`;
}
