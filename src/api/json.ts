// Plain JSON values: the object test and equality every layer that handles manifests needs.

export type JsonObject = Record<string, unknown>;

export function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Whether two JSON values are equal as their serialised texts would be (key order ignored, keys
 * whose value is undefined absent), without serialising them: the API server's write path
 * compares whole objects several times per request.
 */
export function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!jsonEqual(a[i] ?? null, b[i] ?? null)) return false;
    return true;
  }
  if (!isObject(a) || !isObject(b)) return false;
  let n = 0;
  for (const k of Object.keys(a)) {
    const v = a[k];
    if (v === undefined) continue;
    n++;
    if (!jsonEqual(v, b[k])) return false;
  }
  for (const k of Object.keys(b)) if (b[k] !== undefined) n--;
  return n === 0;
}
