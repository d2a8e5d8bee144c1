// Server-side apply, shared by `kvz apply` and the sources (watched directory, Git): each
// document is sent as an apply patch under a field manager, so the server tracks which fields
// each source owns, removes the ones a source stopped declaring, and reports (or, forced,
// resolves) conflicts with other writers. Only the standard PATCH
// `application/apply-patch+yaml` ?fieldManager=&force=&dryRun=All is used, so the same code
// works against the embedded API server and a real cluster.

import { createHash } from 'node:crypto';
import type { KubeObject } from '../api/types.js';
import { errorCode, errorMessage } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { ResourceClient, ResourceRef } from '../core/resource-client.js';
import { apiVersionOf, type ApplyTarget } from './kinds.js';
import type { ManifestDoc, ManifestProblem } from './manifests.js';
import { isObject, type JsonObject } from './merge-patch.js';

/** kubectl's client-side apply annotation; server-side apply neither needs nor writes it. */
export const LAST_APPLIED_ANNOTATION = 'kubectl.kubernetes.io/last-applied-configuration';
/** The source that declares the object (`dir:/srv/manifests`, `git:URL#branch:path`). */
export const SOURCE_ANNOTATION = 'kubevz.io/source';
/** The file of that source that declares the object (absolute for a directory, repo-relative for Git). */
export const SOURCE_FILE_ANNOTATION = 'kubevz.io/source-file';
/** 0-based index of the object's document in that file. */
export const SOURCE_DOC_ANNOTATION = 'kubevz.io/source-doc';
/** Field manager of `kvz apply` (kubectl's is `kubectl`). */
export const KVZ_FIELD_MANAGER = 'kvz';

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
  /** Owner of the applied fields; at most 128 characters (see fieldManagerName). */
  fieldManager: string;
  /** Take over fields other managers own instead of reporting a conflict. */
  force?: boolean;
  /** Namespace for namespaced objects whose manifest has none. Default "default". */
  namespace?: string;
  /** Extra annotations written on each object (ownership). */
  annotations?: (doc: ManifestDoc) => Record<string, string>;
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

/**
 * `prefix:location`, kept within the API's 128-character limit: a long location is shortened
 * to a hash and its tail, so the name stays stable and still readable.
 */
export function fieldManagerName(prefix: string, location: string): string {
  const full = `${prefix}:${location}`;
  if (full.length <= 128) return full;
  const hash = createHash('sha256').update(location).digest('hex').slice(0, 12);
  const room = 128 - prefix.length - hash.length - 2;
  return `${prefix}:${hash}:${location.slice(-room)}`;
}

export interface PlannedDoc {
  doc: ManifestDoc;
  obj: ObjectRef;
}

/** Resolves every document's kind; unknown kinds are problems (nothing is sent for them). */
export async function planObjects(target: ApplyTarget, docs: ManifestDoc[], namespace?: string): Promise<{ planned: PlannedDoc[]; problems: ManifestProblem[] }> {
  const planned: PlannedDoc[] = [];
  const problems: ManifestProblem[] = [];
  for (const doc of docs) {
    const { apiVersion, kind, metadata } = doc.object as { apiVersion: string; kind: string; metadata: { name: string; namespace?: string } };
    const ref = await target.resolve(apiVersion, kind);
    if (!ref) {
      problems.push({ file: doc.file, index: doc.index, line: doc.lineOf?.('kind') ?? doc.line, field: 'kind', message: `no kind "${kind}" is served for apiVersion "${apiVersion}" by ${target.server}; is its CRD installed?` });
      continue;
    }
    planned.push({ doc, obj: { ref, name: metadata.name, namespace: ref.namespaced ? (metadata.namespace ?? namespace ?? 'default') : undefined } });
  }
  return { planned, problems };
}

