// Client-side apply, shared by `kvz apply` and the watched directory: create the object if it
// is missing, otherwise send a merge patch that sets the manifest's fields and removes the
// fields the last applied manifest had and this one dropped (kubectl's last-applied
// annotation, so kubectl and kvz can take turns on the same object).

import type { KubeObject } from '../api/types.js';
import { KvzError, errorCode, errorMessage } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { ResourceClient, ResourceRef } from '../core/resource-client.js';
import { Revert } from '../core/revert.js';
import { apiVersionOf, type ApplyTarget } from './kinds.js';
import type { ManifestDoc, ManifestProblem } from './manifests.js';
import { isObject, threeWayMergePatch, twoWayMergePatch, type JsonObject } from './merge-patch.js';

export const LAST_APPLIED_ANNOTATION = 'kubectl.kubernetes.io/last-applied-configuration';
/** Absolute path of the watched-directory file that declares the object (its owner). */
export const SOURCE_FILE_ANNOTATION = 'kubevz.io/source-file';
/** 0-based index of the object's document in that file. */
export const SOURCE_DOC_ANNOTATION = 'kubevz.io/source-doc';

export type ApplyAction = 'created' | 'configured' | 'unchanged';

/** Where an object lives: enough to get or delete it again. */
export interface ObjectRef {
  ref: ResourceRef;
  namespace?: string;
  name: string;
}

export interface AppliedObject extends ObjectRef {
  doc: ManifestDoc;
  action: ApplyAction;
  /** The object as the server returned it. */
  object: KubeObject;
}

export interface ApplyReport {
  applied: AppliedObject[];
  /** Documents the server or the checks rejected, with the field when known. */
  problems: ManifestProblem[];
}

export interface ApplyOptions {
  /** Namespace for namespaced objects whose manifest has none. Default "default". */
  namespace?: string;
  /** Extra annotations written on each object (ownership). */
  annotations?: (doc: ManifestDoc) => Record<string, string>;
  /**
   * All or nothing: stop at the first rejected document and undo what this call already
   * changed (the watched directory: an invalid file changes nothing). Otherwise every document
   * is tried and each rejection is reported (kubectl's behaviour).
   */
  allOrNothing?: boolean;
  /** Called for each object before anything is written; a returned problem rejects the document. */
  claim?: (doc: ManifestDoc, obj: ObjectRef) => ManifestProblem | undefined;
  log?: Logger;
}

/** `VirtualEnvironment.kubevz.io/default/web1`: stable key of an object across files and runs. */
export function objectId(o: ObjectRef): string {
  return `${o.ref.kind}.${o.ref.group}/${o.namespace ?? ''}/${o.name}`;
}

/** `virtualenvironment.kubevz.io/web1`, as kubectl names objects in its output. */
export function displayName(o: ObjectRef): string {
  return `${o.ref.kind.toLowerCase()}${o.ref.group ? `.${o.ref.group}` : ''}/${o.name}`;
}

/** Applies `docs` in order. Throws only for errors that are not the manifest's fault (server unreachable, ...). */
export async function applyObjects(target: ApplyTarget, docs: ManifestDoc[], opts: ApplyOptions = {}): Promise<ApplyReport> {
  const problems: ManifestProblem[] = [];
  // Resolve every kind first, so an unknown kind in document 3 stops an all-or-nothing apply before any write.
  const planned: { doc: ManifestDoc; obj: ObjectRef }[] = [];
  for (const doc of docs) {
    const { apiVersion, kind, metadata } = doc.object as { apiVersion: string; kind: string; metadata: { name: string; namespace?: string } };
    const ref = await target.resolve(apiVersion, kind);
    if (!ref) {
      problems.push({ file: doc.file, index: doc.index, line: doc.lineOf?.('kind') ?? doc.line, field: 'kind', message: `no kind "${kind}" is served for apiVersion "${apiVersion}" by ${target.server}; is its CRD installed?` });
      continue;
    }
    const obj: ObjectRef = { ref, name: metadata.name, namespace: ref.namespaced ? (metadata.namespace ?? opts.namespace ?? 'default') : undefined };
    const claimed = opts.claim?.(doc, obj);
    if (claimed) {
      problems.push(claimed);
      continue;
    }
    planned.push({ doc, obj });
  }
  if (opts.allOrNothing && problems.length > 0) return { applied: [], problems };

  const applied: AppliedObject[] = [];
  const revert = new Revert(opts.log);
  try {
    for (const { doc, obj } of planned) {
      const client = target.client(obj.ref);
      try {
        const { undo, ...out } = await applyOne(client, doc, obj, opts.annotations?.(doc) ?? {});
        applied.push(out);
        if (undo) revert.add(`undo apply of ${displayName(obj)}`, undo);
      } catch (err) {
        if (!isManifestError(err) && (opts.allOrNothing || errorCode(err) === 'Unavailable')) throw err;
        problems.push(...problemsFrom(err, doc));
        if (opts.allOrNothing) {
          await revert.fail();
          return { applied: [], problems };
        }
      }
    }
  } catch (err) {
    await revert.fail();
    throw err;
  }
  revert.success();
  return { applied, problems };
}

/** A rejection that editing the manifest fixes (as opposed to a server that is down). */
function isManifestError(err: unknown): boolean {
  return errorCode(err) === 'Invalid';
}

