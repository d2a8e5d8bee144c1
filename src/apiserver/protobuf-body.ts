// Request bodies in the Kubernetes protobuf encoding (`application/vnd.kubernetes.protobuf`).
// kubectl ≥1.32 sends the built-in kinds it creates through typed clients (`kubectl create
// namespace`, `kubectl create secret`) this way; the server stores JSON, so such a body is decoded
// into the very object the JSON encoding of the same request gives, and answers stay JSON (clients
// send `Accept: application/vnd.kubernetes.protobuf,application/json`).
//
// The envelope: the 4 bytes `k8s\0`, then a runtime.Unknown message {1: typeMeta {1: apiVersion,
// 2: kind}, 2: raw (the object's own message), 3: contentEncoding, 4: contentType}. Only the kinds
// in DECODERS are understood; anything else is a 415, so a client can fall back to JSON.

import { ApiError, errors } from './status-errors.js';

export const PROTOBUF_MEDIA_TYPE = 'application/vnd.kubernetes.protobuf';
const MAGIC = [0x6b, 0x38, 0x73, 0x00]; // "k8s\0"

const WIRE_VARINT = 0;
const WIRE_FIXED64 = 1;
const WIRE_BYTES = 2;
const WIRE_FIXED32 = 5;

type Json = Record<string, unknown>;

function truncated(what: string): ApiError {
  return errors.badRequest(`the request body could not be decoded: protobuf ${what} is truncated or malformed; send the object as application/json instead`);
}

/** A cursor over one protobuf message (a slice of the body). */
export class ProtoReader {
  private pos: number;

  constructor(
    private readonly buf: Uint8Array,
    start = 0,
    private readonly end = buf.length,
  ) {
    this.pos = start;
  }

  done(): boolean {
    return this.pos >= this.end;
  }

  /** Unsigned varint; values above 2^53 lose precision (no field decoded here needs them). */
  varint(): number {
    let value = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw truncated('varint');
      const b = this.buf[this.pos++] as number;
      value += (b & 0x7f) * scale;
      if ((b & 0x80) === 0) return value;
      scale *= 128;
    }
    throw truncated('varint (longer than 10 bytes)');
  }

  /** The next field's number and wire type, or undefined at the end of the message. */
  tag(): { field: number; wire: number } | undefined {
    if (this.done()) return undefined;
    const t = this.varint();
    const field = Math.floor(t / 8);
    if (field === 0) throw truncated('field tag (field number 0)');
    return { field, wire: t % 8 };
  }

  /** A length-delimited field's bytes, as a reader of their own. */
  sub(): ProtoReader {
    const len = this.varint();
    if (len > this.end - this.pos) throw truncated('length-delimited field');
    const r = new ProtoReader(this.buf, this.pos, this.pos + len);
    this.pos += len;
    return r;
  }

  bytes(): Uint8Array {
    const r = this.sub();
    return r.buf.subarray(r.pos, r.end);
  }

  string(): string {
    return Buffer.from(this.bytes()).toString('utf8');
  }

  /** Skips a field this decoder does not know (unknown fields are ignored, as the real server does for fields it does not serve). */
  skip(wire: number): void {
    switch (wire) {
      case WIRE_VARINT:
        this.varint();
        return;
      case WIRE_BYTES:
        this.sub();
        return;
      case WIRE_FIXED64:
        this.advance(8);
        return;
      case WIRE_FIXED32:
        this.advance(4);
        return;
      default:
        throw truncated(`field (wire type ${wire} is not used by Kubernetes)`);
    }
  }

  private advance(n: number): void {
    if (n > this.end - this.pos) throw truncated('fixed-width field');
    this.pos += n;
  }
}

/** Reads every field of a message; `on` returns false for fields it did not consume, which are skipped. */
function fields(r: ProtoReader, on: (field: number, wire: number) => boolean): void {
  for (let t = r.tag(); t !== undefined; t = r.tag()) {
    if (!on(t.field, t.wire)) r.skip(t.wire);
  }
}

