// Builds the VE status the agent reports from what the host says, and decides whether a write
// is needed (status is written only when it changed, so idle VEs cost the API server nothing).

import type { Condition, VEPhase, VESecurityStatus, VEStatus, VirtualEnvironment } from '../api/types.js';
import { setCondition } from '../core/conditions.js';

export interface StatusInput {
  phase: VEPhase;
  nodeName: string;
  addresses: string[];
  initPid?: number;
  /** Isolation as the host applied it (privileged mode is said here). */
  security?: VESecurityStatus;
  ready: { status: 'True' | 'False' | 'Unknown'; reason: string; message?: string };
  message?: string;
  /**
   * The VE is failing though its phase is not Failed (a crash loop: the agent keeps restarting
   * it with back-off): Stalled=True with the Ready reason and message.
   */
  stalled?: boolean;
}

export function buildStatus(ve: VirtualEnvironment, input: StatusInput, now = new Date()): VEStatus {
  const generation = ve.metadata.generation ?? 1;
  let conditions: Condition[] = setCondition(ve.status?.conditions, { type: 'Ready', ...input.ready, observedGeneration: generation }, now);
  // kstatus (Flux, kpt, cli-utils) reads these two "abnormal-true" conditions, not Ready:
  // Reconciling=True → InProgress, Stalled=True → Failed (see manifests/README.md). At most one
  // of them is True; a crash loop is Stalled (as kstatus reads a Pod in CrashLoopBackOff).
  const stalled = input.phase === 'Failed' || input.stalled === true;
  const settled = input.ready.status === 'True' || (input.phase === 'Stopped' && input.ready.reason === 'Stopped');
  conditions = setCondition(conditions, stalled
    ? { type: 'Stalled', status: 'True', reason: input.ready.reason, message: input.ready.message ?? '', observedGeneration: generation }
    : { type: 'Stalled', status: 'False', reason: 'Progressing', message: '', observedGeneration: generation }, now);
  conditions = setCondition(conditions, !stalled && !settled
    ? { type: 'Reconciling', status: 'True', reason: input.ready.reason, message: input.ready.message ?? '', observedGeneration: generation }
    : { type: 'Reconciling', status: 'False', reason: stalled ? 'Stalled' : 'Converged', message: '', observedGeneration: generation }, now);
  const status: VEStatus = {
    phase: input.phase,
    nodeName: input.nodeName,
    addresses: input.addresses.map((a) => a.split('/')[0] ?? a),
    observedGeneration: generation,
    conditions,
  };
  if (input.initPid !== undefined) status.initPid = input.initPid;
  const security = input.security ?? ve.status?.security;
  if (security) status.security = security;
  if (input.message) status.message = input.message;
  return status;
}

/** The status patch to send, or undefined when nothing changed. Keys that disappeared are nulled. */
export function statusPatch(current: VEStatus | undefined, next: VEStatus): Record<string, unknown> | undefined {
  const cur = (current ?? {}) as Record<string, unknown>;
  const nxt = next as Record<string, unknown>;
  const patch: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(nxt)) {
    if (JSON.stringify(cur[k]) !== JSON.stringify(v)) patch[k] = v;
  }
  for (const k of ['initPid', 'message']) {
    if (k in cur && !(k in nxt)) patch[k] = null;
  }
  return Object.keys(patch).length ? patch : undefined;
}
