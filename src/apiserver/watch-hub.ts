// Watches (kube-api-notes §3): synthetic ADDED for an unset or "0" resourceVersion, replay from the
// change log for R>0, ERROR 410 Expired when R is older than the compaction point, then live
// events. Objects that start or stop matching the selectors turn into ADDED or DELETED. All of it
// runs synchronously in one tick against the single-writer store, so no event can fall in a gap.

import type { ResourceDef } from './resources.js';
import type { Matcher } from './selectors.js';
import type { Obj, Store, StoreEvent } from './store.js';

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';

export interface WatchSink {
  event(type: WatchEventType, object: Record<string, unknown>): void;
  /** The watch cannot continue (410): the stream must end after the ERROR event. */
  end(): void;
}

export interface WatchSpec {
  def: ResourceDef;
  /** undefined = all namespaces (or cluster-scoped). */
  namespace?: string;
  match: Matcher;
  resourceVersion?: string;
  /** `sendInitialEvents=true`: current state first, then a bookmark marking the end of it. */
  sendInitialEvents?: boolean;
  allowBookmarks?: boolean;
}

export interface WatchHandle {
  stop(): void;
}

export class WatchHub {
  private readonly subs = new Map<string, Set<(ev: StoreEvent) => void>>();
  private readonly unlisten: () => void;

  constructor(private readonly store: Store) {
    this.unlisten = store.onEvent((ev) => {
      for (const fn of this.subs.get(ev.resource) ?? []) fn(ev);
    });
  }

  /** Starts a watch, writing initial/replayed events to `sink` before returning. */
  watch(spec: WatchSpec, sink: WatchSink): WatchHandle {
    const { def, namespace, match } = spec;
    const inScope = (ns: string) => namespace === undefined || ns === namespace;
    const rvParam = spec.resourceVersion ?? '';
    let lastRev: number;
    if (rvParam === '' || rvParam === '0' || spec.sendInitialEvents) {
      const { items, rev } = this.store.list(def.key, namespace);
      for (const o of items) if (match(o)) sink.event('ADDED', o);
      lastRev = rev;
      if (spec.sendInitialEvents && spec.allowBookmarks) {
        sink.event('BOOKMARK', bookmark(def, rev, { 'k8s.io/initial-events-end': 'true' }));
      }
    } else {
      const r = Number(rvParam);
      if (!Number.isInteger(r) || r < 0) {
        sink.event('ERROR', expiredStatus(400, 'BadRequest', `invalid resource version: ${rvParam}`));
        sink.end();
        return { stop() {} };
      }
      const compacted = this.store.compactRev();
      if (r < compacted) {
        sink.event('ERROR', expiredStatus(410, 'Expired', `too old resource version: ${r} (${compacted + 1})`));
        sink.end();
        return { stop() {} };
      }
      for (const ev of this.store.changesSince(def.key, r)) {
        if (inScope(ev.namespace) && match(ev.object)) sink.event(ev.type, ev.object);
      }
      lastRev = Math.max(r, this.store.currentRev());
    }
    const fn = (ev: StoreEvent): void => {
      if (ev.rev <= lastRev || !inScope(ev.namespace)) return;
      lastRev = ev.rev;
      const now = match(ev.object);
      const before = ev.prev ? match(ev.prev) : false;
      if (ev.type === 'MODIFIED') {
        if (now && before) sink.event('MODIFIED', ev.object);
        else if (now) sink.event('ADDED', ev.object);
        else if (before) sink.event('DELETED', ev.object);
      } else if (now) sink.event(ev.type, ev.object);
    };
    let set = this.subs.get(def.key);
    if (!set) this.subs.set(def.key, (set = new Set()));
    set.add(fn);
    return {
      stop: () => {
        set.delete(fn);
      },
    };
  }

  /** A bookmark at the current revision (every event up to it has been delivered). */
  bookmark(def: ResourceDef): Obj {
    return bookmark(def, this.store.currentRev());
  }

  close(): void {
    this.unlisten();
    this.subs.clear();
  }
}

function bookmark(def: ResourceDef, rev: number, annotations?: Record<string, string>): Obj {
  const metadata: Record<string, unknown> = { resourceVersion: String(rev) };
  if (annotations) metadata.annotations = annotations;
  return { kind: def.kind, apiVersion: def.group ? `${def.group}/${def.versions[0] ?? ''}` : (def.versions[0] ?? 'v1'), metadata };
}

function expiredStatus(code: number, reason: string, message: string): Record<string, unknown> {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code };
}

