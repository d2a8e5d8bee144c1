// Migration orchestration, per VEMigration (docs/adr/004-migration.md). The controller writes the
// phases that need a cluster view — Pending, Scheduling (validation, target choice, pre-flight),
// PreparingTarget (VE annotated, credential Secret made) — and the ends: it fails a migration
// that times out or is deleted before Restoring, and after a terminal phase it moves the VE
// (on success), removes the annotation, deletes the Secret and drops its finalizer. The agents
// write the phases in between. Every phase write is a JSON patch guarded by the resourceVersion
// the decision was made on, so the controller never overwrites an agent's concurrent write: it
// loses the race, reads again and decides again.
//
// PinnedMove (also here) turns "spec.nodeName of a running VE now names another node" into a
// live VEMigration, because rebinding would cold-restart the VE.

import { randomBytes } from 'node:crypto';
import { controllerMayFail, isTerminal, transitionPatch, type TransitionOptions } from '../api/migration-phases.js';
import { API_VERSION, MIGRATION_ANNOTATION, MIGRATION_TOKEN_KEY, NODE_LABEL, type KubeObject, type MigrationPhase, type VEMigration, type VENode, type VirtualEnvironment } from '../api/types.js';
import { errorCode, errorMessage } from '../core/errors.js';
import { nullRecorder, type EventRecorder } from '../core/events.js';
import type { Logger } from '../core/logger.js';
import { objectKey, splitKey, type Reconciler, type ReconcileResult } from '../core/reconcile.js';
import type { ResourceClient, ResourceRef } from '../core/resource-client.js';
import type { Amounts } from './capacity.js';
import { preflight } from './migration-preflight.js';

/** Finalizer the controller holds on every VEMigration until its terminal clean-up is done. */
export const MIGRATION_FINALIZER = 'kubevz.io/migration';
/** On a VEMigration made by PinnedMove: the VE generation whose spec.nodeName asked for it. */
export const PINNED_GENERATION_ANNOTATION = 'kubevz.io/for-ve-generation';
export const SECRET_REF: ResourceRef = { group: '', version: 'v1', plural: 'secrets', kind: 'Secret', namespaced: true };

export interface Secret extends KubeObject {
  type?: string;
  data?: Record<string, string>;
}

/** The name of a migration's credential Secret. */
export function credentialSecretName(migration: string): string {
  return `${migration}-credential`;
}

export interface MigrationControllerOptions {
  migrations: ResourceClient<VEMigration>;
  ves: ResourceClient<VirtualEnvironment>;
  secrets: ResourceClient<Secret>;
  /** VENodes as the controller's informer sees them. */
  nodes: () => VENode[];
  /** What each node has allotted (the scheduler's view). */
  allocated: () => Map<string, { amounts: Amounts; ves: number }>;
  events?: EventRecorder;
  log: Logger;
  now?: () => number;
  nodeGraceMs?: number;
  /** While agents work, look again at least this often (default 30 s). */
  pollMs?: number;
}

const DEFAULT_TIMEOUT_S = 600;

export class MigrationController implements Reconciler {
  readonly name = 'migration';

  constructor(private readonly o: MigrationControllerOptions) {}

  private now(): number {
    return this.o.now?.() ?? Date.now();
  }

  private get events(): EventRecorder {
    return this.o.events ?? nullRecorder;
  }

  async reconcile(key: string): Promise<ReconcileResult> {
    const { namespace, name } = splitKey(key);
    const m = await this.o.migrations.get(name, namespace);
    if (!m) return {};
    try {
      return await this.step(m);
    } catch (err) {
      // Lost a race with an agent (or another write): decide again on what is there now.
      if (errorCode(err) === 'Conflict') {
        this.o.log.debug({ migration: key, err: errorMessage(err) }, 'migration changed meanwhile; looking again');
        return { requeueAfterMs: 0 };
      }
      throw err;
    }
  }

