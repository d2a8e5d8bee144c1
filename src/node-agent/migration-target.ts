// The target agent's part of a migration (ADR 004): on PreparingTarget it makes this node ready
// to receive the VE (template, uid range, an empty disk image) and says where to send the data
// (TargetReady + status.transfer); the data channel (migration-channel.ts) then calls it to
// write blocks, keep images and restore. When the migration fails, is aborted or deleted, the
// incoming copy goes, unless the VE runs here after a success.

import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { MIGRATION_ANNOTATION, NODE_LABEL, type VEMigration, type VirtualEnvironment } from '../api/types.js';
import { errorMessage } from '../core/errors.js';
import type { EventRecorder } from '../core/events.js';
import type { Logger } from '../core/logger.js';
import type { ResourceClient } from '../core/resource-client.js';
import { migrationScratchDir, removeMigrationDir, type VEConfig, type VERuntime } from '../runtime/index.js';
import { blockDigests, writeBlock } from '../runtime/disk-sync.js';
import { chooseAddresses } from './address-pool.js';
import type { IncomingHandler } from './migration-channel.js';
import { BLOCK_SIZE } from './migration-frames.js';
import { advance, isMigrationGone, isTerminalPhase } from './migration-status.js';
import { configFromSpec } from './ve-config.js';

export interface MigrationTargetOptions {
  nodeName: string;
  migrations: ResourceClient<VEMigration>;
  ves: ResourceClient<VirtualEnvironment>;
  runtime: VERuntime;
  stateDir: string;
  subnet: string;
  subnet6?: string;
  /** Where sources reach this node's data channel (set once it listens). */
  endpoint: () => { address: string; port: number } | undefined;
  templates?: { ensure(name: string, signal: AbortSignal): Promise<unknown> };
  events?: EventRecorder;
  log: Logger;
}

interface Incoming {
  veUid: string;
  migrationUid: string;
}

export class MigrationTarget implements IncomingHandler {
  /** Incoming copies this agent prepared, by migration key (namespace/name). */
  private readonly incoming = new Map<string, Incoming>();
  /**
   * Work begun while the data still streams (disk mount, netns), by migration uid. Only a head
   * start: a restore waits for it, and redoes whatever of it failed.
   */
  private readonly ahead = new Map<string, Promise<void>[]>();

  constructor(private readonly o: MigrationTargetOptions) {}

  /** Whether `veUid` is the incoming copy of a migration this node is the target of (not to be touched by VE clean-ups). */
  holdsIncoming(veUid: string): boolean {
    return [...this.incoming.values()].some((i) => i.veUid === veUid);
  }

  /** One level-based step for a migration with this node as target (or that was deleted). */
  async reconcile(key: string, mig: VEMigration | undefined, signal: AbortSignal): Promise<void> {
    const held = this.incoming.get(key);
    if (!mig || (held && mig.metadata.uid !== held.migrationUid)) {
      if (held) await this.dropIncoming(key, held, 'the migration was deleted');
      if (!mig) return;
    }
    if (mig.status?.targetNode !== this.o.nodeName) return;
    const phase = mig.status.phase;
    const veUid = mig.status.veUid;
    if (!veUid) return;
    if (phase === 'Succeeded') {
      // The VE runs here now: the controller rebinds it; only our bookkeeping goes.
      this.incoming.delete(key);
      await removeMigrationDir(this.o.stateDir, this.imageRoot(mig));
      return;
    }
    if (phase === 'Failed' || mig.metadata.deletionTimestamp) {
      if (phase === 'Failed' || !phase || ['PreparingTarget', 'TargetReady', 'Checkpointing', 'Transferring'].includes(phase)) {
        await this.dropIncoming(key, { veUid, migrationUid: mig.metadata.uid ?? '' }, phase === 'Failed' ? `the migration failed: ${mig.status.reason ?? ''}` : 'the migration was deleted');
      }
      return;
    }
    this.incoming.set(key, { veUid, migrationUid: mig.metadata.uid ?? '' });
    if (phase !== 'PreparingTarget') return;
    await this.prepare(key, mig, signal);
  }

