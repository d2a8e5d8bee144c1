// Builds the VE status the agent reports from what the host says, and decides whether a write
// is needed (status is written only when it changed, so idle VEs cost the API server nothing).

import type { Condition, VEPhase, VEStatus, VirtualEnvironment } from '../api/types.js';
import { setCondition } from '../core/conditions.js';

export interface StatusInput {
  phase: VEPhase;
  nodeName: string;
  addresses: string[];
  initPid?: number;
  ready: { status: 'True' | 'False' | 'Unknown'; reason: string; message?: string };
  message?: string;
}

export function buildStatus(ve: VirtualEnvironment, input: StatusInput, now = new Date()): VEStatus {
  const generation = ve.metadata.generation ?? 1;
  const conditions: Condition[] = setCondition(ve.status?.conditions, { type: 'Ready', ...input.ready, observedGeneration: generation }, now);
  const status: VEStatus = {
    phase: input.phase,
    nodeName: input.nodeName,
    addresses: input.addresses.map((a) => a.split('/')[0] ?? a),
    observedGeneration: generation,
    conditions,
  };
  if (input.initPid !== undefined) status.initPid = input.initPid;
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