  private async step(m: VEMigration): Promise<ReconcileResult> {
    const phase = m.status?.phase;
    const finalizers = m.metadata.finalizers ?? [];
    const held = finalizers.includes(MIGRATION_FINALIZER);

    if (isTerminal(phase)) {
      if (held) await this.finish(m);
      return {};
    }
    if (m.metadata.deletionTimestamp) {
      if (!held) return {};
      // Deleting a migration aborts it; from Restoring on only the agents know how it ends.
      if (controllerMayFail(phase)) await this.transition(m, 'Failed', { message: 'the VEMigration was deleted; the VE stays on its source node', status: { reason: 'Aborted' } });
      return { requeueAfterMs: this.o.pollMs ?? 30_000 };
    }
    if (!held) {
      const ops = m.metadata.finalizers
        ? [{ op: 'add' as const, path: '/metadata/finalizers/-', value: MIGRATION_FINALIZER }]
        : [{ op: 'add' as const, path: '/metadata/finalizers', value: [MIGRATION_FINALIZER] }];
      await this.o.migrations.jsonPatch(m.metadata.name, m.metadata.namespace, [{ op: 'test', path: '/metadata/resourceVersion', value: m.metadata.resourceVersion }, ...ops]);
      return { requeueAfterMs: 0 };
    }

    // Timeout: only before Restoring (after that, failing could leave the VE on neither node).
    const timeoutMs = (m.spec.timeoutSeconds ?? DEFAULT_TIMEOUT_S) * 1000;
    const start = Date.parse(m.status?.startTime ?? m.metadata.creationTimestamp ?? '');
    const deadline = Number.isNaN(start) ? undefined : start + timeoutMs;
    if (deadline !== undefined && this.now() > deadline && controllerMayFail(phase)) {
      await this.transition(m, 'Failed', { message: `the migration did not finish within timeoutSeconds ${timeoutMs / 1000} (it was ${phase ?? 'new'}); the VE stays on its source node`, status: { reason: 'Timeout' } });
      return {};
    }

    switch (phase) {
      case undefined:
        await this.transition(m, 'Pending', { message: 'accepted', status: { startTime: new Date(this.now()).toISOString().replace(/\.\d{3}Z$/, 'Z'), observedGeneration: m.metadata.generation } });
        return { requeueAfterMs: 0 };
      case 'Pending':
        await this.transition(m, 'Scheduling', { message: m.spec.targetNode ? `checking target node ${m.spec.targetNode}` : 'choosing a target node' });
        return { requeueAfterMs: 0 };
      case 'Scheduling':
        await this.schedule(m);
        return { requeueAfterMs: 0 };
      default: {
        // The agents' part: wake up for the deadline (while the controller may still fail it) or poll.
        const poll = this.o.pollMs ?? 30_000;
        if (deadline !== undefined && controllerMayFail(phase)) return { requeueAfterMs: Math.max(0, Math.min(poll, deadline - this.now() + 50)) };
        return { requeueAfterMs: poll };
      }
    }
  }

  /** Writes a phase guarded by the resourceVersion `m` was read at (a Conflict if it moved on). */
  private async transition(m: VEMigration, to: MigrationPhase, o: TransitionOptions): Promise<VEMigration> {
    const ops = transitionPatch(m, to, { ...o, now: new Date(this.now()) });
    const out = await this.o.migrations.jsonPatchStatus(m.metadata.name, m.metadata.namespace, ops);
    this.o.log.info({ migration: objectKey(m), from: m.status?.phase ?? '(new)', to, reason: o.status?.reason }, `migration ${to}`);
    return out;
  }

