// Field sets as server-side apply sees them (structured-merge-diff): the set of leaf paths and
// list items an object sets, walked along its CRD schema so that `x-kubernetes-list-type`
// (atomic by default, `map` keyed by `x-kubernetes-list-map-keys`, `set`) and
// `x-kubernetes-map-type: atomic` decide what is one field. Encodes to and from the FieldsV1
// JSON of metadata.managedFields (`{"f:spec":{"f:template":{}}}`), and reads, compares and
// removes values at a path.

import type { SchemaNode } from '../api/index.js';
import { canonical, isObj } from './object-meta.js';

/** One step: `f:name` (field), `k:{"type":"Ready"}` (list-map item), `v:"x"` (set item), `i:0` (index). */
export type PathElement = string;
export type FieldPath = PathElement[];

/** A set of paths, keyed by their JSON encoding (each path is kept too: iterating parses nothing). */
export class FieldSet {
  private readonly paths = new Map<string, FieldPath>();

  static of(paths: Iterable<FieldPath>): FieldSet {
    const s = new FieldSet();
    for (const p of paths) s.add(p);
    return s;
  }

  /** Keeps `p` itself: callers build new path arrays and never change one they have added. */
  add(p: FieldPath): void {
    const k = JSON.stringify(p);
    if (!this.paths.has(k)) this.paths.set(k, p);
  }
  has(p: FieldPath): boolean {
    return this.paths.has(JSON.stringify(p));
  }
  delete(p: FieldPath): void {
    this.paths.delete(JSON.stringify(p));
  }
  get size(): number {
    return this.paths.size;
  }
  [Symbol.iterator](): IterableIterator<FieldPath> {
    return this.paths.values();
  }
  union(o: FieldSet): FieldSet {
    const s = this.filtered(() => true);
    for (const [k, p] of o.paths) if (!s.paths.has(k)) s.paths.set(k, p);
    return s;
  }
  minus(o: FieldSet): FieldSet {
    return this.filtered((k) => !o.paths.has(k));
  }
  intersect(o: FieldSet): FieldSet {
    return this.filtered((k) => o.paths.has(k));
  }
  private filtered(keep: (key: string) => boolean): FieldSet {
    const s = new FieldSet();
    for (const [k, p] of this.paths) if (keep(k)) s.paths.set(k, p);
    return s;
  }
  /** Any member equal to `p` or below it. */
  hasAtOrBelow(p: FieldPath): boolean {
    for (const q of this.paths.values()) if (q.length >= p.length && p.every((e, i) => q[i] === e)) return true;
    return false;
  }
  equals(o: FieldSet): boolean {
    if (this.size !== o.size) return false;
    for (const k of this.paths.keys()) if (!o.paths.has(k)) return false;
    return true;
  }

  /** FieldsV1: nested objects keyed by path element; `{}` is a leaf, `".": {}` marks an inner member. */
  toFieldsV1(): Record<string, unknown> {
    interface Node { member: boolean; children: Map<string, Node> }
    const root: Node = { member: false, children: new Map() };
    for (const p of this) {
      let n = root;
      for (const e of p) {
        let c = n.children.get(e);
        if (!c) n.children.set(e, (c = { member: false, children: new Map() }));
        n = c;
      }
      n.member = true;
    }
    const enc = (n: Node): Record<string, unknown> => {
      const out: Record<string, unknown> = {};
      if (n.member && n.children.size > 0) out['.'] = {};
      for (const k of [...n.children.keys()].sort()) out[k] = enc(n.children.get(k) as Node);
      return out;
    };
    return enc(root);
  }

  static fromFieldsV1(v: unknown, prefix: FieldPath = [], into: FieldSet = new FieldSet()): FieldSet {
    if (!isObj(v)) return into;
    for (const [k, child] of Object.entries(v)) {
      if (k === '.') into.add(prefix);
      else if (isObj(child) && Object.keys(child).length === 0) into.add([...prefix, k]);
      else FieldSet.fromFieldsV1(child, [...prefix, k], into);
    }
    return into;
  }
}

