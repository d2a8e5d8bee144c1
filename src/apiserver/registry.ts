// The generic registry: Kubernetes write semantics on top of the store (kube-api-notes §5, §7).
// Create/update/patch/delete with bookkeeping (uid, generation, timestamps), optimistic
// concurrency on resourceVersion, status-subresource rules, finalizers and deletionTimestamp,
// schema validation with pruning and defaulting, and a minimal background garbage collector.

import { randomUUID } from 'node:crypto';
import type { CustomResourceDefinition, FieldError } from '../api/index.js';
import { isCrd } from '../api/index.js';
import type { Logger } from '../core/index.js';
import { isObj, jsonEqual, meta, nowTimestamp, randomSuffix, subdomainProblem } from './object-meta.js';
import { applyConfiguration, decodeManagedFields, encodeManagedFields, type ManagedContext, type ManagerEntry, recordUpdate, rootSchema, sameOwnership, settle } from './managed-fields.js';
import { jsonPatch, mergePatch } from './patch.js';
import { CRD_RESOURCE, NAMESPACE_RESOURCE, type ResourceDef, type ResourceTable, resourceFromCrd } from './resources.js';
import { type Matcher, parseFieldSelector, parseLabelSelector, pinnedName } from './selectors.js';
import { errors } from './status-errors.js';
import { type Obj, type ScanRange, type Store, StoreConflict } from './store.js';

export type FieldValidation = 'Strict' | 'Warn' | 'Ignore';
export type PatchType = 'merge' | 'json' | 'apply';

export interface WriteOptions {
  subresource?: 'status';
  dryRun?: boolean;
  fieldValidation?: FieldValidation;
  fieldManager?: string;
  /** Who writes, for managedFields of non-apply writes: fieldManager, else the User-Agent prefix. */
  manager?: string;
  /** Apply: take ownership of conflicting fields instead of failing with 409. */
  force?: boolean;
  /** Set internally by an apply: the managers after it, instead of recording an Update. */
  applyEntries?: ManagerEntry[];
  /** Filled with `Warning:` header texts (unknown fields under fieldValidation=Warn). */
  warnings?: string[];
}

export interface ListOptions {
  labelSelector?: string;
  fieldSelector?: string;
  limit?: number;
  continueToken?: string;
}

/** One page of a list; `continueToken` is set when more items follow. */
export interface ListPage<T> {
  items: T[];
  rev: number;
  continueToken?: string;
}

/** Receives a list as stored JSON texts: its revision and continue token, then each item, then the end. */
export interface RawListSink {
  start(rev: number, continueToken: string | undefined): void;
  /** One item's JSON text as UTF-8. */
  item(json: Buffer): void;
  end(): void;
}

/** The stored objects, parsed, that match (all without a matcher). */
function* parsedMatching(texts: Iterable<string>, match: Matcher | undefined): IterableIterator<Obj> {
  for (const text of texts) {
    const o = JSON.parse(text) as Obj;
    if (!match || match(o)) yield o;
  }
}

/** The stored texts whose objects match, as UTF-8. */
function* matching(texts: Iterable<string>, match: Matcher): IterableIterator<Buffer> {
  for (const text of texts) if (match(JSON.parse(text) as Obj)) yield Buffer.from(text);
}

/** Up to `limit` rows, and whether more follow (reads one row past the limit, no further). */
function takePage<T>(rows: Iterable<T>, limit: number): { items: T[]; more: boolean } {
  const items: T[] = [];
  for (const row of rows) {
    if (items.length === limit) return { items, more: true };
    items.push(row);
  }
  return { items, more: false };
}

/** A page, with a continue token after `last` when the page was cut at its limit. */
function page<T>(items: T[], rev: number, last: Obj | undefined): ListPage<T> {
  if (!last) return { items, rev };
  const token = Buffer.from(JSON.stringify({ rv: rev, after: `${meta(last).namespace ?? ''}/${meta(last).name ?? ''}` })).toString('base64url');
  return { items, rev, continueToken: token };
}

export interface DeleteOptions {
  preconditions?: { uid?: string; resourceVersion?: string };
  propagationPolicy?: string;
  dryRun?: boolean;
}

