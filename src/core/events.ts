// core/v1 Event recorder (after client-go's record package): what happened to an object, so
// `kubectl describe` shows it. Best-effort by design: recording never throws and never blocks
// the caller. Repeats of the same (object, type, reason, message) are aggregated by PATCHing
// count/lastTimestamp of the existing Event; each object gets a token bucket so a flapping
// object cannot flood the API server. Never drive control logic from Events: use conditions.

import * as k8s from '@kubernetes/client-node';
import type { KubeObject } from '../api/types.js';
import { errorCode, errorMessage } from './errors.js';
import { toKvzError } from './kube-client.js';
import type { Logger } from './logger.js';

export type EventType = 'Normal' | 'Warning';

export interface ObjectReference {
  apiVersion?: string;
  kind?: string;
  name?: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
}

/** The subset of core/v1 Event the recorder writes. */
export interface CoreEvent {
  apiVersion?: 'v1';
  kind?: 'Event';
  metadata: { name: string; namespace: string; resourceVersion?: string };
  involvedObject: ObjectReference;
  reason: string;
  message: string;
  type: EventType;
  source: { component: string; host?: string };
  reportingComponent?: string;
  reportingInstance?: string;
  firstTimestamp: string;
  lastTimestamp: string;
  count: number;
}

/** What the recorder needs from the API: our own small interface, so tests can fake it. */
export interface EventsApi {
  create(namespace: string, event: CoreEvent): Promise<void>;
  /** Merge patch; rejects with a KvzError of code NotFound when the Event is gone (TTL-pruned). */
  patch(namespace: string, name: string, patch: Partial<CoreEvent>): Promise<void>;
}

export interface EventRecorder {
  /** Records an event about `obj`; returns at once. */
  event(obj: KubeObject, type: EventType, reason: string, message: string): void;
}

/** A recorder that drops everything (tests, library callers that pass none). */
export const nullRecorder: EventRecorder = { event() {} };

const MERGE = k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch);

/** EventsApi over client-node's CoreV1Api (works against the embedded server and real clusters). */
export function kubeEventsApi(kc: k8s.KubeConfig): EventsApi {
  const api = kc.makeApiClient(k8s.CoreV1Api);
  return {
    async create(namespace, event) {
      try {
        await api.createNamespacedEvent({ namespace, body: event as unknown as k8s.CoreV1Event });
      } catch (err) {
        throw toKvzError(err, `create event ${namespace}/${event.metadata.name}`);
      }
    },
    async patch(namespace, name, patch) {
      try {
        await api.patchNamespacedEvent({ namespace, name, body: patch }, MERGE);
      } catch (err) {
        throw toKvzError(err, `patch event ${namespace}/${name}`);
      }
    },
  };
}

export interface RecorderOptions {
  api: EventsApi;
  /** source.component / reportingComponent, e.g. kubevz-node-agent. */
  component: string;
  /** source.host / reportingInstance, e.g. the node name. */
  host?: string;
  log: Logger;
  now?: () => Date;
  /** Events an object may emit at once (client-go: 25). */
  burst?: number;
  /** One more token every this many ms (client-go: 300 000; we are less strict, events are our UI). */
  refillMs?: number;
  /** A repeat within this window patches the earlier Event instead of creating one (client-go: 10 min). */
  aggregateWindowMs?: number;
}

interface Seen {
  name: string;
  namespace: string;
  count: number;
  firstTimestamp: string;
  lastMs: number;
}

const MAX_SEEN = 4096;