/** `.spec.x`, `.status.conditions[type="Ready"].status`, `.metadata.finalizers[="a"]`, as upstream prints paths. */
export function pathString(p: FieldPath): string {
  return p
    .map((e) => {
      const body = e.slice(2);
      if (e.startsWith('f:')) return `.${body}`;
      if (e.startsWith('i:')) return `[${body}]`;
      if (e.startsWith('v:')) return `[=${body}]`;
      const key = JSON.parse(body) as Record<string, unknown>;
      return `[${Object.entries(key).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(',')}]`;
    })
    .join('');
}

// ---- schema navigation ----

/** Schema with no constraints: maps are granular, lists atomic (what SMD deduces for unknown types). */
const UNTYPED: SchemaNode = {};

const STRING_MAP: SchemaNode = { type: 'object', additionalProperties: { type: 'string' } };
/** The part of ObjectMeta that field managers own (name, uid, resourceVersion... belong to the server). */
export const METADATA_SCHEMA: SchemaNode = {
  type: 'object',
  properties: {
    labels: STRING_MAP,
    annotations: STRING_MAP,
    finalizers: { type: 'array', items: { type: 'string' }, 'x-kubernetes-list-type': 'set' },
    ownerReferences: { type: 'array', items: { type: 'object' }, 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['uid'] },
  },
};
export const TRACKED_METADATA = Object.keys(METADATA_SCHEMA.properties as object);

export function childSchema(s: SchemaNode | undefined, key: string): SchemaNode {
  if (!s) return UNTYPED;
  const props = s.properties;
  if (isObj(props) && isObj(props[key])) return props[key] as SchemaNode;
  if (isObj(s.additionalProperties)) return s.additionalProperties as SchemaNode;
  return UNTYPED;
}

function itemSchema(s: SchemaNode | undefined): SchemaNode {
  return s && isObj(s.items) ? (s.items as SchemaNode) : UNTYPED;
}

function listType(s: SchemaNode | undefined): 'atomic' | 'map' | 'set' {
  const t = s?.['x-kubernetes-list-type'];
  return t === 'map' || t === 'set' ? t : 'atomic';
}

function mapKeys(s: SchemaNode | undefined): string[] {
  const k = s?.['x-kubernetes-list-map-keys'];
  return Array.isArray(k) ? (k as string[]) : [];
}

function atomicMap(s: SchemaNode | undefined): boolean {
  return s?.['x-kubernetes-map-type'] === 'atomic' || s?.['x-kubernetes-int-or-string'] === true;
}

function keyElement(item: unknown, keys: string[]): PathElement | undefined {
  if (!isObj(item) || keys.length === 0) return undefined;
  const k: Record<string, unknown> = {};
  for (const name of [...keys].sort()) if (item[name] !== undefined) k[name] = item[name];
  return `k:${JSON.stringify(k)}`;
}

/** The paths a value sets. Empty maps and lists are members themselves. */
export function fieldSetOf(value: unknown, schema: SchemaNode, path: FieldPath = [], out: FieldSet = new FieldSet()): FieldSet {
  if (isObj(value) && !atomicMap(schema)) {
    const keys = Object.keys(value);
    if (keys.length === 0 && path.length > 0) out.add(path);
    for (const k of keys) if (value[k] !== null) fieldSetOf(value[k], childSchema(schema, k), [...path, `f:${k}`], out);
    return out;
  }
  if (Array.isArray(value)) {
    const lt = listType(schema);
    if (lt === 'atomic' || value.length === 0) {
      out.add(path);
      return out;
    }
    value.forEach((item, i) => {
      if (lt === 'set') out.add([...path, `v:${JSON.stringify(item)}`]);
      else {
        const pe = keyElement(item, mapKeys(schema)) ?? `i:${i}`;
        out.add([...path, pe]);
        if (isObj(item)) for (const k of Object.keys(item)) if (item[k] !== null) fieldSetOf(item[k], childSchema(itemSchema(schema), k), [...path, pe, `f:${k}`], out);
      }
    });
    return out;
  }
  out.add(path);
  return out;
}