export interface RegistryDeps {
  store: Store;
  resources: ResourceTable;
  log: Logger;
  now?: () => Date;
}

const invalidMeta = (def: ResourceDef, name: string, field: string, message: string, reason: FieldError['reason'] = 'FieldValueInvalid') =>
  errors.invalid(def, name, [{ reason, field, message }]);

export class Registry {
  private readonly store: Store;
  private readonly resources: ResourceTable;
  private readonly log: Logger;
  private readonly now: () => Date;

  constructor(deps: RegistryDeps) {
    this.store = deps.store;
    this.resources = deps.resources;
    this.log = deps.log;
    this.now = deps.now ?? (() => new Date());
  }

  get(def: ResourceDef, ns: string, name: string): Obj {
    const o = this.store.get(def.key, ns, name);
    if (!o) throw errors.notFound(def, name);
    return o;
  }

  list(def: ResourceDef, ns: string | undefined, opts: ListOptions = {}): ListPage<Obj> {
    const plan = this.listPlan(def, ns, opts);
    // Rows come in list order and are parsed one at a time: a page stops reading at its limit.
    const { items, more } = takePage(parsedMatching(this.store.scan(def.key, plan.range), plan.match), plan.limit);
    return page(items, plan.rev, more ? items[items.length - 1] : undefined);
  }

  /**
   * The same list as `list`, handed to `sink` as the stored JSON texts (each byte for byte what
   * JSON.stringify of the parsed object gives); objects are parsed only to match selectors.
   * Without a limit nothing is held: items go from the database to the sink one by one. A page
   * (limit) is collected first, since its continue token comes before its items.
   */
  listRaw(def: ResourceDef, ns: string | undefined, opts: ListOptions, sink: RawListSink): void {
    const plan = this.listPlan(def, ns, opts);
    const { match } = plan;
    // Unfiltered: the stored bytes as they are. Filtered: each text parsed to match it.
    const rows: Iterable<Buffer> = match ? matching(this.store.scan(def.key, plan.range), match) : this.store.scanBytes(def.key, plan.range);
    if (plan.limit === Infinity) {
      sink.start(plan.rev, undefined);
      for (const json of rows) sink.item(json);
      sink.end();
      return;
    }
    const { items: bodies, more } = takePage(rows, plan.limit);
    const last = bodies[bodies.length - 1];
    sink.start(plan.rev, page(bodies, plan.rev, more && last !== undefined ? (JSON.parse(last.toString()) as Obj) : undefined).continueToken);
    for (const json of bodies) sink.item(json);
    sink.end();
  }

  /** Where a list reads (namespace, pinned name, continue position), what it keeps, its size and revision. */
  private listPlan(def: ResourceDef, ns: string | undefined, opts: ListOptions): { range: ScanRange; match?: Matcher; limit: number; rev: number } {
    const range: ScanRange = {};
    if (ns !== undefined) range.namespace = ns;
    const pinned = pinnedName(opts.fieldSelector);
    if (pinned !== undefined) range.name = pinned;
    let rev: number | undefined;
    if (opts.continueToken) {
      let after: string;
      try {
        const t = JSON.parse(Buffer.from(opts.continueToken, 'base64url').toString()) as { rv: number; after: string };
        if (typeof t.rv !== 'number' || typeof t.after !== 'string' || !t.after.includes('/')) throw new Error('malformed');
        after = t.after;
        rev = t.rv;
      } catch {
        throw errors.badRequest('continue key is not valid');
      }
      if (rev < this.store.compactRev()) throw errors.expired('The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.');
      // Namespaces and names cannot contain "/": the first one separates them.
      const slash = after.indexOf('/');
      range.after = { namespace: after.slice(0, slash), name: after.slice(slash + 1) };
    }
    const plan: { range: ScanRange; match?: Matcher; limit: number; rev: number } = {
      range,
      limit: opts.limit && opts.limit > 0 ? opts.limit : Infinity,
      // Continuing lists read the current state, not a snapshot at the first page's revision (approximation).
      rev: rev ?? this.store.currentRev(),
    };
    if (opts.labelSelector || opts.fieldSelector) {
      const labels = parseLabelSelector(opts.labelSelector);
      const fields = parseFieldSelector(opts.fieldSelector);
      plan.match = (o) => labels(o) && fields(o);
    }
    return plan;
  }

