// The JSONPath subset CRD printer columns use (k8s.io/client-go/util/jsonpath): `.a.b`, `['a.b']`,
// `[n]`, `[-n]`, `[a:b]`, `[*]`, `.*`, `..name`, and filters `[?(@.type=="Ready")]` with
// ==, !=, <, >, <=, >= or a bare existence test. Missing keys yield no result rather than an error.

import { isObject as isObj } from '../api/json.js';

type Step =
  | { kind: 'key'; key: string }
  | { kind: 'index'; index: number }
  | { kind: 'slice'; start?: number; end?: number }
  | { kind: 'wildcard' }
  | { kind: 'recursive'; key: string }
  | { kind: 'filter'; left: Step[]; op?: string; right?: { path: Step[] } | { value: unknown } };

const IDENT = /^[A-Za-z0-9_$\-/]+/;

function parseLiteral(s: string): unknown {
  const t = s.trim();
  if ((t.startsWith('"') && t.endsWith('"')) || (t.startsWith("'") && t.endsWith("'"))) return t.slice(1, -1);
  if (t === 'true') return true;
  if (t === 'false') return false;
  if (t === 'null') return null;
  const n = Number(t);
  if (t !== '' && !Number.isNaN(n)) return n;
  return t;
}

function parseFilter(body: string): Step {
  const m = /^\s*(@[^=!<>]*?)\s*(==|!=|<=|>=|<|>)\s*(.+?)\s*$/.exec(body);
  if (!m) return { kind: 'filter', left: parsePath(body.trim().slice(1)) };
  const left = parsePath((m[1] ?? '@').slice(1));
  const r = m[3] ?? '';
  const right = r.startsWith('@') ? { path: parsePath(r.slice(1)) } : { value: parseLiteral(r) };
  return { kind: 'filter', left, op: m[2] ?? '==', right };
}

/** Parse a path like `.status.conditions[?(@.type=="Ready")].status` (optionally wrapped in `{}`). */
export function parsePath(expr: string): Step[] {
  let s = expr.trim();
  if (s.startsWith('{') && s.endsWith('}')) s = s.slice(1, -1).trim();
  if (s.startsWith('$')) s = s.slice(1);
  const steps: Step[] = [];
  let i = 0;
  while (i < s.length) {
    const rest = s.slice(i);
    if (rest.startsWith('..')) {
      const m = IDENT.exec(rest.slice(2));
      if (!m) throw new Error(`jsonpath: expected a name after ".." in ${JSON.stringify(expr)}`);
      steps.push({ kind: 'recursive', key: m[0] });
      i += 2 + m[0].length;
    } else if (rest.startsWith('.*')) {
      steps.push({ kind: 'wildcard' });
      i += 2;
    } else if (rest.startsWith('.')) {
      const m = IDENT.exec(rest.slice(1));
      if (!m) {
        i += 1; // a lone "." (the current object)
        continue;
      }
      steps.push({ kind: 'key', key: m[0] });
      i += 1 + m[0].length;
    } else if (rest.startsWith('[')) {
      // Find the matching "]" while skipping quoted strings and nested brackets.
      let depth = 0;
      let j = 0;
      let quote = '';
      for (; j < rest.length; j++) {
        const ch = rest[j];
        if (quote) {
          if (ch === quote) quote = '';
        } else if (ch === '"' || ch === "'") quote = ch;
        else if (ch === '[') depth++;
        else if (ch === ']' && --depth === 0) break;
      }
      if (j >= rest.length) throw new Error(`jsonpath: unclosed "[" in ${JSON.stringify(expr)}`);
      const inner = rest.slice(1, j).trim();
      i += j + 1;
      if (inner === '*') steps.push({ kind: 'wildcard' });
      else if (inner.startsWith('?(') && inner.endsWith(')')) steps.push(parseFilter(inner.slice(2, -1)));
      else if (/^['"].*['"]$/.test(inner)) steps.push({ kind: 'key', key: inner.slice(1, -1) });
      else if (/^-?\d+$/.test(inner)) steps.push({ kind: 'index', index: Number(inner) });
      else if (/^-?\d*:-?\d*(:\d*)?$/.test(inner)) {
        const [a, b] = inner.split(':');
        steps.push({ kind: 'slice', start: a ? Number(a) : undefined, end: b ? Number(b) : undefined });
      } else throw new Error(`jsonpath: unsupported subscript [${inner}] in ${JSON.stringify(expr)}`);
    } else {
      const m = IDENT.exec(rest);
      if (!m) throw new Error(`jsonpath: unexpected ${JSON.stringify(rest[0])} in ${JSON.stringify(expr)}`);
      steps.push({ kind: 'key', key: m[0] });
      i += m[0].length;
    }
  }
  return steps;
}


function children(v: unknown): unknown[] {
  if (Array.isArray(v)) return v;
  if (isObj(v)) return Object.values(v);
  return [];
}

function compare(a: unknown, op: string, b: unknown): boolean {
  switch (op) {
    case '==': return a === b || (a !== undefined && b !== undefined && String(a) === String(b) && typeof a === typeof b);
    case '!=': return a !== b;
    case '<': return typeof a === 'number' && typeof b === 'number' && a < b;
    case '>': return typeof a === 'number' && typeof b === 'number' && a > b;
    case '<=': return typeof a === 'number' && typeof b === 'number' && a <= b;
    case '>=': return typeof a === 'number' && typeof b === 'number' && a >= b;
    default: return false;
  }
}

function applyStep(nodes: unknown[], step: Step): unknown[] {
  const out: unknown[] = [];
  for (const n of nodes) {
    switch (step.kind) {
      case 'key':
        if (isObj(n) && n[step.key] !== undefined) out.push(n[step.key]);
        break;
      case 'index':
        if (Array.isArray(n)) {
          const i = step.index < 0 ? n.length + step.index : step.index;
          if (i >= 0 && i < n.length) out.push(n[i]);
        }
        break;
      case 'slice':
        if (Array.isArray(n)) out.push(...n.slice(step.start, step.end));
        break;
      case 'wildcard':
        out.push(...children(n));
        break;
      case 'recursive': {
        const walk = (v: unknown): void => {
          if (isObj(v) && v[step.key] !== undefined) out.push(v[step.key]);
          children(v).forEach(walk);
        };
        walk(n);
        break;
      }
      case 'filter':
        for (const item of Array.isArray(n) ? n : [n]) {
          const left = evaluate(item, step.left);
          if (step.op === undefined) {
            if (left.length > 0) out.push(item);
            continue;
          }
          const right = step.right && 'path' in step.right ? evaluate(item, step.right.path)[0] : step.right?.value;
          if (left.length > 0 && compare(left[0], step.op, right)) out.push(item);
        }
        break;
    }
  }
  return out;
}

export function evaluate(obj: unknown, steps: Step[]): unknown[] {
  return steps.reduce<unknown[]>((nodes, step) => applyStep(nodes, step), [obj]);
}

/** All values `expr` selects in `obj` (empty when nothing matches). */
export function jsonPath(obj: unknown, expr: string): unknown[] {
  return evaluate(obj, parsePath(expr));
}

/** Text the way kubectl/jsonpath prints results: strings raw, other values as JSON, joined by spaces. */
export function printResults(values: unknown[]): string {
  return values.map((v) => (typeof v === 'string' ? v : JSON.stringify(v))).join(' ');
}
