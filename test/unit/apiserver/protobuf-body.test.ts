// Kubernetes protobuf request bodies: the decoder on hand-built bytes, and the server accepting
// them on create/update (kubectl ≥1.32 sends `kubectl create namespace|secret` so) while answering
// 415 for media types it does not read.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { decodeProtobufBody, PROTOBUF_MEDIA_TYPE } from '../../../src/apiserver/protobuf-body.js';
import { ApiError } from '../../../src/apiserver/status-errors.js';
import { call, startTestServer, type TestServer } from './helpers.js';

// A tiny protobuf writer for the tests: field tags, varints and length-delimited fields.
function varint(n: number): number[] {
  const out: number[] = [];
  while (n >= 0x80) {
    out.push((n % 0x80) | 0x80);
    n = Math.floor(n / 0x80);
  }
  out.push(n);
  return out;
}
const key = (field: number, wire: number) => varint(field * 8 + wire);
const ld = (field: number, bytes: number[] | Buffer): number[] => [...key(field, 2), ...varint(bytes.length), ...bytes];
const str = (field: number, s: string) => ld(field, Buffer.from(s, 'utf8'));
const vint = (field: number, n: number) => [...key(field, 0), ...varint(n)];
const entry = (field: number, k: string, v: number[] | Buffer | string) =>
  ld(field, [...str(1, k), ...(typeof v === 'string' ? str(2, v) : ld(2, v))]);
const envelope = (apiVersion: string, kind: string, raw: number[], extra: number[] = []) =>
  Buffer.from([0x6b, 0x38, 0x73, 0x00, ...ld(1, [...str(1, apiVersion), ...str(2, kind)]), ...ld(2, raw), ...str(3, ''), ...str(4, ''), ...extra]);

const NS = { apiVersion: 'v1', kind: 'Namespace' };
const SECRET = { apiVersion: 'v1', kind: 'Secret' };

function namespaceBytes(name: string, extraMeta: number[] = [], extraObj: number[] = []): number[] {
  // Go writes every string field, empty ones too: generateName, namespace, uid... arrive as "".
  const meta = [...str(1, name), ...str(2, ''), ...str(3, ''), ...str(5, ''), ...entry(11, 'app', 'web'), ...entry(11, 'tier', ''), ...entry(12, 'note', 'hi'), ...str(14, 'kubevz.io/pb'), ...extraMeta];
  return [...ld(1, meta), ...ld(2, str(1, 'kubernetes')), ...ld(3, str(1, '')), ...extraObj];
}