/** Seconds-precision RFC 3339, as metav1.Time serializes. */
function rfc3339(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

export class KubeEventRecorder implements EventRecorder {
  private readonly seen = new Map<string, Seen>();
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  private chain: Promise<void> = Promise.resolve();
  private lastNanos = 0n;
  private readonly now: () => Date;

  constructor(private readonly o: RecorderOptions) {
    this.now = o.now ?? (() => new Date());
  }

  event(obj: KubeObject, type: EventType, reason: string, message: string): void {
    const meta = obj.metadata ?? {};
    const ref: ObjectReference = { apiVersion: obj.apiVersion, kind: obj.kind, name: meta.name, namespace: meta.namespace, uid: meta.uid };
    if (!this.take(`${ref.kind}/${ref.namespace ?? ''}/${ref.name}/${ref.uid ?? ''}`)) {
      this.o.log.debug({ object: `${ref.kind}/${ref.name}`, reason }, 'event dropped by rate limit');
      return;
    }
    // One write at a time keeps aggregation exact; Events are cheap and rare.
    const at = this.now();
    this.chain = this.chain.then(() => this.write(ref, type, reason, message, at)).catch(() => {});
  }

  /** Resolves when every event recorded so far has been written (or given up). */
  flush(): Promise<void> {
    return this.chain;
  }

  private take(key: string): boolean {
    const burst = this.o.burst ?? 25;
    const refill = this.o.refillMs ?? 10_000;
    const t = this.now().getTime();
    const b = this.buckets.get(key) ?? { tokens: burst, at: t };
    const gained = Math.floor((t - b.at) / refill);
    if (gained > 0) {
      b.tokens = Math.min(burst, b.tokens + gained);
      b.at += gained * refill;
    }
    if (b.tokens >= burst) b.at = t;
    this.buckets.set(key, b);
    if (this.buckets.size > MAX_SEEN) this.buckets.delete(this.buckets.keys().next().value as string);
    if (b.tokens <= 0) return false;
    b.tokens--;
    return true;
  }

  private eventName(objName: string, at: Date): string {
    let nanos = BigInt(at.getTime()) * 1_000_000n;
    if (nanos <= this.lastNanos) nanos = this.lastNanos + 1n;
    this.lastNanos = nanos;
    return `${objName}.${nanos.toString(16)}`;
  }

  private async write(ref: ObjectReference, type: EventType, reason: string, message: string, now: Date): Promise<void> {
    // Events of cluster-scoped objects live in "default", as for Nodes.
    const namespace = ref.namespace || 'default';
    const key = `${ref.uid ?? ''}|${ref.kind}|${namespace}/${ref.name}|${type}|${reason}|${message}`;
    const prev = this.seen.get(key);
    try {
      if (prev && now.getTime() - prev.lastMs < (this.o.aggregateWindowMs ?? 600_000)) {
        try {
          await this.o.api.patch(prev.namespace, prev.name, { count: prev.count + 1, lastTimestamp: rfc3339(now) });
          prev.count++;
          prev.lastMs = now.getTime();
          this.seen.delete(key);
          this.seen.set(key, prev);
          return;
        } catch (err) {
          if (errorCode(err) !== 'NotFound') throw err;
          // pruned meanwhile: start a new one
        }
      }
      const name = this.eventName(ref.name ?? 'unknown', now);
      const ts = rfc3339(now);
      await this.o.api.create(namespace, {
        apiVersion: 'v1',
        kind: 'Event',
        metadata: { name, namespace },
        involvedObject: ref,
        reason,
        message,
        type,
        source: { component: this.o.component, ...(this.o.host ? { host: this.o.host } : {}) },
        reportingComponent: this.o.component,
        reportingInstance: this.o.host ?? '',
        firstTimestamp: ts,
        lastTimestamp: ts,
        count: 1,
      });
      this.seen.delete(key);
      this.seen.set(key, { name, namespace, count: 1, firstTimestamp: ts, lastMs: now.getTime() });
      if (this.seen.size > MAX_SEEN) this.seen.delete(this.seen.keys().next().value as string);
    } catch (err) {
      this.o.log.debug({ object: `${ref.kind}/${namespace}/${ref.name}`, reason, err: errorMessage(err) }, 'could not record event');
    }
  }
}