  private async schedule(m: VEMigration): Promise<void> {
    const t0 = this.now();
    const ve = await this.o.ves.get(m.spec.ve, m.metadata.namespace);
    const r = preflight({ m, ve, nodes: this.o.nodes(), allocated: this.o.allocated(), now: t0, nodeGraceMs: this.o.nodeGraceMs ?? 40_000 });
    if (!r.ok) {
      const status = {
        reason: r.reason,
        ...(r.sourceNode ? { sourceNode: r.sourceNode } : {}),
        ...(r.targetNode ? { targetNode: r.targetNode } : {}),
        ...(r.estimatedDowntimeMs !== undefined ? { estimatedDowntimeMs: r.estimatedDowntimeMs } : {}),
      };
      await this.transition(m, 'Failed', { message: `pre-flight failed: ${r.message}`, status });
      return;
    }
    const common = { sourceNode: r.sourceNode, targetNode: r.targetNode, veUid: r.veUid, estimatedDowntimeMs: r.estimatedDowntimeMs };
    if (m.spec.dryRun) {
      await this.transition(m, 'Succeeded', { message: `dry run: all pre-flight checks passed (${r.checks.join('; ')}); nothing was changed`, status: { ...common, reason: 'DryRun', timings: { preflight: this.now() - t0 } } });
      return;
    }
    // Claim the VE: conditional on the version pre-flight saw, so two migrations cannot both take it.
    if (ve!.metadata.annotations?.[MIGRATION_ANNOTATION] !== m.metadata.name) {
      await this.o.ves.mergePatch(ve!.metadata.name, ve!.metadata.namespace, { metadata: { resourceVersion: ve!.metadata.resourceVersion, annotations: { [MIGRATION_ANNOTATION]: m.metadata.name } } });
      // `kubectl get ve` shows the move; the agent that runs the VE afterwards writes its phase again.
      await this.o.ves.patchStatus(ve!.metadata.name, ve!.metadata.namespace, { phase: 'Migrating', message: `moving to node ${r.targetNode} (VEMigration ${m.metadata.name})` });
    }
    const secret = credentialSecretName(m.metadata.name);
    try {
      await this.o.secrets.create({
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: {
          name: secret,
          namespace: m.metadata.namespace,
          labels: { 'app.kubernetes.io/part-of': 'kubevz' },
          // Owned by the migration, so the garbage collector removes it if our clean-up never runs.
          ownerReferences: [{ apiVersion: API_VERSION, kind: 'VEMigration', name: m.metadata.name, uid: m.metadata.uid, controller: true, blockOwnerDeletion: true }],
        },
        type: 'Opaque',
        // 64 hex characters: printable, as the token travels in an HTTP header.
        data: { [MIGRATION_TOKEN_KEY]: Buffer.from(randomBytes(32).toString('hex')).toString('base64') },
      });
    } catch (err) {
      // Made by an earlier attempt of this same step (we crashed or lost the phase write).
      if (errorCode(err) !== 'AlreadyExists') throw err;
    }
    await this.transition(m, 'PreparingTarget', {
      message: `moving from ${r.sourceNode} to ${r.targetNode} (${m.spec.mode ?? 'live'}); waiting for the target to prepare`,
      status: { ...common, credentialSecret: secret, timings: { preflight: this.now() - t0 } },
    });
  }

  /** Terminal clean-up (idempotent): move or release the VE, delete the Secret, drop the finalizer. */
  private async finish(m: VEMigration): Promise<void> {
    const s = m.status ?? {};
    const dry = s.reason === 'DryRun' || m.spec.dryRun === true;
    const ve = dry ? undefined : await this.o.ves.get(m.spec.ve, m.metadata.namespace);
    // Only the VE this migration moved (a new VE of the same name is left alone).
    const ours = ve && (!s.veUid || ve.metadata.uid === s.veUid) ? ve : undefined;
    const holds = ours?.metadata.annotations?.[MIGRATION_ANNOTATION] === m.metadata.name;
    if (ours && s.phase === 'Succeeded' && s.targetNode) {
      const target = s.targetNode;
      const moved = ours.metadata.labels?.[NODE_LABEL] === target && ours.status?.nodeName === target && !holds;
      if (!moved) {
        await this.o.ves.mergePatch(ours.metadata.name, ours.metadata.namespace, {
          metadata: { labels: { [NODE_LABEL]: target }, ...(holds ? { annotations: { [MIGRATION_ANNOTATION]: null } } : {}) },
          // A pin follows the VE, else the pin would ask to move it back.
          ...(ours.spec.nodeName ? { spec: { nodeName: target } } : {}),
        });
        await this.o.ves.patchStatus(ours.metadata.name, ours.metadata.namespace, { nodeName: target });
        const how = [s.downtimeMs !== undefined ? `downtime ${s.downtimeMs} ms` : '', s.method ?? m.spec.mode ?? '', s.bytesTransferred !== undefined ? `${s.bytesTransferred} bytes` : ''].filter(Boolean).join(', ');
        this.events.event(ours, 'Normal', 'Migrated', `moved from node ${s.sourceNode ?? '?'} to node ${target} by VEMigration ${m.metadata.name}${how ? ` (${how})` : ''}`);
        this.o.log.info({ migration: objectKey(m), ve: objectKey(ours), target, downtimeMs: s.downtimeMs }, 'VE migrated');
      }
    } else if (ours && s.phase === 'Failed') {
      if (holds) {
        await this.o.ves.mergePatch(ours.metadata.name, ours.metadata.namespace, { metadata: { annotations: { [MIGRATION_ANNOTATION]: null } } });
        this.events.event(ours, 'Warning', 'MigrationFailed', `VEMigration ${m.metadata.name} failed (${s.reason ?? 'Failed'}): ${s.message ?? ''}`);
      } else if (!s.credentialSecret) {
        // Failed before it claimed the VE (pre-flight): say so on the VE too.
        this.events.event(ours, 'Warning', 'MigrationFailed', `VEMigration ${m.metadata.name} failed (${s.reason ?? 'Failed'}): ${s.message ?? ''}`);
      }
    }
    await this.o.secrets.delete(s.credentialSecret ?? credentialSecretName(m.metadata.name), m.metadata.namespace);
    const i = (m.metadata.finalizers ?? []).indexOf(MIGRATION_FINALIZER);
    if (i >= 0) {
      await this.o.migrations.jsonPatch(m.metadata.name, m.metadata.namespace, [
        { op: 'test', path: `/metadata/finalizers/${i}`, value: MIGRATION_FINALIZER },
        { op: 'remove', path: `/metadata/finalizers/${i}` },
      ]);
    }
  }
}

