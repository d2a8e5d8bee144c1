// Small helpers on stored objects: metadata access, name rules, canonical JSON for
// "did anything change" checks, and the timestamps Kubernetes uses.

import type { Obj } from './store.js';

export type Meta = Record<string, unknown> & {
  name?: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  finalizers?: string[];
  deletionTimestamp?: string;
  ownerReferences?: { uid?: string }[];
};

export function meta(o: Obj | Record<string, unknown>): Meta {
  const m = o.metadata;
  return (typeof m === 'object' && m !== null ? m : {}) as Meta;
}

import { isObject as isObj, jsonEqual } from '../api/json.js';

export { isObj, jsonEqual };

/** RFC 3339 with second precision, as metav1.Time serialises. */
export function nowTimestamp(now: Date = new Date()): string {
  // Every write stamps one or two of these: reuse the text within the same second.
  const sec = Math.floor(now.getTime() / 1000);
  if (sec !== lastStamp.sec) {
    lastStamp.sec = sec;
    lastStamp.text = now.toISOString().replace(/\.\d{3}Z$/, 'Z');
  }
  return lastStamp.text;
}

const lastStamp = { sec: NaN, text: '' };

const SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** The message for an invalid DNS-1123 subdomain name, or undefined if the name is fine. */
export function subdomainProblem(name: string): string | undefined {
  if (name.length > 253) return `Invalid value: ${JSON.stringify(name)}: must be no more than 253 characters`;
  if (!SUBDOMAIN.test(name)) {
    return `Invalid value: ${JSON.stringify(name)}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`;
  }
  return undefined;
}

const NAME_CHARS = 'bcdfghjklmnpqrstvwxz2456789';

/** generateName's 5-character random suffix (same alphabet as apimachinery, no vowels). */
export function randomSuffix(): string {
  let s = '';
  for (let i = 0; i < 5; i++) s += NAME_CHARS[Math.floor(Math.random() * NAME_CHARS.length)];
  return s;
}

/** JSON with object keys sorted, so two equal objects compare equal as strings. */
export function canonical(v: unknown): string {
  return JSON.stringify(v, (_k, val: unknown) => {
    if (!isObj(val)) return val;
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(val).sort()) out[k] = val[k];
    return out;
  });
}