/** One map entry, a message {1: key, 2: value}; both default to empty when absent, as in protobuf. */
function readMap<V>(r: ProtoReader, into: Record<string, V>, value: (e: ProtoReader) => V, empty: V): void {
  const e = r.sub();
  let k = '';
  let v = empty;
  fields(e, (f, w) => {
    if (w !== WIRE_BYTES) return false;
    if (f === 1) k = e.string();
    else if (f === 2) v = value(e);
    else return false;
    return true;
  });
  // An own property even for a key like `__proto__`, as JSON.parse makes it.
  Object.defineProperty(into, k, { value: v, enumerable: true, writable: true, configurable: true });
}

const str = (e: ProtoReader): string => e.string();
const b64 = (e: ProtoReader): string => Buffer.from(e.bytes()).toString('base64');

/** Sets a string field, leaving empty ones out: Go writes every string field, JSON omits empty ones. */
function setString(o: Json, key: string, r: ProtoReader): void {
  const s = r.string();
  if (s !== '') o[key] = s;
}

function objectMeta(r: ProtoReader): Json {
  const m: Json = {};
  const labels: Record<string, string> = {};
  const annotations: Record<string, string> = {};
  const finalizers: string[] = [];
  const ownerReferences: Json[] = [];
  let hasLabels = false;
  let hasAnnotations = false;
  fields(r, (f, w) => {
    if (w === WIRE_VARINT && f === 7) {
      const g = r.varint();
      if (g !== 0) m.generation = g;
      return true;
    }
    if (w !== WIRE_BYTES) return false;
    switch (f) {
      case 1: setString(m, 'name', r); return true;
      case 2: setString(m, 'generateName', r); return true;
      case 3: setString(m, 'namespace', r); return true;
      case 5: setString(m, 'uid', r); return true;
      case 6: setString(m, 'resourceVersion', r); return true;
      case 11: readMap(r, labels, str, ''); hasLabels = true; return true;
      case 12: readMap(r, annotations, str, ''); hasAnnotations = true; return true;
      case 13: ownerReferences.push(ownerReference(r.sub())); return true;
      case 14: finalizers.push(r.string()); return true;
      default: return false;
    }
  });
  if (hasLabels) m.labels = labels;
  if (hasAnnotations) m.annotations = annotations;
  if (ownerReferences.length > 0) m.ownerReferences = ownerReferences;
  if (finalizers.length > 0) m.finalizers = finalizers;
  return m;
}

function ownerReference(r: ProtoReader): Json {
  const o: Json = {};
  fields(r, (f, w) => {
    if (w === WIRE_VARINT && (f === 6 || f === 7)) {
      o[f === 6 ? 'controller' : 'blockOwnerDeletion'] = r.varint() !== 0;
      return true;
    }
    if (w !== WIRE_BYTES) return false;
    const key = ({ 1: 'kind', 3: 'name', 4: 'uid', 5: 'apiVersion' } as Record<number, string>)[f];
    if (key === undefined) return false;
    o[key] = r.string();
    return true;
  });
  return o;
}

function namespace(r: ProtoReader, o: Json): void {
  fields(r, (f, w) => {
    if (w !== WIRE_BYTES) return false;
    if (f === 1) o.metadata = objectMeta(r.sub());
    else if (f === 2) {
      const spec: Json = {};
      const fin: string[] = [];
      const s = r.sub();
      fields(s, (sf, sw) => (sf === 1 && sw === WIRE_BYTES ? (fin.push(s.string()), true) : false));
      if (fin.length > 0) spec.finalizers = fin;
      o.spec = spec;
    } else if (f === 3) {
      const status: Json = {};
      const s = r.sub();
      fields(s, (sf, sw) => (sf === 1 && sw === WIRE_BYTES ? (setString(status, 'phase', s), true) : false));
      o.status = status;
    } else return false;
    return true;
  });
}