export interface PinnedMoveOptions {
  ves: ResourceClient<VirtualEnvironment>;
  migrations: ResourceClient<VEMigration>;
  events?: EventRecorder;
  log: Logger;
  /** Suffix source for generated names (tests make it deterministic). */
  randomSuffix?: () => string;
}

/**
 * Per VE: a Running VE whose spec.nodeName names another node than it runs on (and that no
 * migration holds) gets a live VEMigration to that node — once per VE generation, so a failed
 * one is not retried in a loop (change the spec again, or `kvz migrate`).
 */
export class PinnedMove implements Reconciler {
  readonly name = 'pinned-move';

  constructor(private readonly o: PinnedMoveOptions) {}

  async reconcile(key: string): Promise<ReconcileResult> {
    const { namespace, name } = splitKey(key);
    const ve = await this.o.ves.get(name, namespace);
    if (!ve || ve.metadata.deletionTimestamp) return {};
    const want = ve.spec.nodeName;
    const at = ve.status?.nodeName;
    if (!want || !at || want === at || ve.status?.phase !== 'Running') return {};
    if (ve.metadata.annotations?.[MIGRATION_ANNOTATION]) return {};
    const generation = String(ve.metadata.generation ?? 0);
    // A live read (not the informer cache): a migration just made must be seen, or we make two.
    const existing = (await this.o.migrations.list({ namespace: ve.metadata.namespace })).filter((m) => m.spec.ve === ve.metadata.name);
    if (existing.some((m) => !isTerminal(m.status?.phase))) return {};
    if (existing.some((m) => m.spec.targetNode === want && m.metadata.annotations?.[PINNED_GENERATION_ANNOTATION] === generation)) return {};
    const suffix = this.o.randomSuffix?.() ?? randomBytes(3).toString('hex');
    const migration: VEMigration = {
      apiVersion: API_VERSION,
      kind: 'VEMigration',
      metadata: { name: `${ve.metadata.name}-to-${want}-${suffix}`.slice(0, 253), namespace: ve.metadata.namespace, annotations: { [PINNED_GENERATION_ANNOTATION]: generation } },
      spec: { ve: ve.metadata.name, targetNode: want, mode: 'live' },
    };
    await this.o.migrations.create(migration);
    (this.o.events ?? nullRecorder).event(ve, 'Normal', 'MigrationCreated', `spec.nodeName is ${want} but the VE runs on ${at}: created VEMigration ${migration.metadata.name} to move it live`);
    this.o.log.info({ ve: key, from: at, to: want, migration: migration.metadata.name }, 'spec.nodeName changed: migrating the running VE');
    return {};
  }
}
