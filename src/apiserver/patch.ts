// RFC 7386 JSON merge patch and RFC 6902 JSON patch, on plain JSON values.

import { isObject as isObj, jsonEqual as deepEqual } from '../api/json.js';
import { ApiError, errors } from './status-errors.js';

type Json = unknown;

/** RFC 7386: objects merge recursively, `null` deletes a key, anything else replaces. */
export function mergePatch(target: Json, patch: Json): Json {
  if (!isObj(patch)) return structuredClone(patch);
  const out: Record<string, unknown> = isObj(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

export interface JsonPatchOp {
  op: 'add' | 'remove' | 'replace' | 'move' | 'copy' | 'test';
  path: string;
  from?: string;
  value?: unknown;
}

function parsePointer(p: string): string[] {
  if (p === '') return [];
  if (!p.startsWith('/')) throw errors.badRequest(`JSON pointer must start with "/": ${JSON.stringify(p)}`);
  return p.slice(1).split('/').map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
}

// A failed `test` is 422 on the real server; other failures are 422 too (the patch "cannot be applied").
const unprocessable = (msg: string) => new ApiError(422, 'Invalid', msg);

function parentOf(doc: Json, segs: string[], path: string): { parent: unknown; key: string } {
  let cur: unknown = doc;
  for (const s of segs.slice(0, -1)) {
    if (Array.isArray(cur)) cur = cur[Number(s)];
    else if (isObj(cur)) cur = cur[s];
    else cur = undefined;
    if (cur === undefined) throw unprocessable(`jsonpatch: path ${JSON.stringify(path)} does not exist`);
  }
  return { parent: cur, key: segs[segs.length - 1] ?? '' };
}

function getAt(doc: Json, path: string): unknown {
  let cur: unknown = doc;
  for (const s of parsePointer(path)) {
    if (Array.isArray(cur)) cur = cur[Number(s)];
    else if (isObj(cur)) cur = Object.prototype.hasOwnProperty.call(cur, s) ? cur[s] : undefined;
    else cur = undefined;
    if (cur === undefined) throw unprocessable(`jsonpatch: path ${JSON.stringify(path)} does not exist`);
  }
  return cur;
}

function arrayIndex(arr: unknown[], key: string, forAdd: boolean, path: string): number {
  if (forAdd && key === '-') return arr.length;
  if (!/^(0|[1-9][0-9]*)$/.test(key)) throw unprocessable(`jsonpatch: invalid array index in ${JSON.stringify(path)}`);
  const i = Number(key);
  if (i > arr.length || (!forAdd && i >= arr.length)) throw unprocessable(`jsonpatch: array index out of bounds in ${JSON.stringify(path)}`);
  return i;
}

function add(doc: Json, path: string, value: unknown): Json {
  const segs = parsePointer(path);
  if (segs.length === 0) return value;
  const { parent, key } = parentOf(doc, segs, path);
  if (Array.isArray(parent)) parent.splice(arrayIndex(parent, key, true, path), 0, value);
  else if (isObj(parent)) parent[key] = value;
  else throw unprocessable(`jsonpatch: cannot add at ${JSON.stringify(path)}`);
  return doc;
}

function remove(doc: Json, path: string): Json {
  const segs = parsePointer(path);
  const { parent, key } = parentOf(doc, segs, path);
  if (Array.isArray(parent)) parent.splice(arrayIndex(parent, key, false, path), 1);
  else if (isObj(parent) && Object.prototype.hasOwnProperty.call(parent, key)) delete parent[key];
  else throw unprocessable(`jsonpatch: path ${JSON.stringify(path)} does not exist`);
  return doc;
}

/** RFC 6902. Throws 400 for a malformed patch and 422 when an operation cannot be applied (including a failed `test`). */
export function jsonPatch(target: Json, ops: unknown): Json {
  if (!Array.isArray(ops)) throw errors.badRequest('json: cannot unmarshal object into Go value of type jsonpatch.Patch');
  let doc: Json = structuredClone(target);
  for (const raw of ops) {
    if (!isObj(raw) || typeof raw.op !== 'string' || typeof raw.path !== 'string') throw errors.badRequest('jsonpatch: each operation needs "op" and "path"');
    const op = raw as unknown as JsonPatchOp;
    switch (op.op) {
      case 'add':
        doc = add(doc, op.path, structuredClone(op.value));
        break;
      case 'remove':
        doc = remove(doc, op.path);
        break;
      case 'replace':
        getAt(doc, op.path);
        doc = op.path === '' ? structuredClone(op.value) : add(remove(doc, op.path), op.path, structuredClone(op.value));
        break;
      case 'move': {
        const v = getAt(doc, op.from ?? '');
        doc = add(remove(doc, op.from ?? ''), op.path, v);
        break;
      }
      case 'copy':
        doc = add(doc, op.path, structuredClone(getAt(doc, op.from ?? '')));
        break;
      case 'test':
        if (!deepEqual(getAt(doc, op.path), op.value)) throw unprocessable(`the server rejected our request due to an error in our request: testing value ${op.path} failed`);
        break;
      default:
        throw errors.badRequest(`jsonpatch: unknown operation ${JSON.stringify((op as { op: string }).op)}`);
    }
  }
  return doc;
}

export { deepEqual };