function expectApiError(fn: () => unknown, code: number, message: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof ApiError, `expected an ApiError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    assert.match(err.message, message);
    return true;
  });
}

describe('protobuf request bodies: decoder', () => {
  it('decodes a Namespace with labels, annotations and finalizers, leaving empty strings out as JSON does', () => {
    assert.deepEqual(decodeProtobufBody(envelope('v1', 'Namespace', namespaceBytes('pb-ns')), NS), {
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: { name: 'pb-ns', labels: { app: 'web', tier: '' }, annotations: { note: 'hi' }, finalizers: ['kubevz.io/pb'] },
      spec: { finalizers: ['kubernetes'] },
      status: {},
    });
  });

  it('decodes a Secret: data bytes as base64, type, stringData, immutable', () => {
    const raw = [
      ...ld(1, [...str(1, 'pb-s'), ...str(3, 'default')]),
      ...entry(2, 'a', Buffer.from('b')),
      ...entry(2, 'bin', Buffer.from([0x00, 0xff, 0x10])),
      ...str(3, 'Opaque'),
      ...entry(4, 'plain', 'text'),
      ...vint(5, 1),
    ];
    assert.deepEqual(decodeProtobufBody(envelope('v1', 'Secret', raw), SECRET), {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'pb-s', namespace: 'default' },
      data: { a: 'Yg==', bin: 'AP8Q' },
      type: 'Opaque',
      stringData: { plain: 'text' },
      immutable: true,
    });
  });

  it('decodes a ConfigMap: data and binaryData', () => {
    const raw = [...ld(1, str(1, 'pb-cm')), ...entry(2, 'k', 'v'), ...entry(3, 'b', Buffer.from([1, 2, 3]))];
    assert.deepEqual(decodeProtobufBody(envelope('v1', 'ConfigMap', raw), { apiVersion: 'v1', kind: 'ConfigMap' }), {
      apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'pb-cm' }, data: { k: 'v' }, binaryData: { b: 'AQID' },
    });
    // A key named __proto__ is data, as in JSON.parse, not the object's prototype.
    const odd = decodeProtobufBody(envelope('v1', 'ConfigMap', entry(2, '__proto__', 'x')), { apiVersion: 'v1', kind: 'ConfigMap' });
    assert.equal(JSON.stringify(odd.data), '{"__proto__":"x"}');
  });

  it('skips unknown fields of every wire type, in the envelope, the object and its metadata', () => {
    const unknown = [
      ...vint(99, 300), // varint
      ...key(98, 1), 1, 2, 3, 4, 5, 6, 7, 8, // fixed64
      ...key(97, 5), 1, 2, 3, 4, // fixed32
      ...ld(96, [0xff, 0xfe, 0x80]), // bytes that are not a message
      ...ld(8, vint(1, 1700000000)), // creationTimestamp: known to Kubernetes, not decoded here
    ];
    const decoded = decodeProtobufBody(envelope('v1', 'Namespace', namespaceBytes('pb-ns', unknown, unknown), unknown), NS);
    assert.deepEqual(decoded.metadata, { name: 'pb-ns', labels: { app: 'web', tier: '' }, annotations: { note: 'hi' }, finalizers: ['kubevz.io/pb'] });
    assert.deepEqual(decoded.spec, { finalizers: ['kubernetes'] });
  });

  it('uses the endpoint kind when the envelope has no typeMeta', () => {
    const body = Buffer.from([0x6b, 0x38, 0x73, 0x00, ...ld(2, [...ld(1, str(1, 'pb-s')), ...str(3, 'Opaque')])]);
    assert.deepEqual(decodeProtobufBody(body, SECRET), { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'pb-s' }, type: 'Opaque' });
  });

  it('answers 400 for truncated or malformed bytes, naming the problem and the JSON alternative', () => {
    const whole = envelope('v1', 'Namespace', namespaceBytes('pb-ns'));
    // Cut inside the envelope's raw field (its length says more than is left).
    expectApiError(() => decodeProtobufBody(whole.subarray(0, whole.length - 20), NS), 400, /protobuf length-delimited field is truncated.*application\/json/);
    // Cut inside a varint (a continuation bit with nothing after it).
    expectApiError(() => decodeProtobufBody(Buffer.from([0x6b, 0x38, 0x73, 0x00, 0x8a]), NS), 400, /protobuf varint is truncated/);
    expectApiError(() => decodeProtobufBody(Buffer.from([0x6b, 0x38, 0x73, 0x00, ...key(9, 1), 1, 2]), NS), 400, /fixed-width field is truncated/);
    expectApiError(() => decodeProtobufBody(Buffer.from([0x6b, 0x38, 0x73, 0x00, ...key(9, 3)]), NS), 400, /wire type 3/);
    expectApiError(() => decodeProtobufBody(Buffer.from('{"kind":"Namespace"}'), NS), 400, /starts with "k8s\\0"/);
    // Every prefix of a valid body decodes or fails as a 400, never anything else.
    for (let n = 0; n < whole.length; n++) {
      try {
        decodeProtobufBody(whole.subarray(0, n), NS);
      } catch (err) {
        assert.ok(err instanceof ApiError && err.code === 400, `prefix of ${n} bytes: ${String(err)}`);
      }
    }
  });

  it('answers 415 for kinds it does not decode and for encoded raw payloads', () => {
    expectApiError(() => decodeProtobufBody(envelope('v1', 'Event', ld(1, str(1, 'e'))), { apiVersion: 'v1', kind: 'Event' }), 415, /accepted media types include: application\/json, application\/yaml$/);
    const gz = Buffer.concat([envelope('v1', 'Secret', ld(1, str(1, 's'))), Buffer.from(str(3, 'gzip'))]);
    expectApiError(() => decodeProtobufBody(gz, SECRET), 415, /application\/vnd\.kubernetes\.protobuf/);
  });
});

describe('protobuf request bodies: server', () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer();
  });
  after(async () => {
    await s.dispose();
  });

  it('creates a Namespace and creates then updates a Secret from protobuf bodies, answering JSON', async () => {
    const ns = await call(s, '/api/v1/namespaces', { method: 'POST', body: envelope('v1', 'Namespace', namespaceBytes('pb-srv')), contentType: PROTOBUF_MEDIA_TYPE });
    assert.equal(ns.status, 201, ns.text);
    assert.match(String(ns.headers['content-type']), /^application\/json/);
    assert.deepEqual(ns.json().metadata.labels, { app: 'web', tier: '' });
    assert.equal((await call(s, '/api/v1/namespaces/pb-srv')).json().metadata.annotations.note, 'hi');

    const path = '/api/v1/namespaces/pb-srv/secrets';
    const sec = (rv: string, value: string) =>
      envelope('v1', 'Secret', [...ld(1, [...str(1, 'pb-sec'), ...str(3, 'pb-srv'), ...str(6, rv)]), ...entry(2, 'a', Buffer.from(value)), ...str(3, 'Opaque')]);
    const created = await call(s, path, { method: 'POST', body: sec('', 'one'), contentType: PROTOBUF_MEDIA_TYPE });
    assert.equal(created.status, 201, created.text);
    assert.deepEqual(created.json().data, { a: Buffer.from('one').toString('base64') });
    const rv = created.json().metadata.resourceVersion as string;
    const updated = await call(s, `${path}/pb-sec`, { method: 'PUT', body: sec(rv, 'two'), contentType: PROTOBUF_MEDIA_TYPE });
    assert.equal(updated.status, 200, updated.text);
    assert.deepEqual((await call(s, `${path}/pb-sec`)).json().data, { a: Buffer.from('two').toString('base64') });
    // The resourceVersion carried in protobuf is checked like a JSON one.
    const stale = await call(s, `${path}/pb-sec`, { method: 'PUT', body: sec(rv, 'three'), contentType: PROTOBUF_MEDIA_TYPE });
    assert.equal(stale.status, 409, stale.text);
  });

  it('answers 400 for a truncated protobuf body and 415 for CBOR and for protobuf of other kinds', async () => {
    const whole = envelope('v1', 'Namespace', namespaceBytes('pb-cut'));
    const cut = await call(s, '/api/v1/namespaces', { method: 'POST', body: whole.subarray(0, whole.length - 20), contentType: PROTOBUF_MEDIA_TYPE });
    assert.equal(cut.status, 400, cut.text);
    assert.equal(cut.json().kind, 'Status');
    assert.equal((await call(s, '/api/v1/namespaces/pb-cut')).status, 404);

    const cbor = await call(s, '/api/v1/namespaces', { method: 'POST', body: Buffer.from([0xa1, 0x61, 0x61, 0x01]), contentType: 'application/cbor' });
    assert.equal(cbor.status, 415, cbor.text);
    assert.equal(cbor.json().reason, 'UnsupportedMediaType');
    assert.match(cbor.json().message, /application\/json, application\/yaml, application\/vnd\.kubernetes\.protobuf/);

    const ev = await call(s, '/api/v1/namespaces/default/events', { method: 'POST', body: envelope('v1', 'Event', ld(1, str(1, 'e'))), contentType: PROTOBUF_MEDIA_TYPE });
    assert.equal(ev.status, 415, ev.text);
    assert.doesNotMatch(ev.json().message, /protobuf/);

    const crd = await call(s, '/apis/kubevz.io/v1alpha1/namespaces/default/virtualenvironments', { method: 'POST', body: envelope('kubevz.io/v1alpha1', 'VirtualEnvironment', []), contentType: PROTOBUF_MEDIA_TYPE });
    assert.equal(crd.status, 415, crd.text);
  });

  it('still reads JSON and YAML bodies as before', async () => {
    const j = await call(s, '/api/v1/namespaces', { method: 'POST', body: { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'pb-json' } } });
    assert.equal(j.status, 201, j.text);
    const y = await call(s, '/api/v1/namespaces', { method: 'POST', body: 'apiVersion: v1\nkind: Namespace\nmetadata:\n  name: pb-yaml\n', contentType: 'application/yaml' });
    assert.equal(y.status, 201, y.text);
  });
});
