// The reconcile contract (after controller-runtime): a reconcile gets only a key and makes one
// step toward the desired state. It returns when to look again; it throws to be retried with
// backoff, or throws a TerminalError to stop retrying until the object changes.

export interface ReconcileResult {
  /** Look at this key again after this many milliseconds (periodic re-check). */
  requeueAfterMs?: number;
}

export interface Reconciler {
  readonly name: string;
  reconcile(key: string, signal: AbortSignal): Promise<ReconcileResult | void>;
}

export function objectKey(obj: { metadata?: { namespace?: string; name?: string } }): string {
  const ns = obj.metadata?.namespace;
  return ns ? `${ns}/${obj.metadata?.name ?? ''}` : (obj.metadata?.name ?? '');
}

export function splitKey(key: string): { namespace: string | undefined; name: string } {
  const i = key.indexOf('/');
  return i < 0 ? { namespace: undefined, name: key } : { namespace: key.slice(0, i), name: key.slice(i + 1) };
}