  create(def: ResourceDef, version: string, ns: string, body: unknown, opts: WriteOptions = {}): Obj {
    if (!isObj(body)) throw errors.badRequest('the request body must be a JSON or YAML object');
    const obj = structuredClone(body) as Obj;
    const m = { ...(isObj(obj.metadata) ? obj.metadata : {}) } as Record<string, unknown>;
    this.checkKind(def, obj);
    if (def.namespaced) {
      if (m.namespace !== undefined && m.namespace !== '' && m.namespace !== ns) {
        throw errors.badRequest('the namespace of the provided object does not match the namespace sent on the request');
      }
      m.namespace = ns;
    } else delete m.namespace;
    if ((m.name === undefined || m.name === '') && typeof m.generateName === 'string' && m.generateName !== '') m.name = `${m.generateName}${randomSuffix()}`;
    const name = typeof m.name === 'string' ? m.name : '';
    if (name === '') throw invalidMeta(def, '', 'metadata.name', 'Required value: name or generateName is required', 'FieldValueRequired');
    const bad = subdomainProblem(name);
    if (bad) throw invalidMeta(def, name, 'metadata.name', bad);
    m.uid = randomUUID();
    m.creationTimestamp = nowTimestamp(this.now());
    m.generation = 1;
    for (const k of ['resourceVersion', 'deletionTimestamp', 'deletionGracePeriodSeconds', 'selfLink', 'managedFields']) delete m[k];
    obj.metadata = m;
    obj.apiVersion = apiVersionOf(def, def.versions[0] ?? version);
    obj.kind = def.kind;
    // Create cannot set status when status is a subresource.
    if (def.statusSubresource) delete obj.status;
    let next = this.validate(def, version, obj, name, opts);
    next = this.beforeWrite(def, next);
    const entries = settle(opts.applyEntries ?? recordUpdate(this.managedContext(def, version, opts), [], undefined, next), next);
    if (entries.length > 0) next.metadata.managedFields = encodeManagedFields(entries);
    if (opts.dryRun) return { ...next, metadata: { ...next.metadata, resourceVersion: '' } };
    let out: Obj;
    try {
      out = this.store.create(def.key, def.namespaced ? ns : '', name, next);
    } catch (err) {
      if (err instanceof StoreConflict) throw errors.alreadyExists(def, name);
      throw err;
    }
    this.afterWrite(def, out, false);
    return out;
  }

  update(def: ResourceDef, version: string, ns: string, name: string, body: unknown, opts: WriteOptions = {}): Obj {
    if (!isObj(body)) throw errors.badRequest('the request body must be a JSON or YAML object');
    const old = this.get(def, ns, name);
    const m = isObj(body.metadata) ? body.metadata : {};
    if (m.name !== undefined && m.name !== name) throw errors.badRequest(`the name of the object (${String(m.name)}) does not match the name on the URL (${name})`);
    if (def.namespaced && m.namespace !== undefined && m.namespace !== '' && m.namespace !== ns) {
      throw errors.badRequest('the namespace of the provided object does not match the namespace sent on the request');
    }
    this.checkKind(def, body);
    const rv = m.resourceVersion;
    if ((rv === undefined || rv === '') && def.requireRvOnUpdate) {
      throw invalidMeta(def, name, 'metadata.resourceVersion', 'Invalid value: 0x0: must be specified for an update');
    }
    if (rv !== undefined && rv !== '' && rv !== meta(old).resourceVersion) throw errors.conflict(def, name);
    return this.commitUpdate(def, version, old, body as Obj, opts);
  }