function findItem(list: unknown[], pe: PathElement): number {
  const body = pe.slice(2);
  if (pe.startsWith('i:')) return Number(body) < list.length ? Number(body) : -1;
  if (pe.startsWith('v:')) return list.findIndex((x) => canonical(x) === canonical(JSON.parse(body)));
  const key = JSON.parse(body) as Record<string, unknown>;
  return list.findIndex((x) => isObj(x) && Object.entries(key).every(([k, v]) => canonical(x[k]) === canonical(v)));
}

export function valueAt(obj: unknown, p: FieldPath): { found: boolean; value?: unknown } {
  let cur: unknown = obj;
  for (const e of p) {
    if (e.startsWith('f:')) {
      if (!isObj(cur) || !Object.prototype.hasOwnProperty.call(cur, e.slice(2))) return { found: false };
      cur = cur[e.slice(2)];
    } else {
      if (!Array.isArray(cur)) return { found: false };
      const i = findItem(cur, e);
      if (i < 0) return { found: false };
      cur = cur[i];
    }
  }
  return { found: true, value: cur };
}

/** Removes the value at `p` (a field, or a list item); drops maps it leaves empty up to `keepDepth`. */
export function removeAt(obj: Record<string, unknown>, p: FieldPath, keep: (parent: FieldPath) => boolean): void {
  if (p.length === 0) return;
  const parent = valueAt(obj, p.slice(0, -1));
  if (!parent.found) return;
  const last = p[p.length - 1] as PathElement;
  if (last.startsWith('f:') && isObj(parent.value)) delete parent.value[last.slice(2)];
  else if (Array.isArray(parent.value)) {
    const i = findItem(parent.value, last);
    if (i >= 0) parent.value.splice(i, 1);
  } else return;
  // A map emptied by the removal goes too, unless someone owns it as such.
  const pp = p.slice(0, -1);
  if (pp.length > 1 && isObj(parent.value) && Object.keys(parent.value).length === 0 && pp[pp.length - 1]?.startsWith('f:') && !keep(pp)) {
    removeAt(obj, pp, keep);
  }
}

/**
 * Whether `p` differs between two objects, the way SMD's comparison sees it: inner nodes (granular
 * maps, list-map items) only by presence, leaves by value.
 */
export function changedAt(a: unknown, b: unknown, p: FieldPath): boolean {
  const x = valueAt(a, p);
  const y = valueAt(b, p);
  if (x.found !== y.found) return true;
  if (!x.found) return false;
  if (isObj(x.value) && isObj(y.value) && Object.keys(x.value).length > 0 && Object.keys(y.value).length > 0 && innerNode(p)) return false;
  return canonical(x.value) !== canonical(y.value);
}

// List-map items are members whose children are tracked separately.
function innerNode(p: FieldPath): boolean {
  const last = p[p.length - 1] ?? '';
  return last.startsWith('k:') || last.startsWith('i:');
}

/** Merges an applied configuration into the live object along the schema (SMD's merge). */
export function mergeApplied(live: unknown, applied: unknown, schema: SchemaNode): unknown {
  if (isObj(applied) && isObj(live) && !atomicMap(schema)) {
    const out: Record<string, unknown> = { ...live };
    for (const [k, v] of Object.entries(applied)) {
      if (v === null) delete out[k];
      else out[k] = mergeApplied(live[k], v, childSchema(schema, k));
    }
    return out;
  }
  if (Array.isArray(applied) && Array.isArray(live)) {
    const lt = listType(schema);
    if (lt === 'set') {
      const out = [...live];
      for (const v of applied) if (!out.some((x) => canonical(x) === canonical(v))) out.push(structuredClone(v));
      return out;
    }
    if (lt === 'map') {
      const keys = mapKeys(schema);
      const out = [...live];
      for (const item of applied) {
        const pe = keyElement(item, keys);
        const i = pe ? findItem(out, pe) : -1;
        if (i >= 0) out[i] = mergeApplied(out[i], item, itemSchema(schema));
        else out.push(structuredClone(item));
      }
      return out;
    }
  }
  return structuredClone(applied);
}
