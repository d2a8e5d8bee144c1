// The one transition table of a VEMigration (docs/adr/004-migration.md): which phase may follow
// which, and who writes each. The controller and both node agents import it, so none of them can
// move a migration along an edge the others do not expect. Pure functions only: the status
// patch is built here, the caller sends it (ResourceClient.jsonPatchStatus).

import type { MigrationPhase, VEMigration, VEMigrationStatus } from './types.js';

export type PhaseWriter = 'controller' | 'source' | 'target';

interface PhaseRule {
  /** Who may write this phase ('Failed' may be written by anyone). */
  writers: readonly PhaseWriter[];
  /** Phases that may follow. */
  next: readonly MigrationPhase[];
}

export const MIGRATION_PHASE_TABLE: Readonly<Record<MigrationPhase, PhaseRule>> = {
  Pending: { writers: ['controller'], next: ['Scheduling', 'Failed'] },
  // Scheduling → Succeeded only for a dry run (pre-flight passed, nothing touched).
  Scheduling: { writers: ['controller'], next: ['PreparingTarget', 'Succeeded', 'Failed'] },
  PreparingTarget: { writers: ['controller'], next: ['TargetReady', 'Failed'] },
  TargetReady: { writers: ['target'], next: ['Checkpointing', 'Failed'] },
  Checkpointing: { writers: ['source'], next: ['Transferring', 'Failed'] },
  Transferring: { writers: ['source'], next: ['Restoring', 'Failed'] },
  Restoring: { writers: ['source'], next: ['Succeeded', 'Failed'] },
  Succeeded: { writers: ['source', 'controller'], next: [] },
  Failed: { writers: ['controller', 'source', 'target'], next: [] },
};

/** Phases in the order a migration goes through them (Failed last). */
export const MIGRATION_PHASE_ORDER: readonly MigrationPhase[] = ['Pending', 'Scheduling', 'PreparingTarget', 'TargetReady', 'Checkpointing', 'Transferring', 'Restoring', 'Succeeded', 'Failed'];

/** Whether `to` may follow `from` (undefined = a new migration, which may only become Pending). */
export function canTransition(from: MigrationPhase | undefined, to: MigrationPhase): boolean {
  if (from === undefined) return to === 'Pending' || to === 'Failed';
  return MIGRATION_PHASE_TABLE[from].next.includes(to);
}

/** Whether `writer` may write phase `to`. */
export function mayWrite(writer: PhaseWriter, to: MigrationPhase): boolean {
  return MIGRATION_PHASE_TABLE[to].writers.includes(writer);
}

export function isTerminal(phase: MigrationPhase | undefined): phase is 'Succeeded' | 'Failed' {
  return phase === 'Succeeded' || phase === 'Failed';
}

/**
 * Whether the controller may still fail (abort, time out) a migration in `phase`: only before
 * Restoring. From Restoring on only the agents end it, because only they know whether the target
 * already runs the VE.
 */
export function controllerMayFail(phase: MigrationPhase | undefined): boolean {
  if (phase === undefined) return true;
  return !isTerminal(phase) && MIGRATION_PHASE_ORDER.indexOf(phase) < MIGRATION_PHASE_ORDER.indexOf('Restoring');
}

/** A JSON patch operation (RFC 6902), structurally the same as core's JsonPatchOp. */
export interface StatusPatchOp {
  op: 'add' | 'test' | 'replace' | 'remove';
  path: string;
  value?: unknown;
}

export interface TransitionOptions {
  message?: string;
  /** Other status fields to write with the phase (timings are merged key by key). */
  status?: Omit<Partial<VEMigrationStatus>, 'phase' | 'transitions'>;
  now?: Date;
}

/** Thrown for an edge the table does not have (a programming error, not a race). */
export class InvalidTransitionError extends Error {
  constructor(
    readonly from: MigrationPhase | undefined,
    readonly to: MigrationPhase,
  ) {
    super(`a VEMigration cannot go from ${from ?? '(new)'} to ${to}; allowed next: ${from ? MIGRATION_PHASE_TABLE[from].next.join(', ') || 'none (terminal)' : 'Pending'}`);
    this.name = 'InvalidTransitionError';
  }
}

/**
 * The JSON patch (for the status subresource) that moves `m` to phase `to`: guarded by a `test`
 * of metadata.resourceVersion, so it fails with a conflict if anyone wrote the object since `m`
 * was read; appends {phase, time, message} to status.transitions; sets completionTime on a
 * terminal phase. Throws InvalidTransitionError for an edge the table does not allow.
 */
export function transitionPatch(m: VEMigration, to: MigrationPhase, o: TransitionOptions = {}): StatusPatchOp[] {
  const from = m.status?.phase;
  if (!canTransition(from, to)) throw new InvalidTransitionError(from, to);
  const time = (o.now ?? new Date()).toISOString().replace(/\.\d{3}Z$/, 'Z');
  const entry = { phase: to, time, ...(o.message ? { message: o.message } : {}) };
  const fields: Record<string, unknown> = { ...(o.status ?? {}), phase: to };
  if (o.message !== undefined && fields.message === undefined) fields.message = o.message;
  if (isTerminal(to) && fields.completionTime === undefined) fields.completionTime = time;
  if (fields.timings && m.status?.timings) fields.timings = { ...m.status.timings, ...(fields.timings as Record<string, number>) };
  const ops: StatusPatchOp[] = [{ op: 'test', path: '/metadata/resourceVersion', value: m.metadata.resourceVersion }];
  if (!m.status) {
    ops.push({ op: 'add', path: '/status', value: { ...fields, transitions: [entry] } });
    return ops;
  }
  for (const [k, v] of Object.entries(fields)) if (v !== undefined) ops.push({ op: 'add', path: `/status/${k}`, value: v });
  ops.push(m.status.transitions ? { op: 'add', path: '/status/transitions/-', value: entry } : { op: 'add', path: '/status/transitions', value: [entry] });
  return ops;
}