  /** Returns the object and whether it was created (an apply patch upserts). */
  patch(def: ResourceDef, version: string, ns: string, name: string, type: PatchType, patch: unknown, opts: WriteOptions = {}): { object: Obj; created: boolean } {
    const old = this.store.get(def.key, ns, name);
    if (type === 'apply') return this.apply(def, version, ns, name, old, patch, opts);
    if (!old) throw errors.notFound(def, name);
    let next: unknown;
    if (type === 'json') next = jsonPatch(old, patch);
    else {
      if (!isObj(patch)) throw errors.badRequest('the merge patch must be a JSON object');
      next = mergePatch(old, patch);
    }
    if (!isObj(next)) throw errors.badRequest('the patch produced a non-object');
    const rv = meta(next).resourceVersion;
    // A patch that carries metadata.resourceVersion is conditional on it.
    if (rv !== undefined && rv !== meta(old).resourceVersion) throw errors.conflict(def, name);
    return { object: this.commitUpdate(def, version, old, next as Obj, opts), created: false };
  }

  /** Server-side apply (upsert) with field ownership; see managed-fields.ts. */
  private apply(def: ResourceDef, version: string, ns: string, name: string, old: Obj | undefined, patch: unknown, opts: WriteOptions): { object: Obj; created: boolean } {
    if (!opts.fieldManager) {
      throw invalidMeta(def, name, 'metadata.managedFields.fieldManager', 'Required value: is required for apply patch', 'FieldValueRequired');
    }
    if (!isObj(patch)) throw errors.badRequest('the apply patch must be an object');
    this.checkKind(def, patch);
    const m = isObj(patch.metadata) ? patch.metadata : {};
    if (m.name !== undefined && m.name !== name) throw errors.badRequest(`the name of the object (${String(m.name)}) does not match the name on the URL (${name})`);
    const applied = { ...patch, metadata: { ...m, name } } as Obj;
    const ctx = this.managedContext(def, version, { ...opts, manager: opts.fieldManager });
    if (!old) {
      if (opts.subresource) throw errors.notFound(def, name);
      const { object, entries } = applyConfiguration(ctx, [], undefined, applied, opts.force === true);
      return { object: this.create(def, version, ns, object, { ...opts, applyEntries: entries }), created: true };
    }
    if (m.resourceVersion !== undefined && m.resourceVersion !== '' && m.resourceVersion !== meta(old).resourceVersion) throw errors.conflict(def, name);
    const { object, entries } = applyConfiguration(ctx, decodeManagedFields(meta(old).managedFields), old, applied, opts.force === true);
    return { object: this.commitUpdate(def, version, old, object, { ...opts, applyEntries: entries }), created: false };
  }

  delete(def: ResourceDef, ns: string, name: string, opts: DeleteOptions = {}): { object: Obj; gone: boolean } {
    const old = this.get(def, ns, name);
    const om = meta(old);
    const pre = opts.preconditions ?? {};
    if (pre.uid && pre.uid !== om.uid) throw errors.conflict(def, name, `Precondition failed: UID in precondition: ${pre.uid}, UID in object meta: ${om.uid ?? ''}`);
    if (pre.resourceVersion && pre.resourceVersion !== om.resourceVersion) {
      throw errors.conflict(def, name, `Precondition failed: ResourceVersion in precondition: ${pre.resourceVersion}, ResourceVersion in object meta: ${om.resourceVersion ?? ''}`);
    }
    if ((om.finalizers ?? []).length > 0) {
      if (om.deletionTimestamp) return { object: old, gone: false };
      // markAsDeleting: set deletionTimestamp once and bump generation (kubectl wait relies on it).
      const next: Obj = {
        ...old,
        metadata: { ...om, deletionTimestamp: nowTimestamp(this.now()), deletionGracePeriodSeconds: 0, generation: (om.generation ?? 0) + 1 },
      };
      if (opts.dryRun) return { object: next, gone: false };
      return { object: this.casUpdate(def, old, next), gone: false };
    }
    if (opts.dryRun) return { object: old, gone: true };
    return { object: this.remove(def, old, opts.propagationPolicy), gone: true };
  }

  deleteCollection(def: ResourceDef, ns: string | undefined, opts: ListOptions & DeleteOptions): Obj[] {
    const { items } = this.list(def, ns, { labelSelector: opts.labelSelector, fieldSelector: opts.fieldSelector });
    return items.map((o) => this.delete(def, meta(o).namespace ?? '', meta(o).name ?? '', { propagationPolicy: opts.propagationPolicy, dryRun: opts.dryRun }).object);
  }