  private async prepare(key: string, mig: VEMigration, signal: AbortSignal): Promise<void> {
    const log = this.o.log.child({ migration: key });
    const started = Date.now();
    const endpoint = this.o.endpoint();
    const fail = async (reason: string, message: string) => {
      log.warn({ reason }, message);
      await advance(this.o.migrations, mig.metadata.namespace, mig.metadata.name, ['PreparingTarget'], 'Failed', { message, status: { reason, message } }).catch((err: unknown) => {
        if (!isMigrationGone(err)) throw err;
      });
    };
    if (!endpoint) return fail('TargetNotListening', `node ${this.o.nodeName} has no migration listener; start its agent with --migration-listen HOST:PORT`);
    const ve = await this.o.ves.get(mig.spec.ve, mig.metadata.namespace);
    if (!ve || ve.metadata.uid !== mig.status?.veUid) return fail('VENotFound', `VE ${mig.metadata.namespace}/${mig.spec.ve} (uid ${mig.status?.veUid}) no longer exists`);
    let config: VEConfig;
    try {
      config = this.configFor(ve);
      if (this.o.templates) await this.o.templates.ensure(config.template, signal);
      await this.o.runtime.migration.prepareIncoming(config, signal);
    } catch (err) {
      if (signal.aborted) throw err;
      await this.o.runtime.migration.abortIncoming(ve.metadata.uid!).catch(() => undefined);
      return fail('TargetPrepareFailed', `preparing node ${this.o.nodeName} for VE ${key}: ${errorMessage(err)}`);
    }
    // The VE's network wired now, parked off the LAN while the source still runs it: off the downtime.
    const rt = this.o.runtime.migration;
    if (mig.spec.mode !== 'offline' && rt.prepareRestoreNetwork) this.startAhead(mig, 'wiring the incoming VE\'s network', () => rt.prepareRestoreNetwork!(config));
    try {
      await advance(this.o.migrations, mig.metadata.namespace, mig.metadata.name, ['PreparingTarget'], 'TargetReady', {
        message: `node ${this.o.nodeName} ready to receive at ${endpoint.address}:${endpoint.port}`,
        status: { transfer: { address: endpoint.address, port: endpoint.port }, timings: { prepareTarget: Date.now() - started } },
      });
      log.info({ endpoint }, 'ready to receive the VE');
    } catch (err) {
      if (!isMigrationGone(err)) throw err;
      // Failed or deleted meanwhile: the next reconcile (its watch event) drops the copy.
    }
  }

  /** The VE's config as it runs on the source: same addresses and uid range. */
  configFor(ve: VirtualEnvironment): VEConfig {
    const addresses = chooseAddresses({
      declared: ve.spec.network?.addresses ?? [],
      reported: ve.status?.addresses,
      subnet: this.o.subnet,
      subnet6: this.o.subnet6,
      usedByOthers: () => [],
    });
    const config = configFromSpec(ve, addresses);
    const sec = ve.status?.security;
    if (sec?.uidRange) config.security = { ...(config.security ?? { userNamespace: true }), uidRange: sec.uidRange };
    else if (sec?.privileged) config.security = { ...(config.security ?? {}), userNamespace: false };
    return config;
  }

  private startAhead(m: VEMigration, what: string, fn: () => Promise<void>): void {
    const uid = m.metadata.uid ?? '';
    const key = `${m.metadata.namespace}/${m.metadata.name}`;
    const t0 = Date.now();
    const p = fn().then(
      () => this.o.log.info({ migration: key, ms: Date.now() - t0 }, `${what}: done ahead of the restore`),
      (err: unknown) => this.o.log.warn({ migration: key, err: errorMessage(err) }, `${what} ahead of the restore failed; the restore will do it`),
    );
    this.ahead.set(uid, [...(this.ahead.get(uid) ?? []), p]);
  }

  private async settleAhead(migrationUid: string): Promise<void> {
    const pending = this.ahead.get(migrationUid);
    this.ahead.delete(migrationUid);
    await Promise.all(pending ?? []);
  }