/** The manifest as it is applied: without status and server-set metadata, with the namespace filled in. */
export function applyConfiguration(doc: ManifestDoc, obj: ObjectRef, annotations: Record<string, string> = {}): KubeObject {
  const desired = structuredClone(doc.object) as JsonObject;
  delete desired.status;
  const meta = { ...(desired.metadata as JsonObject) };
  for (const k of ['resourceVersion', 'uid', 'creationTimestamp', 'generation', 'managedFields', 'deletionTimestamp', 'deletionGracePeriodSeconds', 'selfLink']) delete meta[k];
  if (obj.namespace !== undefined) meta.namespace = obj.namespace;
  else delete meta.namespace;
  const ann = { ...(isObject(meta.annotations) ? (meta.annotations as Record<string, string>) : {}), ...annotations };
  // A copy from `kubectl get -o yaml` of a client-side-applied object: not part of what is declared.
  delete ann[LAST_APPLIED_ANNOTATION];
  if (Object.keys(ann).length > 0) meta.annotations = ann;
  else delete meta.annotations;
  desired.metadata = meta;
  desired.apiVersion = apiVersionOf(obj.ref);
  return desired as unknown as KubeObject;
}

/** What an apply did, from the resourceVersion before (undefined: no object) and after. */
export function actionOf(before: string | undefined, after: KubeObject): ApplyAction {
  if (before === undefined || before === '') return 'created';
  return after.metadata?.resourceVersion === before ? 'unchanged' : 'configured';
}

/**
 * Applies `docs` one by one, like `kubectl apply --server-side`: every document is tried and
 * each rejection is reported. Throws only for errors that are not the manifest's fault.
 */
export async function applyObjects(target: ApplyTarget, docs: ManifestDoc[], opts: ApplyOptions): Promise<ApplyReport> {
  const { planned, problems } = await planObjects(target, docs, opts.namespace);
  const applied: AppliedObject[] = [];
  for (const { doc, obj } of planned) {
    const client: ResourceClient = target.client(obj.ref);
    try {
      const before = (await client.get(obj.name, obj.namespace))?.metadata?.resourceVersion;
      const object = await client.applyPatch(applyConfiguration(doc, obj, opts.annotations?.(doc)), { fieldManager: opts.fieldManager, force: opts.force });
      applied.push({ ...obj, doc, action: actionOf(before, object), object });
    } catch (err) {
      if (!isManifestError(err)) throw err;
      problems.push(...problemsFrom(err, doc));
    }
  }
  return { applied, problems };
}

/** A rejection that editing the manifest (or forcing) fixes, as opposed to a server that is down. */
export function isManifestError(err: unknown): boolean {
  const code = errorCode(err);
  return code === 'Invalid' || code === 'Conflict';
}

/** The field-level causes of a 422/409 (from KvzError details, or the Status body client-node kept). */
export function statusCauses(err: unknown): { field?: string; message: string; reason?: string }[] {
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
    .filter((c): c is { field?: string; message?: string; reason?: string } => isObject(c))
    .map((c) => ({
      field: typeof c.field === 'string' && c.field ? c.field.replace(/^\./, '') : undefined,
      message: String(c.message ?? 'invalid'),
      reason: typeof c.reason === 'string' ? c.reason : undefined,
    }));
}

/** The problems a rejected apply means for its document, with lines when the YAML has the field. */
export function problemsFrom(err: unknown, doc: ManifestDoc): ManifestProblem[] {
  const causes = statusCauses(err);
  const base = { file: doc.file, index: doc.index };
  const conflict = errorCode(err) === 'Conflict';
  const hint = conflict ? ': the field is owned by another field manager with a different value; change it back there, or apply with force (kvz apply --force-conflicts) to take it over' : '';
  if (causes.length === 0) return [{ ...base, line: doc.line, message: `${errorMessage(err)}${hint}` }];
  return causes.map((c) => ({ ...base, line: (c.field && doc.lineOf?.(c.field)) || doc.line, field: c.field, message: `${c.message}${hint}` }));
}