  /** Creates the object if missing, else merge-patches it to match (used to seed CRDs and namespaces). */
  ensure(def: ResourceDef, ns: string, body: Obj): 'created' | 'updated' | 'unchanged' {
    const name = meta(body).name ?? '';
    const old = this.store.get(def.key, ns, name);
    if (!old) {
      this.create(def, def.versions[0] ?? 'v1', ns, body);
      return 'created';
    }
    const { metadata: _m, status: _s, ...rest } = body;
    const out = this.commitUpdate(def, def.versions[0] ?? 'v1', old, { ...old, ...rest } as Obj, {});
    return meta(out).resourceVersion === meta(old).resourceVersion ? 'unchanged' : 'updated';
  }

  /** Deletes core/v1 events older than `ttlMs` (by lastTimestamp, eventTime or creation). */
  pruneEvents(ttlMs: number): number {
    const cutoff = this.now().getTime() - ttlMs;
    let n = 0;
    for (const ev of this.store.list('core/events').items) {
      const t = Date.parse(String(ev.lastTimestamp ?? ev.eventTime ?? meta(ev).creationTimestamp ?? ''));
      if (!Number.isNaN(t) && t < cutoff) {
        try {
          this.store.delete('core/events', meta(ev).namespace ?? '', meta(ev).name ?? '', ev, Number(meta(ev).resourceVersion));
          n++;
        } catch {
          // Changed or gone meanwhile: the next prune gets it.
        }
      }
    }
    return n;
  }

  private managedContext(def: ResourceDef, version: string, opts: WriteOptions): ManagedContext {
    const ctx: ManagedContext = {
      def,
      apiVersion: apiVersionOf(def, version),
      schema: rootSchema(def.schemas?.get(version) ?? def.schemas?.get(def.versions[0] ?? '')),
      manager: opts.manager ?? opts.fieldManager ?? 'unknown',
      time: nowTimestamp(this.now()),
    };
    if (opts.subresource) ctx.subresource = opts.subresource;
    return ctx;
  }

  /**
   * metadata.managedFields of an update: managers after the apply, or the old ones plus an Update
   * entry for what changed. A client that sends different managedFields (kubectl's client-side to
   * server-side apply migration does) replaces them; `[]` clears them. Unchanged ownership keeps the
   * stored entries byte for byte, so a no-op write stays a no-op.
   */
  private setManagedFields(def: ResourceDef, version: string, old: Obj, next: Obj, bodyManaged: unknown, opts: WriteOptions): void {
    const om = meta(old);
    const stored = decodeManagedFields(om.managedFields);
    const clientSet = Array.isArray(bodyManaged) && !jsonEqual(bodyManaged, om.managedFields ?? []);
    const base = clientSet ? decodeManagedFields(bodyManaged) : stored;
    const entries = settle(opts.applyEntries ?? recordUpdate(this.managedContext(def, version, opts), base, old, next), next);
    const strip = (o: Obj) => ({ ...o, metadata: { ...o.metadata, managedFields: undefined } });
    if (!clientSet && jsonEqual(strip(old), strip(next)) && sameOwnership(entries, stored)) {
      if (om.managedFields === undefined) delete next.metadata.managedFields;
      else next.metadata.managedFields = om.managedFields;
      return;
    }
    if (entries.length > 0) next.metadata.managedFields = encodeManagedFields(entries);
    else delete next.metadata.managedFields;
  }

  private checkKind(def: ResourceDef, body: Record<string, unknown>): void {
    if (body.kind !== undefined && body.kind !== def.kind) {
      throw errors.badRequest(`the kind in the data (${String(body.kind)}) does not match the expected kind (${def.kind})`);
    }
  }

