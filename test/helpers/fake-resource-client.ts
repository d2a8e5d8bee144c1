// An in-memory API for unit tests: a ResourceClient per kind over one shared store, with the
// server semantics the code relies on (resourceVersion, generation bumped by spec changes only,
// merge and JSON patch, server-side apply with managedFields per manager (conflicts, removal of
// fields a manager stopped sending, dry-run), status subresource, finalizers and
// deletionTimestamp, informers). It passes the same contract tests as the real client (test/unit/core/resource-client.contract.test.ts).

import { randomUUID } from 'node:crypto';
import type { KubeObject } from '../../src/api/types.js';
import { KvzError } from '../../src/core/errors.js';
import type { ApplyPatchOptions, InformerHandle, JsonPatchOp, ListOptions, ResourceClient, ResourceRef, WatchEventType } from '../../src/core/resource-client.js';

type Obj = Record<string, unknown>;
type Cause = { field: string; message: string };

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function deepEqual(a: unknown, b: unknown): boolean {
  return JSON.stringify(sortKeys(a)) === JSON.stringify(sortKeys(b));
}

function sortKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (isObj(v)) return Object.fromEntries(Object.keys(v).sort().map((k) => [k, sortKeys(v[k])]));
  return v;
}

function mergePatch(target: unknown, patch: unknown): unknown {
  if (!isObj(patch)) return structuredClone(patch);
  const out: Obj = isObj(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

function pointer(p: string): string[] {
  if (p === '') return [];
  return p.slice(1).split('/').map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
}

function jsonPatch(doc: unknown, ops: JsonPatchOp[], what: string): unknown {
  let root = structuredClone(doc);
  const fail = (msg: string) => new KvzError('Invalid', `${what}: the server rejected our request due to an error in our request: ${msg}`, { details: { status: 422 } });
  const parentOf = (path: string[]): { parent: unknown; key: string } => {
    let cur: unknown = root;
    for (const k of path.slice(0, -1)) {
      cur = Array.isArray(cur) ? cur[Number(k)] : isObj(cur) ? cur[k] : undefined;
      if (cur === undefined) throw fail(`missing path ${path.join('/')}`);
    }
    return { parent: cur, key: path[path.length - 1] ?? '' };
  };
  const read = (path: string[]): unknown => {
    let cur: unknown = root;
    for (const k of path) cur = Array.isArray(cur) ? cur[Number(k)] : isObj(cur) ? cur[k] : undefined;
    return cur;
  };
  const add = (path: string[], value: unknown) => {
    if (path.length === 0) return void (root = value);
    const { parent, key } = parentOf(path);
    if (Array.isArray(parent)) {
      const i = key === '-' ? parent.length : Number(key);
      if (!(i >= 0 && i <= parent.length)) throw fail(`index ${key} out of range`);
      parent.splice(i, 0, structuredClone(value));
    } else if (isObj(parent)) parent[key] = structuredClone(value);
    else throw fail(`cannot add at ${path.join('/')}`);
  };
  const remove = (path: string[]) => {
    const { parent, key } = parentOf(path);
    if (Array.isArray(parent)) {
      const i = Number(key);
      if (!(i >= 0 && i < parent.length)) throw fail(`index ${key} out of range`);
      parent.splice(i, 1);
    } else if (isObj(parent) && key in parent) delete parent[key];
    else throw fail(`missing path ${path.join('/')}`);
  };
  for (const op of ops) {
    const path = pointer(op.path);
    switch (op.op) {
      case 'add':
        add(path, op.value);
        break;
      case 'remove':
        remove(path);
        break;
      case 'replace':
        remove(path);
        add(path, op.value);
        break;
      case 'test':
        if (!deepEqual(read(path), op.value)) throw fail(`testing value ${op.path} failed`);
        break;
      case 'move':
      case 'copy': {
        const from = pointer(op.from ?? '');
        const v = read(from);
        if (v === undefined) throw fail(`missing path ${op.from}`);
        if (op.op === 'move') remove(from);
        add(path, v);
        break;
      }
    }
  }
  return root;
}

// ---- server-side apply: field sets per manager (structured-merge-diff, simplified) ----
// A field is the path of a leaf: a scalar, a list (lists of CRDs without x-kubernetes-list-type
// are atomic) or an empty map. Of metadata only labels, annotations and finalizers are fields.

type FieldPath = string[];
const pathKey = (p: FieldPath): string => JSON.stringify(p);

/** Writes that are not apply patches are recorded under this manager (a real server derives one from the User-Agent). */
export const FAKE_UPDATE_MANAGER = 'fake-client';

interface ManagedEntry {
  manager: string;
  operation: 'Apply' | 'Update';
  apiVersion?: string;
  time?: string;
  fields: Set<string>;
}

function leafPaths(v: unknown, prefix: FieldPath, out: Set<string>): void {
  if (isObj(v) && Object.keys(v).length > 0) {
    for (const [k, c] of Object.entries(v)) leafPaths(c, [...prefix, k], out);
  } else out.add(pathKey(prefix));
}

/** The fields an object (or an apply configuration) sets. */
export function fieldsOf(obj: unknown): Set<string> {
  const out = new Set<string>();
  if (!isObj(obj)) return out;
  for (const [k, v] of Object.entries(obj)) {
    if (k === 'apiVersion' || k === 'kind' || k === 'status') continue;
    if (k === 'metadata') {
      if (!isObj(v)) continue;
      for (const mk of ['labels', 'annotations', 'finalizers']) if (v[mk] !== undefined) leafPaths(v[mk], ['metadata', mk], out);
      continue;
    }
    leafPaths(v, [k], out);
  }
  return out;
}

function getPath(obj: unknown, p: FieldPath): unknown {
  let cur = obj;
  for (const k of p) cur = isObj(cur) ? cur[k] : undefined;
  return cur;
}

/** Deletes the field and then every parent map it leaves empty. */
function deletePath(obj: Obj, p: FieldPath): void {
  const parents: Obj[] = [obj];
  for (const k of p.slice(0, -1)) {
    const next = parents[parents.length - 1]![k];
    if (!isObj(next)) return;
    parents.push(next);
  }
  delete parents[parents.length - 1]![p[p.length - 1]!];
  for (let i = parents.length - 1; i > 0; i--) {
    if (Object.keys(parents[i]!).length > 0) break;
    delete parents[i - 1]![p[i - 1]!];
  }
}

/** Apply merge: maps merge key by key, everything else (scalars, lists) is replaced. */
function applyMerge(live: unknown, applied: unknown): unknown {
  if (!isObj(applied) || !isObj(live)) return structuredClone(applied);
  const out: Obj = { ...live };
  for (const [k, v] of Object.entries(applied)) out[k] = v === null ? out[k] : applyMerge(out[k], v);
  return out;
}

function toFieldsV1(fields: Set<string>): Obj {
  const root: Obj = {};
  for (const key of [...fields].sort()) {
    let cur = root;
    for (const k of JSON.parse(key) as string[]) cur = (cur[`f:${k}`] ??= {}) as Obj;
  }
  return root;
}

function fromFieldsV1(v: unknown, prefix: FieldPath = [], out = new Set<string>()): Set<string> {
  if (!isObj(v)) return out;
  const kids = Object.keys(v).filter((k) => k.startsWith('f:'));
  if (kids.length === 0 && prefix.length > 0) out.add(pathKey(prefix));
  for (const k of kids) fromFieldsV1(v[k], [...prefix, k.slice(2)], out);
  return out;
}

function readManaged(o: KubeObject): ManagedEntry[] {
  const raw = o.metadata?.managedFields;
  if (!Array.isArray(raw)) return [];
  return raw.filter(isObj).map((e) => ({
    manager: String(e.manager),
    operation: e.operation === 'Apply' ? 'Apply' : 'Update',
    apiVersion: typeof e.apiVersion === 'string' ? e.apiVersion : undefined,
    time: typeof e.time === 'string' ? e.time : undefined,
    fields: fromFieldsV1(e.fieldsV1),
  }));
}

function writeManaged(entries: ManagedEntry[]): Obj[] | undefined {
  const out = entries
    .filter((e) => e.fields.size > 0)
    .map((e) => ({ manager: e.manager, operation: e.operation, apiVersion: e.apiVersion, time: e.time, fieldsType: 'FieldsV1', fieldsV1: toFieldsV1(e.fields) }));
  return out.length > 0 ? out : undefined;
}

function entryFor(entries: ManagedEntry[], manager: string, operation: 'Apply' | 'Update', apiVersion: string | undefined): ManagedEntry {
  let e = entries.find((x) => x.manager === manager && x.operation === operation);
  if (!e) entries.push((e = { manager, operation, apiVersion, fields: new Set() }));
  return e;
}

/** Ownership after an ordinary write: the writer owns what it changed; nobody keeps fields that are gone. */
function managedAfterUpdate(live: KubeObject | undefined, next: KubeObject, now: string): ManagedEntry[] {
  const entries = live ? readManaged(live) : [];
  const before = live ? fieldsOf(live) : new Set<string>();
  const after = fieldsOf(next);
  const changed = [...after].filter((k) => !before.has(k) || !deepEqual(getPath(live, JSON.parse(k)), getPath(next, JSON.parse(k))));
  if (changed.length > 0) {
    for (const e of entries) for (const k of changed) e.fields.delete(k);
    const mine = entryFor(entries, FAKE_UPDATE_MANAGER, 'Update', next.apiVersion);
    for (const k of changed) mine.fields.add(k);
    mine.time = now;
  }
  for (const e of entries) for (const k of [...e.fields]) if (!after.has(k)) e.fields.delete(k);
  return entries;
}

/** `a=b,c!=d,e,!f` (the subset of label selectors the code uses). */
export function matchesLabels(selector: string | undefined, labels: Record<string, string> = {}): boolean {
  if (!selector) return true;
  return selector.split(',').every((raw) => {
    const req = raw.trim();
    if (!req) return true;
    let m = /^([^!=]+)!=(.*)$/.exec(req);
    if (m) return labels[m[1]!.trim()] !== m[2]!.trim();
    m = /^([^!=]+)==?(.*)$/.exec(req);
    if (m) return labels[m[1]!.trim()] === m[2]!.trim();
    if (req.startsWith('!')) return !(req.slice(1).trim() in labels);
    return req in labels;
  });
}

interface Watcher {
  ref: ResourceRef;
  opts: ListOptions;
  onEvent: (type: WatchEventType, obj: KubeObject) => void;
  cache: Map<string, KubeObject>;
}

export interface FakeApiOptions {
  /** Server-side validation: return causes to reject a create or update with 422. */
  validate?: (ref: ResourceRef, obj: KubeObject) => Cause[] | undefined;
  now?: () => Date;
}

/** The shared store: one per test, `client(ref)` for each kind. */
export class FakeApi {
  private revision = 0;
  private readonly store = new Map<string, KubeObject>();
  private readonly watchers = new Set<Watcher>();
  /** Every write, in order: `create|patch|status|delete plural ns/name` (to assert that nothing was written). */
  readonly writes: string[] = [];

  constructor(readonly options: FakeApiOptions = {}) {}

  client<T extends KubeObject = KubeObject>(ref: ResourceRef): FakeResourceClient<T> {
    return new FakeResourceClient<T>(this, ref);
  }

  /** Every stored object of a kind (for assertions). */
  objects(ref: ResourceRef): KubeObject[] {
    return [...this.store.entries()].filter(([k]) => k.startsWith(`${ref.group}/${ref.plural}/`)).map(([, o]) => structuredClone(o));
  }

  /** @internal */
  key(ref: ResourceRef, namespace: string | undefined, name: string): string {
    return `${ref.group}/${ref.plural}/${ref.namespaced ? (namespace ?? 'default') : ''}/${name}`;
  }

  /** @internal */
  read(key: string): KubeObject | undefined {
    const o = this.store.get(key);
    return o ? structuredClone(o) : undefined;
  }

  /** @internal */
  list(ref: ResourceRef, opts: ListOptions): KubeObject[] {
    return this.objects(ref)
      .filter((o) => !ref.namespaced || !opts.namespace || o.metadata?.namespace === opts.namespace)
      .filter((o) => matchesLabels(opts.labelSelector, o.metadata?.labels))
      .sort((a, b) => `${a.metadata?.namespace}/${a.metadata?.name}`.localeCompare(`${b.metadata?.namespace}/${b.metadata?.name}`));
  }

  /** @internal */
  nextVersion(): string {
    return String(++this.revision);
  }

  /** @internal */
  now(): string {
    return (this.options.now?.() ?? new Date()).toISOString().replace(/\.\d{3}Z$/, 'Z');
  }

  /** @internal */
  validate(ref: ResourceRef, obj: KubeObject, what: string): void {
    const causes = this.options.validate?.(ref, obj) ?? [];
    if (causes.length === 0) return;
    const list = causes.map((c) => `${c.field}: ${c.message}`).join(', ');
    throw new KvzError('Invalid', `${what}: ${ref.plural}.${ref.group} "${obj.metadata?.name}" is invalid: [${list}]`, {
      details: { status: 422, reason: 'Invalid', causes: causes.map((c) => ({ reason: 'FieldValueInvalid', ...c })) },
    });
  }

  /** @internal Stores (or removes, with undefined) and tells the watchers. */
  write(ref: ResourceRef, key: string, obj: KubeObject | undefined, op: string): void {
    const prev = this.store.get(key);
    if (obj) this.store.set(key, structuredClone(obj));
    else this.store.delete(key);
    this.writes.push(`${op} ${ref.plural} ${key.split('/').slice(2).join('/')}`);
    for (const w of this.watchers) {
      if (w.ref.group !== ref.group || w.ref.plural !== ref.plural) continue;
      const inScope = (o: KubeObject | undefined): o is KubeObject =>
        !!o && (!ref.namespaced || !w.opts.namespace || o.metadata?.namespace === w.opts.namespace) && matchesLabels(w.opts.labelSelector, o.metadata?.labels);
      const was = inScope(prev);
      const is = inScope(obj);
      // Like a real watch with a label selector: leaving the selection is a DELETED, entering an ADDED.
      const type: WatchEventType | undefined = is ? (was ? 'MODIFIED' : 'ADDED') : was ? 'DELETED' : undefined;
      if (!type) continue;
      const payload = structuredClone(is ? obj : prev) as KubeObject;
      queueMicrotask(() => {
        if (!this.watchers.has(w)) return;
        if (type === 'DELETED') w.cache.delete(key);
        else w.cache.set(key, payload);
        w.onEvent(type, structuredClone(payload));
      });
    }
  }

  /** @internal */
  addWatcher(w: Watcher): void {
    this.watchers.add(w);
  }

  /** @internal */
  removeWatcher(w: Watcher): void {
    this.watchers.delete(w);
  }
}

export class FakeResourceClient<T extends KubeObject = KubeObject> implements ResourceClient<T> {
  constructor(
    private readonly api: FakeApi,
    readonly ref: ResourceRef,
  ) {}

  private describe(name: string | undefined, namespace?: string): string {
    return `${this.ref.plural}.${this.ref.group} ${this.ref.namespaced ? `${namespace ?? 'default'}/` : ''}${name ?? ''}`;
  }

  private notFound(what: string, name: string): KvzError {
    return new KvzError('NotFound', `${what}: ${this.ref.plural}.${this.ref.group} "${name}" not found`, { details: { status: 404, reason: 'NotFound' } });
  }

  async get(name: string, namespace?: string): Promise<T | undefined> {
    return this.api.read(this.api.key(this.ref, namespace, name)) as T | undefined;
  }

  async list(opts: ListOptions = {}): Promise<T[]> {
    return this.api.list(this.ref, opts) as T[];
  }

  async create(obj: T): Promise<T> {
    return this.createWith(obj, (next) => managedAfterUpdate(undefined, next, this.api.now()), false);
  }

  private createWith(obj: T, manage: (next: KubeObject) => ManagedEntry[], dryRun: boolean): T {
    const meta = { ...(obj.metadata ?? {}) };
    const what = `create ${this.describe(meta.name, meta.namespace)}`;
    if (!meta.name) throw new KvzError('Invalid', `${what}: metadata.name: Required value`, { details: { status: 422, causes: [{ field: 'metadata.name', message: 'Required value' }] } });
    const key = this.api.key(this.ref, meta.namespace, meta.name);
    if (this.api.read(key)) {
      throw new KvzError('AlreadyExists', `${what}: ${this.ref.plural}.${this.ref.group} "${meta.name}" already exists`, { details: { status: 409, reason: 'AlreadyExists' } });
    }
    const stored = structuredClone(obj) as KubeObject;
    // The status subresource: status is not taken from a create.
    delete stored.status;
    delete meta.deletionTimestamp;
    delete meta.deletionGracePeriodSeconds;
    stored.metadata = {
      ...meta,
      ...(this.ref.namespaced ? { namespace: meta.namespace ?? 'default' } : { namespace: undefined }),
      uid: randomUUID(),
      resourceVersion: this.api.nextVersion(),
      generation: 1,
      creationTimestamp: this.api.now(),
    };
    if (!this.ref.namespaced) delete stored.metadata.namespace;
    delete stored.metadata.managedFields;
    const managed = writeManaged(manage(stored));
    if (managed) stored.metadata.managedFields = managed;
    this.api.validate(this.ref, stored, what);
    if (dryRun) return structuredClone({ ...stored, metadata: { ...stored.metadata, resourceVersion: '' } }) as T;
    this.api.write(this.ref, key, stored, 'create');
    return structuredClone(stored) as T;
  }

  /** The shared update path: computes `next` from the live object and applies the server's rules. */
  private update(
    name: string,
    namespace: string | undefined,
    what: string,
    op: 'patch' | 'status',
    change: (live: KubeObject) => KubeObject,
    requestedVersion?: string,
    opts: { manage?: (live: KubeObject, next: KubeObject) => ManagedEntry[]; dryRun?: boolean } = {},
  ): T {
    const key = this.api.key(this.ref, namespace, name);
    const live = this.api.read(key);
    if (!live) throw this.notFound(what, name);
    if (requestedVersion !== undefined && requestedVersion !== live.metadata?.resourceVersion) {
      throw new KvzError('Conflict', `${what}: Operation cannot be fulfilled on ${this.ref.plural}.${this.ref.group} "${name}": the object has been modified; please apply your changes to the latest version and try again`, {
        details: { status: 409, reason: 'Conflict' },
      });
    }
    const changed = change(structuredClone(live));
    const lm = live.metadata ?? {};
    const cm = (isObj(changed.metadata) ? changed.metadata : {}) as NonNullable<KubeObject['metadata']>;
    // Fields the server owns, whatever the request says.
    const next: KubeObject = {
      ...changed,
      metadata: {
        ...cm,
        name: lm.name,
        ...(this.ref.namespaced ? { namespace: lm.namespace } : {}),
        uid: lm.uid,
        creationTimestamp: lm.creationTimestamp,
        generation: lm.generation,
        resourceVersion: lm.resourceVersion,
        ...(lm.deletionTimestamp ? { deletionTimestamp: lm.deletionTimestamp, deletionGracePeriodSeconds: lm.deletionGracePeriodSeconds } : {}),
      },
    };
    if (!next.metadata!.deletionTimestamp) {
      delete next.metadata!.deletionTimestamp;
      delete next.metadata!.deletionGracePeriodSeconds;
    }
    // Main resource: status is ignored; status subresource: only status changes.
    if (op === 'patch') {
      if (live.status === undefined) delete next.status;
      else next.status = live.status;
    } else {
      const statusOnly: KubeObject = { ...live, status: changed.status };
      if (changed.status === undefined) delete statusOnly.status;
      return this.commit(key, live, statusOnly, what, 'status', false);
    }
    if (lm.deletionTimestamp) {
      const added = (next.metadata!.finalizers ?? []).filter((f) => !(lm.finalizers ?? []).includes(f));
      if (added.length > 0) {
        throw new KvzError('Invalid', `${what}: metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers ${JSON.stringify(added)}`, {
          details: { status: 422, causes: [{ field: 'metadata.finalizers', message: 'Forbidden: no new finalizers can be added if the object is being deleted' }] },
        });
      }
    }
    const specLike = (o: KubeObject) => {
      const { metadata: _m, status: _s, ...rest } = o;
      return rest;
    };
    if (!deepEqual(specLike(live), specLike(next))) next.metadata!.generation = (lm.generation ?? 0) + 1;
    delete next.metadata!.managedFields;
    const managed = writeManaged((opts.manage ?? ((l, n) => managedAfterUpdate(l, n, this.api.now())))(live, next));
    if (managed) next.metadata!.managedFields = managed;
    return this.commit(key, live, next, what, 'patch', opts.dryRun ?? false);
  }

  private commit(key: string, live: KubeObject, next: KubeObject, what: string, op: string, dryRun: boolean): T {
    if (deepEqual(live, next)) return structuredClone(live) as T;
    this.api.validate(this.ref, next, what);
    if (dryRun) return structuredClone(next) as T;
    next.metadata = { ...next.metadata, resourceVersion: this.api.nextVersion() };
    // The last finalizer removed from an object being deleted: it goes.
    if (next.metadata.deletionTimestamp && (next.metadata.finalizers ?? []).length === 0) {
      this.api.write(this.ref, key, undefined, 'delete');
      return structuredClone(next) as T;
    }
    if (next.metadata.finalizers?.length === 0) delete next.metadata.finalizers;
    this.api.write(this.ref, key, next, op);
    return structuredClone(next) as T;
  }

  async mergePatch(name: string, namespace: string | undefined, patch: object): Promise<T> {
    const what = `patch ${this.describe(name, namespace)}`;
    const rv = isObj((patch as Obj).metadata) ? ((patch as Obj).metadata as Obj).resourceVersion : undefined;
    return this.update(name, namespace, what, 'patch', (live) => mergePatch(live, patch) as KubeObject, typeof rv === 'string' ? rv : undefined);
  }

  async jsonPatch(name: string, namespace: string | undefined, ops: JsonPatchOp[]): Promise<T> {
    const what = `patch ${this.describe(name, namespace)}`;
    return this.update(name, namespace, what, 'patch', (live) => jsonPatch(live, ops, what) as KubeObject);
  }

  async applyPatch(obj: T, opts: ApplyPatchOptions): Promise<T> {
    const name = obj.metadata?.name ?? '';
    const namespace = this.ref.namespaced ? (obj.metadata?.namespace ?? 'default') : undefined;
    const what = `apply ${this.describe(name, namespace)}`;
    if (!opts.fieldManager || opts.fieldManager.length > 128) {
      throw new KvzError('Invalid', `${what}: metadata.managedFields.fieldManager: ${opts.fieldManager ? 'Too long: may not be longer than 128' : 'Required value: is required for apply patch'}`, {
        details: { status: 422, reason: 'Invalid', causes: [{ field: 'metadata.managedFields.fieldManager', message: 'Required value' }] },
      });
    }
    // The apply configuration: what the manifest declares, without server-owned metadata.
    const applied = structuredClone(obj) as KubeObject;
    delete applied.status;
    const am = { ...(applied.metadata ?? {}) } as Record<string, unknown>;
    for (const k of ['resourceVersion', 'uid', 'creationTimestamp', 'generation', 'managedFields', 'deletionTimestamp', 'deletionGracePeriodSeconds', 'selfLink']) delete am[k];
    applied.metadata = am as KubeObject['metadata'];
    const declared = fieldsOf(applied);
    const now = this.api.now();
    const live = this.api.read(this.api.key(this.ref, namespace, name));
    if (!live) {
      return this.createWith(applied as T, () => [{ manager: opts.fieldManager, operation: 'Apply', apiVersion: applied.apiVersion, time: now, fields: declared }], opts.dryRun ?? false);
    }
    const entries = readManaged(live);
    const conflicts: { manager: string; field: string }[] = [];
    for (const e of entries) {
      if (e.manager === opts.fieldManager) continue;
      for (const k of declared) {
        if (!e.fields.has(k)) continue;
        const p = JSON.parse(k) as string[];
        if (deepEqual(getPath(live, p), getPath(applied, p))) continue;
        if (opts.force) e.fields.delete(k);
        else conflicts.push({ manager: e.manager, field: `.${p.join('.')}` });
      }
    }
    if (conflicts.length > 0) {
      const list = conflicts.map((c) => `conflict with "${c.manager}": ${c.field}`);
      throw new KvzError('Conflict', `${what}: Apply failed with ${conflicts.length} conflict${conflicts.length > 1 ? 's' : ''}: ${list.join('\n')}`, {
        details: { status: 409, reason: 'Conflict', causes: conflicts.map((c) => ({ reason: 'FieldManagerConflict', message: `conflict with "${c.manager}"`, field: c.field })) },
      });
    }
    const mine = entryFor(entries, opts.fieldManager, 'Apply', applied.apiVersion);
    const dropped = [...mine.fields].filter((k) => !declared.has(k));
    return this.update(
      name,
      namespace,
      what,
      'patch',
      (current) => {
        const next = applyMerge(current, applied) as Obj;
        // Fields this manager applied before and stopped declaring go, unless someone else owns them too.
        for (const k of dropped) if (!entries.some((e) => e !== mine && e.fields.has(k))) deletePath(next, JSON.parse(k) as string[]);
        return next as KubeObject;
      },
      undefined,
      {
        dryRun: opts.dryRun,
        manage: (_live, next) => {
          const changed = !(mine.fields.size === declared.size && [...declared].every((k) => mine.fields.has(k)));
          mine.fields = new Set(declared);
          if (changed || !mine.time) mine.time = now;
          const present = fieldsOf(next);
          for (const e of entries) for (const k of [...e.fields]) if (!present.has(k)) e.fields.delete(k);
          return entries;
        },
      },
    );
  }

  async patchStatus(name: string, namespace: string | undefined, status: object): Promise<T> {
    const what = `patch ${this.describe(name, namespace)} status`;
    return this.update(name, namespace, what, 'status', (live) => mergePatch(live, { status }) as KubeObject);
  }

  async jsonPatchStatus(name: string, namespace: string | undefined, ops: JsonPatchOp[]): Promise<T> {
    const what = `patch ${this.describe(name, namespace)} status`;
    try {
      return this.update(name, namespace, what, 'status', (live) => jsonPatch(live, ops, what) as KubeObject);
    } catch (err) {
      // As the real client: a failed `test` (the resourceVersion guard) is a conflict.
      if (err instanceof KvzError && err.code === 'Invalid' && /testing value/.test(err.message)) {
        throw new KvzError('Conflict', `${err.message} (the object changed since it was read)`, { details: { status: 409, reason: 'Conflict' } });
      }
      throw err;
    }
  }

  async delete(name: string, namespace?: string): Promise<boolean> {
    const key = this.api.key(this.ref, namespace, name);
    const live = this.api.read(key);
    if (!live) return false;
    const meta = live.metadata ?? {};
    if ((meta.finalizers ?? []).length > 0) {
      if (meta.deletionTimestamp) return true;
      const next: KubeObject = {
        ...live,
        metadata: { ...meta, deletionTimestamp: this.api.now(), deletionGracePeriodSeconds: 0, generation: (meta.generation ?? 0) + 1, resourceVersion: this.api.nextVersion() },
      };
      this.api.write(this.ref, key, next, 'delete');
      return true;
    }
    this.api.write(this.ref, key, undefined, 'delete');
    return true;
  }

  async inform(opts: ListOptions, onEvent: (type: WatchEventType, obj: T) => void): Promise<InformerHandle<T>> {
    const cache = new Map<string, KubeObject>();
    const w: Watcher = { ref: this.ref, opts, cache, onEvent: onEvent as (type: WatchEventType, obj: KubeObject) => void };
    // As client-node's ListWatch: the initial list is delivered as ADDED before start resolves.
    for (const o of this.api.list(this.ref, opts)) {
      cache.set(this.api.key(this.ref, o.metadata?.namespace, o.metadata?.name ?? ''), o);
      onEvent('ADDED', structuredClone(o) as T);
    }
    this.api.addWatcher(w);
    return {
      list: () => [...cache.values()].map((o) => structuredClone(o) as T),
      get: (name, namespace) => {
        const o = cache.get(this.api.key(this.ref, namespace, name));
        return o ? (structuredClone(o) as T) : undefined;
      },
      stop: async () => this.api.removeWatcher(w),
    };
  }
}
