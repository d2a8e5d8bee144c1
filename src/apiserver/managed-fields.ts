// Server-side apply and field ownership (metadata.managedFields), after structured-merge-diff:
// every write records which manager set which fields. `apply` merges an applied configuration
// along the schema, refuses to change fields another manager owns with a 409 Conflict unless
// forced (then ownership moves), and removes fields the manager applied before but no longer
// sends when nobody else owns them. Non-apply writes record `Update` ownership of what they
// changed and take it from whoever had it (updates never conflict).

import type { SchemaNode } from '../api/index.js';
import { changedAt, FieldSet, type FieldPath, fieldSetOf, mergeApplied, METADATA_SCHEMA, pathString, removeAt, TRACKED_METADATA, valueAt } from './field-set.js';
import { isObj } from './object-meta.js';
import type { ResourceDef } from './resources.js';
import { ApiError } from './status-errors.js';
import type { Obj } from './store.js';

export type Operation = 'Apply' | 'Update';

export interface ManagerEntry {
  manager: string;
  operation: Operation;
  apiVersion: string;
  time: string;
  subresource?: string;
  fields: FieldSet;
}

export interface ManagedContext {
  def: ResourceDef;
  /** apiVersion the request used (recorded per entry). */
  apiVersion: string;
  schema: SchemaNode;
  subresource?: 'status';
  manager: string;
  time: string;
}

const sameManager = (e: ManagerEntry, manager: string, op: Operation, sub: string | undefined) =>
  e.manager === manager && e.operation === op && (e.subresource ?? '') === (sub ?? '');

export function decodeManagedFields(v: unknown): ManagerEntry[] {
  if (!Array.isArray(v)) return [];
  const out: ManagerEntry[] = [];
  for (const e of v) {
    if (!isObj(e) || typeof e.manager !== 'string' || (e.operation !== 'Apply' && e.operation !== 'Update')) continue;
    const entry: ManagerEntry = {
      manager: e.manager,
      operation: e.operation,
      apiVersion: typeof e.apiVersion === 'string' ? e.apiVersion : '',
      time: typeof e.time === 'string' ? e.time : '',
      fields: FieldSet.fromFieldsV1(e.fieldsV1),
    };
    if (typeof e.subresource === 'string' && e.subresource !== '') entry.subresource = e.subresource;
    out.push(entry);
  }
  return out;
}

export function encodeManagedFields(entries: ManagerEntry[]): Record<string, unknown>[] {
  return entries.map((e) => ({
    manager: e.manager,
    operation: e.operation,
    apiVersion: e.apiVersion,
    time: e.time,
    fieldsType: 'FieldsV1',
    fieldsV1: e.fields.toFieldsV1(),
    ...(e.subresource ? { subresource: e.subresource } : {}),
  }));
}

/** The schema SSA walks: the CRD's, with ObjectMeta's ownable part. */
export function rootSchema(crdSchema: SchemaNode | undefined): SchemaNode {
  const props = isObj(crdSchema?.properties) ? (crdSchema.properties as Record<string, SchemaNode>) : {};
  return { ...(crdSchema ?? {}), type: 'object', properties: { ...props, metadata: METADATA_SCHEMA } };
}

/**
 * The part of an object a write through this endpoint can own: on the main endpoint everything
 * but apiVersion/kind/server metadata (and status, when it is a subresource); on /status only status.
 */
export function trackedView(obj: Record<string, unknown> | undefined, def: ResourceDef, subresource: string | undefined): Record<string, unknown> {
  if (!obj) return {};
  if (subresource === 'status') return obj.status === undefined ? {} : { status: obj.status };
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(obj)) {
    if (k === 'apiVersion' || k === 'kind' || (k === 'status' && def.statusSubresource)) continue;
    if (k === 'metadata') {
      const m: Record<string, unknown> = {};
      if (isObj(v)) for (const t of TRACKED_METADATA) if (v[t] !== undefined) m[t] = v[t];
      if (Object.keys(m).length > 0) out.metadata = m;
      continue;
    }
    out[k] = v;
  }
  return out;
}

