// Label selectors (`=`, `==`, `!=`, `in`, `notin`, `key`, `!key`) and field selectors
// (`a.b=v`, `a.b==v`, `a.b!=v`; any dotted path into the object, e.g. metadata.name or involvedObject.uid).

import { errors } from './status-errors.js';

type LabelReq =
  | { op: 'eq' | 'neq'; key: string; value: string }
  | { op: 'in' | 'notin'; key: string; values: string[] }
  | { op: 'exists' | 'notexists'; key: string };

export type Matcher = (obj: Record<string, unknown>) => boolean;

/** Split on commas that are not inside parentheses (`a in (x,y),b`). */
function splitTop(s: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let cur = '';
  for (const ch of s) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (ch === ',' && depth === 0) {
      out.push(cur);
      cur = '';
    } else cur += ch;
  }
  out.push(cur);
  return out.map((x) => x.trim()).filter((x) => x !== '');
}

export function parseLabelSelector(sel: string | undefined): Matcher {
  if (!sel || sel.trim() === '') return () => true;
  const reqs: LabelReq[] = splitTop(sel).map((part) => {
    let m = /^([^\s!=(),]+)\s+(in|notin)\s+\(([^)]*)\)$/.exec(part);
    if (m) return { op: m[2] as 'in' | 'notin', key: m[1] ?? '', values: (m[3] ?? '').split(',').map((v) => v.trim()) };
    m = /^([^\s!=(),]+)\s*(==|=|!=)\s*([^\s!=(),]*)$/.exec(part);
    if (m) return { op: m[2] === '!=' ? 'neq' : 'eq', key: m[1] ?? '', value: m[3] ?? '' };
    m = /^!\s*([^\s!=(),]+)$/.exec(part);
    if (m) return { op: 'notexists', key: m[1] ?? '' };
    m = /^([^\s!=(),]+)$/.exec(part);
    if (m) return { op: 'exists', key: m[1] ?? '' };
    throw errors.badRequest(`unable to parse requirement: invalid label selector: ${JSON.stringify(part)}`);
  });
  return (obj) => {
    const labels = ((obj.metadata as Record<string, unknown> | undefined)?.labels ?? {}) as Record<string, string>;
    return reqs.every((r) => {
      const has = Object.prototype.hasOwnProperty.call(labels, r.key);
      const v = labels[r.key];
      switch (r.op) {
        case 'eq': return has && v === r.value;
        case 'neq': return !has || v !== r.value;
        case 'in': return has && r.values.includes(v ?? '');
        case 'notin': return !has || !r.values.includes(v ?? '');
        case 'exists': return has;
        case 'notexists': return !has;
      }
    });
  };
}

export interface FieldReq {
  path: string;
  op: 'eq' | 'neq';
  value: string;
}

export function parseFieldSelectorReqs(sel: string | undefined): FieldReq[] {
  if (!sel || sel.trim() === '') return [];
  return sel.split(',').filter((p) => p.trim() !== '').map((part) => {
    const m = /^\s*([^=!\s]+)\s*(==|=|!=)\s*(.*?)\s*$/.exec(part);
    if (!m) throw errors.badRequest(`invalid field selector: ${JSON.stringify(part)}`);
    return { path: m[1] ?? '', op: m[2] === '!=' ? 'neq' : 'eq', value: m[3] ?? '' };
  });
}

function lookup(obj: unknown, path: string): string {
  let cur: unknown = obj;
  for (const k of path.split('.')) {
    if (cur === null || typeof cur !== 'object') return '';
    cur = (cur as Record<string, unknown>)[k];
  }
  if (cur === undefined || cur === null) return '';
  return typeof cur === 'string' ? cur : String(cur);
}

export function parseFieldSelector(sel: string | undefined): Matcher {
  const reqs = parseFieldSelectorReqs(sel);
  if (reqs.length === 0) return () => true;
  return (obj) => reqs.every((r) => (lookup(obj, r.path) === r.value) === (r.op === 'eq'));
}

/** The `metadata.name=X` value of a field selector, if it pins one name (lets list/watch skip a scan). */
export function pinnedName(sel: string | undefined): string | undefined {
  return parseFieldSelectorReqs(sel).find((r) => r.path === 'metadata.name' && r.op === 'eq')?.value;
}