  private async dropIncoming(key: string, held: Incoming, why: string): Promise<void> {
    this.incoming.delete(key);
    await this.settleAhead(held.migrationUid);
    const ve = await this.o.ves.list().then((all) => all.find((v) => v.metadata.uid === held.veUid)).catch(() => undefined);
    if (ve?.metadata.labels?.[NODE_LABEL] === this.o.nodeName && !ve.metadata.annotations?.[MIGRATION_ANNOTATION]) {
      // The VE belongs to this node (a finished move): not an incoming copy any more.
      return;
    }
    const host = await this.o.runtime.inspect(held.veUid);
    if (host.state === 'running') {
      // Restored here, but the migration did not succeed: the source runs it again. One copy only.
      await this.o.runtime.destroy(held.veUid, { timeoutMs: 10_000 });
    }
    await this.o.runtime.migration.abortIncoming(held.veUid);
    await removeMigrationDir(this.o.stateDir, join(migrationScratchDir(this.o.stateDir), 'incoming', held.migrationUid));
    this.o.log.info({ migration: key, uid: held.veUid }, `dropped the incoming copy: ${why}`);
  }

  private imageRoot(mig: VEMigration): string {
    return join(migrationScratchDir(this.o.stateDir), 'incoming', mig.metadata.uid ?? 'unknown');
  }

  // ---- IncomingHandler (the data channel) ----

  digests(m: VEMigration): Promise<string[]> {
    return blockDigests(this.o.runtime.migration.diskImagePath(m.status!.veUid!), BLOCK_SIZE);
  }

  async writeBlocks(m: VEMigration, blocks: AsyncIterable<{ index: number; data: Buffer }>, unit: number): Promise<void> {
    const fh = await open(this.o.runtime.migration.diskImagePath(m.status!.veUid!), 'r+');
    try {
      for await (const b of blocks) await writeBlock(fh, b.index, b.data, unit);
    } finally {
      await fh.close();
    }
  }

  diskComplete(m: VEMigration): void {
    const rt = this.o.runtime.migration;
    if (m.spec.mode === 'offline' || !rt.mountIncomingDisk) return;
    const veUid = m.status!.veUid!;
    this.startAhead(m, 'mounting the incoming disk', () => rt.mountIncomingDisk!(veUid));
  }

  imagesComplete(m: VEMigration): void {
    const rt = this.o.runtime.migration;
    if (m.spec.mode === 'offline' || !rt.mountIncomingTmpfs) return;
    const veUid = m.status!.veUid!;
    this.startAhead(m, 'mounting the incoming tmpfs', () => rt.mountIncomingTmpfs!(veUid, this.imageDir(m)));
  }

  imageDir(m: VEMigration): string {
    return join(this.imageRoot(m), 'images');
  }

  async restore(m: VEMigration, imageDir: string, signal?: AbortSignal): Promise<{ ms: number }> {
    const [ve] = await Promise.all([this.o.ves.get(m.spec.ve, m.metadata.namespace), this.settleAhead(m.metadata.uid ?? '')]);
    if (!ve || ve.metadata.uid !== m.status?.veUid) throw new Error(`VE ${m.metadata.namespace}/${m.spec.ve} is gone`);
    const r = await this.o.runtime.migration.restore(this.configFor(ve), imageDir, signal);
    this.o.log.info({ migration: `${m.metadata.namespace}/${m.metadata.name}`, ms: r.ms }, 'restored the VE from the source\'s checkpoint');
    return r;
  }

  async abort(m: VEMigration): Promise<void> {
    const key = `${m.metadata.namespace}/${m.metadata.name}`;
    await this.dropIncoming(key, { veUid: m.status!.veUid!, migrationUid: m.metadata.uid ?? '' }, 'the source aborted it');
  }

  async running(m: VEMigration): Promise<boolean> {
    return (await this.o.runtime.inspect(m.status!.veUid!)).state === 'running';
  }
}

/** Whether a migration is active (not ended) — for clean-ups that must leave its copies alone. */
export function activeMigration(m: VEMigration): boolean {
  return !isTerminalPhase(m.status?.phase);
}