/**
 * A kind made of metadata (field 1), string-keyed maps, plain strings and an `immutable` flag —
 * Secret and ConfigMap, which differ only in their field numbers and value encodings.
 */
function flatKind(layout: { maps: Record<number, [key: string, value: (e: ProtoReader) => string]>; strings?: Record<number, string>; immutable: number }) {
  return (r: ProtoReader, o: Json): void => {
    const maps: Record<string, Record<string, string>> = {};
    fields(r, (f, w) => {
      if (f === layout.immutable && w === WIRE_VARINT) {
        o.immutable = r.varint() !== 0;
        return true;
      }
      if (w !== WIRE_BYTES) return false;
      if (f === 1) {
        o.metadata = objectMeta(r.sub());
        return true;
      }
      const map = layout.maps[f];
      if (map) {
        readMap(r, (maps[map[0]] ??= {}), map[1], '');
        return true;
      }
      const key = layout.strings?.[f];
      if (key === undefined) return false;
      setString(o, key, r);
      return true;
    });
    Object.assign(o, maps);
  };
}

const secret = flatKind({ maps: { 2: ['data', b64], 4: ['stringData', str] }, strings: { 3: 'type' }, immutable: 5 });
const configMap = flatKind({ maps: { 2: ['data', str], 3: ['binaryData', b64] }, immutable: 4 });

/** The kinds whose protobuf this server decodes, by `apiVersion/kind` (all core v1). */
const DECODERS: Record<string, (r: ProtoReader, into: Json) => void> = {
  'v1/Namespace': namespace,
  'v1/Secret': secret,
  'v1/ConfigMap': configMap,
};

/** Whether a protobuf body of this kind can be decoded (the rest answer 415). */
export function decodesProtobuf(apiVersion: string, kind: string): boolean {
  return `${apiVersion}/${kind}` in DECODERS;
}

/** Media types a write of this kind accepts, for a 415's message. */
export function acceptedMediaTypes(apiVersion: string, kind: string): string[] {
  const base = ['application/json', 'application/yaml'];
  return decodesProtobuf(apiVersion, kind) ? [...base, PROTOBUF_MEDIA_TYPE] : base;
}

/**
 * Decodes a protobuf request body into the JSON object of the same request. `target` is the
 * endpoint's apiVersion and kind: used when the envelope has no typeMeta, and the envelope's kind
 * must be one this server decodes. Truncated or malformed bytes → 400; other kinds → 415.
 */
export function decodeProtobufBody(body: Uint8Array, target: { apiVersion: string; kind: string }): Json {
  if (body.length < MAGIC.length || MAGIC.some((b, i) => body[i] !== b)) {
    throw errors.badRequest(`the request body could not be decoded: a ${PROTOBUF_MEDIA_TYPE} body starts with "k8s\\0"; send the object as application/json instead`);
  }
  const r = new ProtoReader(body, MAGIC.length);
  let apiVersion = '';
  let kind = '';
  let raw: Uint8Array | undefined;
  let encoding = '';
  fields(r, (f, w) => {
    if (w !== WIRE_BYTES) return false;
    if (f === 1) {
      const tm = r.sub();
      fields(tm, (tf, tw) => {
        if (tw !== WIRE_BYTES) return false;
        if (tf === 1) apiVersion = tm.string();
        else if (tf === 2) kind = tm.string();
        else return false;
        return true;
      });
    } else if (f === 2) raw = r.bytes();
    else if (f === 3) encoding = r.string();
    else return false;
    return true;
  });
  apiVersion ||= target.apiVersion;
  kind ||= target.kind;
  const decode = DECODERS[`${apiVersion}/${kind}`];
  if (decode === undefined || encoding !== '') throw errors.unsupportedMediaType(acceptedMediaTypes(target.apiVersion, target.kind));
  const o: Json = { apiVersion, kind };
  decode(new ProtoReader(raw ?? new Uint8Array(0)), o);
  return o;
}