/** Writes a tracked view back over the full object (the inverse of trackedView). */
function withView(full: Record<string, unknown>, view: Record<string, unknown>, def: ResourceDef, subresource: string | undefined): Obj {
  const out = structuredClone(full) as Obj;
  if (subresource === 'status') {
    if (view.status === undefined) delete out.status;
    else out.status = view.status;
    return out;
  }
  for (const k of Object.keys(out)) if (!['apiVersion', 'kind', 'metadata'].includes(k) && !(k === 'status' && def.statusSubresource)) delete out[k];
  const m = { ...(isObj(out.metadata) ? out.metadata : {}) };
  const vm = isObj(view.metadata) ? view.metadata : {};
  for (const t of TRACKED_METADATA) {
    if (vm[t] === undefined) delete m[t];
    else m[t] = vm[t];
  }
  for (const [k, v] of Object.entries(view)) if (k !== 'metadata') out[k] = v;
  out.metadata = m;
  return out;
}

/** Records an `Update` by `ctx.manager` that turned `old` into `next`. */
export function recordUpdate(ctx: ManagedContext, entries: ManagerEntry[], old: Obj | undefined, next: Obj): ManagerEntry[] {
  const before = trackedView(old, ctx.def, ctx.subresource);
  const after = trackedView(next, ctx.def, ctx.subresource);
  const oldSet = fieldSetOf(before, ctx.schema);
  const newSet = fieldSetOf(after, ctx.schema);
  const changed = FieldSet.of([...newSet].filter((p) => !oldSet.has(p) || changedAt(before, after, p)));
  const removed = oldSet.minus(newSet);
  if (changed.size === 0 && removed.size === 0) return entries;
  const taken = changed.union(removed);
  const out = entries.map((e) => ({ ...e, fields: e.fields.minus(taken) }));
  let mine = out.find((e) => sameManager(e, ctx.manager, 'Update', ctx.subresource));
  if (!mine) {
    mine = { manager: ctx.manager, operation: 'Update', apiVersion: ctx.apiVersion, time: ctx.time, fields: new FieldSet() };
    if (ctx.subresource) mine.subresource = ctx.subresource;
    out.push(mine);
  }
  mine.fields = mine.fields.union(changed).minus(removed);
  mine.time = ctx.time;
  mine.apiVersion = ctx.apiVersion;
  return out;
}

export interface ApplyResult {
  object: Obj;
  entries: ManagerEntry[];
}

/** Server-side apply of `applied` by `ctx.manager` onto `live` (undefined: the object is created). */
export function applyConfiguration(ctx: ManagedContext, entries: ManagerEntry[], live: Obj | undefined, applied: Obj, force: boolean): ApplyResult {
  const appliedView = trackedView(applied, ctx.def, ctx.subresource);
  const liveView = trackedView(live, ctx.def, ctx.subresource);
  const appliedSet = fieldSetOf(appliedView, ctx.schema);
  const merged = mergeApplied(liveView, appliedView, ctx.schema) as Record<string, unknown>;
  const isMine = (e: ManagerEntry) => sameManager(e, ctx.manager, 'Apply', ctx.subresource);
  let out = entries.map((e) => ({ ...e }));

  const conflicts: { entry: ManagerEntry; path: FieldPath }[] = [];
  for (const e of out) {
    if (isMine(e)) continue;
    for (const p of appliedSet.intersect(e.fields)) if (changedAt(liveView, merged, p)) conflicts.push({ entry: e, path: p });
  }
  if (conflicts.length > 0) {
    if (!force) throw conflictError(conflicts);
    for (const c of conflicts) c.entry.fields = c.entry.fields.minus(FieldSet.of([c.path]));
  }

  const prev = out.find(isMine)?.fields ?? new FieldSet();
  const others = out.filter((e) => !isMine(e));
  const ownedElsewhere = (p: FieldPath) => others.some((e) => e.fields.hasAtOrBelow(p));
  const ownedByAnyone = (p: FieldPath) => appliedSet.has(p) || others.some((e) => e.fields.has(p));
  // Shallowest first: removing a list item takes its fields with it (its key fields included).
  const dropped = [...prev.minus(appliedSet)].sort((a, b) => a.length - b.length);
  for (const p of dropped) if (!ownedElsewhere(p) && !appliedSet.hasAtOrBelow(p) && valueAt(merged, p).found) removeAt(merged, p, ownedByAnyone);

  out = out.filter((e) => !isMine(e));
  const mine: ManagerEntry = { manager: ctx.manager, operation: 'Apply', apiVersion: ctx.apiVersion, time: ctx.time, fields: appliedSet };
  if (ctx.subresource) mine.subresource = ctx.subresource;
  const prevEntry = entries.find(isMine);
  // An unchanged apply keeps its entry (and time), so a repeated apply writes nothing.
  if (prevEntry && prevEntry.fields.equals(appliedSet)) mine.time = prevEntry.time;
  out.push(mine);
  const base = live ?? { apiVersion: applied.apiVersion, kind: applied.kind, metadata: { ...applied.metadata } };
  return { object: withView(base, merged, ctx.def, ctx.subresource), entries: out };
}