  /** Status-subresource, immutability, finalizer and generation rules, then validate and write. */
  private commitUpdate(def: ResourceDef, version: string, old: Obj, body: Obj, opts: WriteOptions): Obj {
    const om = meta(old);
    const name = om.name ?? '';
    const bodyManaged = isObj(body.metadata) ? body.metadata.managedFields : undefined;
    let next: Obj;
    if (opts.subresource === 'status') {
      // /status takes only .status from the request; everything else stays as stored.
      next = { ...structuredClone(old) };
      if (body.status === undefined) delete next.status;
      else next.status = structuredClone(body.status);
    } else {
      const bm = isObj(body.metadata) ? body.metadata : {};
      next = { ...structuredClone(body), metadata: { ...bm } } as Obj;
      if (def.statusSubresource) {
        if (old.status === undefined) delete next.status;
        else next.status = structuredClone(old.status);
      }
      const nm = next.metadata as Record<string, unknown>;
      for (const k of ['name', 'namespace', 'uid', 'creationTimestamp', 'generation', 'deletionTimestamp', 'deletionGracePeriodSeconds'] as const) {
        if (om[k] === undefined) delete nm[k];
        else nm[k] = om[k];
      }
      delete nm.managedFields;
      delete nm.selfLink;
      if (om.deletionTimestamp) {
        const before = new Set(om.finalizers ?? []);
        const added = ((nm.finalizers as string[] | undefined) ?? []).filter((f) => !before.has(f));
        if (added.length > 0) {
          throw invalidMeta(def, name, 'metadata.finalizers', `Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers ${JSON.stringify(added)}`, 'FieldValueForbidden');
        }
      }
    }
    next.apiVersion = old.apiVersion;
    next.kind = old.kind;
    next = this.validate(def, version, next, name, opts);
    next = this.beforeWrite(def, next);
    const nm = next.metadata;
    nm.resourceVersion = om.resourceVersion;
    if (opts.subresource !== 'status') {
      const specOf = (o: Obj) => ({ ...o, metadata: undefined, status: def.statusSubresource ? undefined : o.status });
      if (!jsonEqual(specOf(old), specOf(next))) nm.generation = (om.generation ?? 0) + 1;
    }
    if (Array.isArray(nm.finalizers) && nm.finalizers.length === 0) delete nm.finalizers;
    if (om.deletionTimestamp && !(Array.isArray(nm.finalizers) && nm.finalizers.length > 0)) {
      if (opts.dryRun) return next;
      return this.remove(def, next, undefined);
    }
    this.setManagedFields(def, version, old, next, bodyManaged, opts);
    // A no-op write creates no revision and no event.
    if (jsonEqual(next, old)) return old;
    if (opts.dryRun) return next;
    const out = this.casUpdate(def, old, next);
    this.afterWrite(def, out, false);
    return out;
  }

  private casUpdate(def: ResourceDef, old: Obj, next: Obj): Obj {
    const om = meta(old);
    try {
      return this.store.update(def.key, om.namespace ?? '', om.name ?? '', next, Number(om.resourceVersion), old);
    } catch (err) {
      if (err instanceof StoreConflict) throw err.kind === 'missing' ? errors.notFound(def, om.name ?? '') : errors.conflict(def, om.name ?? '');
      throw err;
    }
  }

  private remove(def: ResourceDef, last: Obj, propagationPolicy: string | undefined): Obj {
    const m = meta(last);
    const stored = this.store.get(def.key, m.namespace ?? '', m.name ?? '');
    if (!stored) throw errors.notFound(def, m.name ?? '');
    let out: Obj;
    try {
      out = this.store.delete(def.key, m.namespace ?? '', m.name ?? '', last, Number(meta(stored).resourceVersion));
    } catch (err) {
      if (err instanceof StoreConflict) throw errors.conflict(def, m.name ?? '');
      throw err;
    }
    this.afterWrite(def, out, true);
    if (propagationPolicy !== 'Orphan' && m.uid) {
      const uid = m.uid;
      // Background cascading deletion, as kube-controller-manager's garbage collector would do it.
      setImmediate(() => this.collectDependents(uid));
    }
    return out;
  }

