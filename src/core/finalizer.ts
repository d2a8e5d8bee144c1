// Finalizer helper (after kube-rs' finalizer.rs). Guarantees: the finalizer is on the object
// before any external state is created; cleanup runs when deletionTimestamp is set and the
// finalizer is removed only after cleanup succeeded. Both apply and cleanup must be idempotent
// and tolerate being run several times. Removal uses a JSON patch with a `test` op, so another
// controller's finalizer added meanwhile is never clobbered.

import type { KubeObject } from '../api/types.js';
import type { ResourceClient } from './resource-client.js';

export type FinalizerEvent<T> = { kind: 'apply'; obj: T } | { kind: 'cleanup'; obj: T };

export async function withFinalizer<T extends KubeObject, R>(
  client: ResourceClient<T>,
  finalizer: string,
  obj: T,
  handle: (event: FinalizerEvent<T>) => Promise<R>,
): Promise<R | undefined> {
  const meta = obj.metadata ?? {};
  const finalizers = meta.finalizers ?? [];
  const has = finalizers.includes(finalizer);
  if (meta.deletionTimestamp) {
    if (!has) return undefined;
    const out = await handle({ kind: 'cleanup', obj });
    const index = finalizers.indexOf(finalizer);
    await client.jsonPatch(meta.name ?? '', meta.namespace, [
      { op: 'test', path: `/metadata/finalizers/${index}`, value: finalizer },
      { op: 'remove', path: `/metadata/finalizers/${index}` },
    ]);
    return out;
  }
  if (!has) {
    const ops = meta.finalizers
      ? [{ op: 'add' as const, path: '/metadata/finalizers/-', value: finalizer }]
      : [{ op: 'add' as const, path: '/metadata/finalizers', value: [finalizer] }];
    const updated = await client.jsonPatch(meta.name ?? '', meta.namespace, ops);
    return handle({ kind: 'apply', obj: updated });
  }
  return handle({ kind: 'apply', obj });
}
