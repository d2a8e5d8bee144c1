// The narrow interface through which controllers, agents, sources and the CLI talk to the
// Kubernetes API. The real one (kube-client.ts) wraps @kubernetes/client-node; unit tests use
// a fake of this interface that passes the same contract tests.

import type { KubeObject } from '../api/types.js';

export interface ResourceRef {
  group: string;
  version: string;
  plural: string;
  kind: string;
  namespaced: boolean;
}

export interface ListOptions {
  namespace?: string;
  labelSelector?: string;
}

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED';

export interface InformerHandle<T> {
  /** Objects currently in the informer's cache. */
  list(): T[];
  get(name: string, namespace?: string): T | undefined;
  stop(): Promise<void>;
}

export interface JsonPatchOp {
  op: 'add' | 'remove' | 'replace' | 'test' | 'move' | 'copy';
  path: string;
  value?: unknown;
  from?: string;
}

/** Server-side apply (`PATCH` with `application/apply-patch+yaml`), as on any Kubernetes server. */
export interface ApplyPatchOptions {
  /** Who owns the applied fields (`metadata.managedFields[].manager`); at most 128 characters. */
  fieldManager: string;
  /** Take over fields another manager owns instead of failing with a 409 conflict. */
  force?: boolean;
  /** `dryRun=All`: validate and compute the result, store nothing. */
  dryRun?: boolean;
}

export interface ResourceClient<T extends KubeObject = KubeObject> {
  readonly ref: ResourceRef;
  /** undefined when the object does not exist. */
  get(name: string, namespace?: string): Promise<T | undefined>;
  list(opts?: ListOptions): Promise<T[]>;
  create(obj: T): Promise<T>;
  /** RFC 7386 merge patch of the main resource (null deletes a key). */
  mergePatch(name: string, namespace: string | undefined, patch: object): Promise<T>;
  /** RFC 6902 JSON patch of the main resource. */
  jsonPatch(name: string, namespace: string | undefined, ops: JsonPatchOp[]): Promise<T>;
  /**
   * Server-side apply of `obj` (a manifest: apiVersion, kind, metadata.name, the fields it
   * declares): creates the object if missing, takes ownership of the declared fields, removes
   * the fields this manager applied before and no longer declares. A field owned by another
   * manager with a different value fails with Conflict unless `force`.
   */
  applyPatch(obj: T, opts: ApplyPatchOptions): Promise<T>;
  /** Merge patch of the status subresource. */
  patchStatus(name: string, namespace: string | undefined, status: object): Promise<T>;
  /**
   * RFC 6902 JSON patch of the status subresource (paths are of the whole object, e.g.
   * `/status/phase`). A failed `test` op — typically `{op:'test', path:'/metadata/resourceVersion'}`
   * guarding a write against a concurrent one — rejects with code Conflict.
   */
  jsonPatchStatus(name: string, namespace: string | undefined, ops: JsonPatchOp[]): Promise<T>;
  /** Deletes; resolves to false when the object was already gone. */
  delete(name: string, namespace?: string): Promise<boolean>;
  /**
   * Starts an informer (list + watch, restarted on errors) and calls `onEvent` for every change.
   * Resolves once the initial list is in the cache.
   */
  inform(opts: ListOptions, onEvent: (type: WatchEventType, obj: T) => void): Promise<InformerHandle<T>>;
}