  private collectDependents(ownerUid: string): void {
    let candidates: ReturnType<Store['ownedBy']>;
    try {
      candidates = this.store.ownedBy(ownerUid);
    } catch (err) {
      this.log.debug({ err }, 'garbage collection skipped (store closed?)');
      return;
    }
    for (const { resource, object } of candidates) {
      const refs = meta(object).ownerReferences ?? [];
      if (!refs.some((r) => r.uid === ownerUid)) continue;
      const def = this.resources.all().find((d) => d.key === resource);
      if (!def) continue;
      try {
        this.delete(def, meta(object).namespace ?? '', meta(object).name ?? '', { propagationPolicy: 'Background' });
      } catch (err) {
        this.log.debug({ err, resource, name: meta(object).name }, 'garbage collection of a dependent failed');
      }
    }
  }

  /** Schema pruning/defaulting/validation (CRs) and fieldValidation handling of unknown fields. */
  private validate(def: ResourceDef, version: string, obj: Obj, name: string, opts: WriteOptions): Obj {
    const v = def.validators?.get(version) ?? def.validators?.get(def.versions[0] ?? '');
    if (!v) return obj;
    const res = v(obj);
    if (res.pruned.length > 0) {
      if (opts.fieldValidation === 'Strict') {
        throw errors.badRequest(`strict decoding error: ${res.pruned.map((p) => `unknown field "${p}"`).join(', ')}`);
      }
      if (opts.fieldValidation !== 'Ignore') opts.warnings?.push(...res.pruned.map((p) => `unknown field "${p}"`));
    }
    if (res.errors.length > 0) throw errors.invalid(def, name, res.errors);
    return { ...res.object, metadata: obj.metadata } as Obj;
  }

  /** Per-kind fix-ups before a write: namespaces are Active; CRDs must be servable and report Established. */
  private beforeWrite(def: ResourceDef, obj: Obj): Obj {
    if (def.key === NAMESPACE_RESOURCE.key) return { ...obj, status: { phase: meta(obj).deletionTimestamp ? 'Terminating' : 'Active' } };
    if (def.key !== CRD_RESOURCE.key) return obj;
    const name = meta(obj).name ?? '';
    if (!isCrd(obj)) throw invalidMeta(def, name, 'spec', 'Invalid value: the object is not a valid CustomResourceDefinition');
    let served;
    try {
      served = resourceFromCrd(obj);
    } catch (err) {
      throw invalidMeta(def, name, 'spec', `Invalid value: ${(err as Error).message}`);
    }
    const expected = `${served.plural}.${served.group}`;
    if (name !== expected) throw invalidMeta(def, name, 'metadata.name', `Invalid value: ${JSON.stringify(name)}: must be spec.names.plural+"."+spec.group`);
    const crd = obj as unknown as CustomResourceDefinition;
    const t = nowTimestamp(this.now());
    const old = isObj(obj.status) && Array.isArray(obj.status.conditions) ? (obj.status.conditions as { type: string; lastTransitionTime?: string }[]) : [];
    const since = (type: string) => old.find((c) => c.type === type)?.lastTransitionTime ?? t;
    return {
      ...obj,
      status: {
        conditions: [
          { type: 'NamesAccepted', status: 'True', lastTransitionTime: since('NamesAccepted'), reason: 'NoConflicts', message: 'no conflicts found' },
          { type: 'Established', status: 'True', lastTransitionTime: since('Established'), reason: 'InitialNamesAccepted', message: 'the initial names have been accepted' },
        ],
        acceptedNames: crd.spec.names,
        storedVersions: crd.spec.versions.filter((v) => v.storage).map((v) => v.name),
      },
    };
  }

  /** Keeps the served resources in step with stored CRDs. */
  private afterWrite(def: ResourceDef, obj: Obj, deleted: boolean): void {
    if (def.key !== CRD_RESOURCE.key) return;
    try {
      if (deleted) this.resources.removeCrd(meta(obj).name ?? '');
      else if (isCrd(obj)) this.resources.addCrd(obj);
    } catch (err) {
      this.log.warn({ err, crd: meta(obj).name }, 'cannot serve CustomResourceDefinition');
    }
  }
}

export function apiVersionOf(def: ResourceDef, version: string): string {
  return def.group ? `${def.group}/${version}` : version;
}
