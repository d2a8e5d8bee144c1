// JSON merge patches (RFC 7386) computed the way kubectl's client-side apply does for custom
// resources: set what the manifest says, and null out what the last applied manifest had but
// the new one dropped, leaving fields that others (defaults, controllers) set alone.

import { isObject, jsonEqual as deepEqual, type JsonObject } from '../api/json.js';

export { isObject, type JsonObject };

/**
 * The merge patch that turns `current` into something that has every field of `modified`, and
 * lacks every field that `original` (the last applied manifest) had but `modified` does not.
 * Lists are replaced whole (merge-patch semantics). Without `original`, nothing is removed.
 */
export function threeWayMergePatch(original: JsonObject | undefined, modified: JsonObject, current: JsonObject): JsonObject {
  const patch: JsonObject = {};
  for (const [k, m] of Object.entries(modified)) {
    const c = current[k];
    if (isObject(m) && isObject(c)) {
      const o = original?.[k];
      const sub = threeWayMergePatch(isObject(o) ? o : undefined, m, c);
      if (Object.keys(sub).length > 0) patch[k] = sub;
    } else if (!deepEqual(m, c)) {
      patch[k] = m;
    }
  }
  if (original) {
    for (const k of Object.keys(original)) {
      if (!(k in modified) && k in current) patch[k] = null;
    }
  }
  return patch;
}

/** The merge patch that turns `from` into `to` (both plain JSON objects). */
export function twoWayMergePatch(from: JsonObject, to: JsonObject): JsonObject {
  return threeWayMergePatch(from, to, from);
}