/** The manifest as it is sent: without status and server-set metadata, with the namespace filled in. */
function desiredObject(doc: ManifestDoc, obj: ObjectRef, annotations: Record<string, string>): JsonObject {
  const desired = structuredClone(doc.object) as JsonObject;
  delete desired.status;
  const meta = { ...(desired.metadata as JsonObject) };
  for (const k of ['resourceVersion', 'uid', 'creationTimestamp', 'generation', 'managedFields', 'deletionTimestamp', 'deletionGracePeriodSeconds', 'selfLink']) delete meta[k];
  if (obj.namespace !== undefined) meta.namespace = obj.namespace;
  else delete meta.namespace;
  const ann = { ...(isObject(meta.annotations) ? (meta.annotations as Record<string, string>) : {}), ...annotations };
  delete ann[LAST_APPLIED_ANNOTATION];
  if (Object.keys(ann).length > 0) meta.annotations = ann;
  else delete meta.annotations;
  desired.metadata = meta;
  return desired;
}

function withLastApplied(desired: JsonObject): JsonObject {
  const out = structuredClone(desired);
  const meta = out.metadata as JsonObject;
  meta.annotations = { ...((meta.annotations as Record<string, string>) ?? {}), [LAST_APPLIED_ANNOTATION]: `${JSON.stringify(desired)}\n` };
  return out;
}

function lastApplied(live: KubeObject): JsonObject | undefined {
  const raw = live.metadata?.annotations?.[LAST_APPLIED_ANNOTATION];
  if (!raw) return undefined;
  try {
    const v: unknown = JSON.parse(raw);
    return isObject(v) ? v : undefined;
  } catch {
    return undefined;
  }
}

/** The parts of a live object that apply may change, for undoing an apply. */
function userView(o: KubeObject): JsonObject {
  const { status: _status, metadata, ...rest } = structuredClone(o) as JsonObject;
  const m = (metadata ?? {}) as JsonObject;
  const meta: JsonObject = {};
  if (m.labels) meta.labels = m.labels;
  if (m.annotations) meta.annotations = m.annotations;
  return { ...rest, metadata: meta };
}

const MAX_ATTEMPTS = 5;

async function applyOne(
  client: ResourceClient,
  doc: ManifestDoc,
  obj: ObjectRef,
  annotations: Record<string, string>,
): Promise<AppliedObject & { undo?: () => Promise<void> }> {
  const desired = desiredObject(doc, obj, annotations);
  const body = withLastApplied(desired);
  for (let attempt = 1; ; attempt++) {
    const live = await client.get(obj.name, obj.namespace);
    try {
      if (!live) {
        const created = await client.create(body as KubeObject);
        return {
          ...obj, doc, action: 'created', object: created,
          undo: async () => {
            await client.delete(obj.name, obj.namespace);
          },
        };
      }
      if (live.metadata?.deletionTimestamp) {
        throw new KvzError('Conflict', `${displayName(obj)} is being deleted (finalizers: ${(live.metadata.finalizers ?? []).join(', ') || 'none'}); apply again once it is gone`);
      }
      const patch = threeWayMergePatch(lastApplied(live), body, live as JsonObject);
      if (Object.keys(patch).length === 0) return { ...obj, doc, action: 'unchanged', object: live };
      // Conditional on the version the patch was computed from: a concurrent write means recompute.
      patch.metadata = { ...((patch.metadata as JsonObject) ?? {}), resourceVersion: live.metadata?.resourceVersion };
      const updated = await client.mergePatch(obj.name, obj.namespace, patch);
      const back = twoWayMergePatch(userView(updated), userView(live));
      return {
        ...obj, doc, action: 'configured', object: updated,
        undo: async () => {
          if (Object.keys(back).length > 0) await client.mergePatch(obj.name, obj.namespace, back);
        },
      };
    } catch (err) {
      const code = errorCode(err);
      if ((code === 'AlreadyExists' || (code === 'Conflict' && !live?.metadata?.deletionTimestamp)) && attempt < MAX_ATTEMPTS) continue;
      throw err;
    }
  }
}

/** The field-level causes of a 422 (from KvzError details, or the Status body client-node kept). */
export function statusCauses(err: unknown): { field?: string; message: string }[] {
  const e = err as { details?: { causes?: unknown }; cause?: { body?: unknown } };
  let causes: unknown = e?.details?.causes;
  if (!Array.isArray(causes)) {
    try {
      const body = typeof e?.cause?.body === 'string' ? JSON.parse(e.cause.body) : e?.cause?.body;
      causes = body?.details?.causes;
    } catch {
      causes = undefined;
    }
  }
  if (!Array.isArray(causes)) return [];
  return causes
    .filter((c): c is { field?: string; message?: string } => isObject(c))
    .map((c) => ({ field: typeof c.field === 'string' && c.field ? c.field : undefined, message: String(c.message ?? 'invalid') }));
}

function problemsFrom(err: unknown, doc: ManifestDoc): ManifestProblem[] {
  const causes = statusCauses(err);
  const base = { file: doc.file, index: doc.index };
  if (causes.length === 0) return [{ ...base, line: doc.line, message: errorMessage(err) }];
  return causes.map((c) => ({ ...base, line: (c.field && doc.lineOf?.(c.field)) || doc.line, field: c.field, message: c.message }));
}

/** Deletes objects; with `owner`, only those whose source-file annotation still names it. */
export async function deleteObjects(target: ApplyTarget, objs: ObjectRef[], opts: { owner?: string } = {}): Promise<ObjectRef[]> {
  const deleted: ObjectRef[] = [];
  for (const o of objs) {
    const client = target.client(o.ref);
    if (opts.owner !== undefined) {
      const live = await client.get(o.name, o.namespace);
      // Another file (or a person with kubectl) took the object over: it is not ours to delete.
      if (!live || live.metadata?.annotations?.[SOURCE_FILE_ANNOTATION] !== opts.owner) continue;
    }
    if (await client.delete(o.name, o.namespace)) deleted.push(o);
  }
  return deleted;
}

export { apiVersionOf };