/** Drops owned paths the final object no longer has, and managers left owning nothing. */
export function settle(entries: ManagerEntry[], final: Obj): ManagerEntry[] {
  return entries
    .map((e) => ({ ...e, fields: FieldSet.of([...e.fields].filter((p) => valueAt(final, p).found)) }))
    .filter((e) => e.fields.size > 0);
}

/** Same owners and fields (times ignored): a write that changes nothing else is then a no-op. */
export function sameOwnership(a: ManagerEntry[], b: ManagerEntry[]): boolean {
  return a.length === b.length && a.every((e) => b.some((f) => sameManager(f, e.manager, e.operation, e.subresource) && f.fields.equals(e.fields) && f.apiVersion === e.apiVersion));
}

function printManager(e: ManagerEntry): string {
  let s = JSON.stringify(e.manager);
  if (e.subresource) s += ` with subresource ${JSON.stringify(e.subresource)}`;
  if (e.operation === 'Update') s += ` using ${e.apiVersion}`;
  return s;
}

/** 409 Conflict with one FieldManagerConflict cause per field (apimachinery's NewConflictError). */
function conflictError(conflicts: { entry: ManagerEntry; path: FieldPath }[]): ApiError {
  const causes = conflicts.map((c) => ({ reason: 'FieldManagerConflict', message: `conflict with ${printManager(c.entry)}: ${pathString(c.path)}`, field: pathString(c.path) }));
  let message: string;
  if (conflicts.length === 1) {
    const c = conflicts[0] as { entry: ManagerEntry; path: FieldPath };
    message = `Apply failed with 1 conflict: conflict with ${printManager(c.entry)}: ${pathString(c.path)}`;
  } else {
    const by = new Map<string, string[]>();
    for (const c of conflicts) by.set(printManager(c.entry), [...(by.get(printManager(c.entry)) ?? []), pathString(c.path)]);
    const lines = [...by.keys()].sort().flatMap((m) => [`conflicts with ${m}:`, ...(by.get(m) ?? []).map((p) => `- ${p}`)]);
    message = `Apply failed with ${conflicts.length} conflicts: ${lines.join('\n')}`;
  }
  return new ApiError(409, 'Conflict', message, { causes });
}

/** The manager name of a non-apply write: `fieldManager`, else the User-Agent up to its first "/". */
export function managerFromRequest(fieldManager: string | undefined, userAgent: string | undefined): string {
  if (fieldManager) return fieldManager;
  const ua = (userAgent ?? '').split('/')[0]?.trim() ?? '';
  return (ua || 'unknown').slice(0, 128);
}
