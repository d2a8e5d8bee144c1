// /openapi/v2 as older kubectl reads it: the gnostic protobuf decoded field by field, and the
// lookup kubectl 1.20 does before `apply --dry-run=server` and `diff` (find the PATCH operation
// whose x-kubernetes-group-version-kind names the kind, then a `dryRun` query parameter on it).

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadCrds } from '../../../src/api/index.js';
import { openApiV2Document, openApiV2Protobuf } from '../../../src/apiserver/openapi.js';
import { ResourceTable } from '../../../src/apiserver/resources.js';

type Fields = Map<number, (Buffer | bigint)[]>;

/** One protobuf message: field number → values (length-delimited ones as Buffers). */
function decode(b: Buffer): Fields {
  const out: Fields = new Map();
  let i = 0;
  const varint = (): bigint => {
    let r = 0n;
    let shift = 0n;
    for (;;) {
      const c = b[i++];
      if (c === undefined) throw new Error('truncated varint');
      r |= BigInt(c & 0x7f) << shift;
      shift += 7n;
      if (c < 0x80) return r;
    }
  };
  while (i < b.length) {
    const key = Number(varint());
    const field = key >> 3;
    const wire = key & 7;
    let v: Buffer | bigint;
    if (wire === 0) v = varint();
    else if (wire === 2) {
      const n = Number(varint());
      if (i + n > b.length) throw new Error(`field ${field}: length ${n} past the end`);
      v = b.subarray(i, i + n);
      i += n;
    } else if (wire === 1) {
      v = b.subarray(i, i + 8);
      i += 8;
    } else throw new Error(`field ${field}: unexpected wire type ${wire}`);
    const list = out.get(field) ?? [];
    list.push(v);
    out.set(field, list);
  }
  return out;
}

const msgs = (f: Fields, n: number): Fields[] => (f.get(n) ?? []).map((v) => decode(v as Buffer));
const msg = (f: Fields, n: number): Fields | undefined => msgs(f, n)[0];
const str = (f: Fields | undefined, n: number): string => (f?.get(n)?.[0] as Buffer | undefined)?.toString('utf8') ?? '';

interface Gvk {
  group: string;
  version: string;
  kind: string;
}

/** Vendor extension `name` (NamedAny list in field n) parsed from its YAML (JSON) text. */
function extension(f: Fields, n: number, name: string): unknown {
  const e = msgs(f, n).find((x) => str(x, 1) === name);
  return e ? JSON.parse(str(msg(e, 2), 2)) : undefined;
}

/** Names of an operation's query parameters (ParametersItem → Parameter → NonBodyParameter → query). */
function queryParams(op: Fields): string[] {
  return msgs(op, 8).flatMap((item) => {
    const q = msg(msg(msg(item, 1) ?? new Map(), 2) ?? new Map(), 3);
    return q ? [str(q, 4)] : [];
  });
}

/** kubectl 1.20's check: the first path whose PATCH names the GVK decides. */
function supportsDryRun(doc: Fields, gvk: Gvk): boolean | 'not found' {
  for (const p of msgs(msg(doc, 8) ?? new Map(), 2)) {
    const patch = msg(msg(p, 2) ?? new Map(), 8);
    if (!patch) continue;
    const g = extension(patch, 13, 'x-kubernetes-group-version-kind') as Gvk | undefined;
    if (!g || g.group !== gvk.group || g.version !== gvk.version || g.kind !== gvk.kind) continue;
    return queryParams(patch).includes('dryRun');
  }
  return 'not found';
}

function table(): ResourceTable {
  const t = new ResourceTable();
  for (const crd of loadCrds()) t.addCrd(crd);
  return t;
}

describe('/openapi/v2 for older kubectl', () => {
  const resources = table();
  const doc = decode(openApiV2Protobuf(resources));

  it('has the paths of every served kind, with the write parameters on PATCH', () => {
    const paths = msgs(msg(doc, 8) ?? new Map(), 2);
    const names = paths.map((p) => str(p, 1));
    assert.deepEqual(names, Object.keys(openApiV2Document(resources).paths as object));
    for (const p of [
      '/apis/kubevz.io/v1alpha1/namespaces/{namespace}/virtualenvironments/{name}',
      '/apis/kubevz.io/v1alpha1/namespaces/{namespace}/virtualenvironments/{name}/status',
      '/apis/kubevz.io/v1alpha1/venodes/{name}',
      '/api/v1/namespaces/{name}',
      '/api/v1/namespaces/{namespace}/events/{name}',
      '/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}',
      '/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}',
    ]) {
      assert.ok(names.includes(p), `${p} missing from ${names.join(' ')}`);
    }
    const ve = paths.find((p) => str(p, 1) === '/apis/kubevz.io/v1alpha1/namespaces/{namespace}/virtualenvironments/{name}');
    const patch = msg(msg(ve ?? new Map(), 2) ?? new Map(), 8);
    assert.ok(patch, 'VE item path has a PATCH operation');
    assert.deepEqual(queryParams(patch).sort(), ['dryRun', 'fieldManager', 'fieldValidation', 'force']);
    assert.equal(extension(patch, 13, 'x-kubernetes-action'), 'patch');
    assert.deepEqual((patch.get(7) ?? []).map((b) => b.toString()), ['application/json-patch+json', 'application/merge-patch+json', 'application/apply-patch+yaml']);
    // The response refers to the published definition.
    const ok = msg(msg(msg(msg(patch, 9) ?? new Map(), 1) ?? new Map(), 2) ?? new Map(), 1);
    assert.equal(str(msg(msg(ok ?? new Map(), 2) ?? new Map(), 1), 1), '#/definitions/io.kubevz.v1alpha1.VirtualEnvironment');
  });

  it('lets kubectl 1.20 find server-side dry-run for custom and built-in kinds', () => {
    assert.equal(supportsDryRun(doc, { group: 'kubevz.io', version: 'v1alpha1', kind: 'VirtualEnvironment' }), true);
    assert.equal(supportsDryRun(doc, { group: 'kubevz.io', version: 'v1alpha1', kind: 'VETemplate' }), true);
    assert.equal(supportsDryRun(doc, { group: '', version: 'v1', kind: 'Namespace' }), true);
    assert.equal(supportsDryRun(doc, { group: 'coordination.k8s.io', version: 'v1', kind: 'Lease' }), true);
    assert.equal(supportsDryRun(doc, { group: 'apps', version: 'v1', kind: 'Deployment' }), 'not found');
  });

  it('keeps the definitions kubectl validates and explains with', () => {
    const defs = msgs(msg(doc, 9) ?? new Map(), 1);
    const ve = defs.find((d) => str(d, 1) === 'io.kubevz.v1alpha1.VirtualEnvironment');
    assert.ok(ve, 'VirtualEnvironment definition');
    assert.deepEqual(extension(msg(ve, 2) ?? new Map(), 31, 'x-kubernetes-group-version-kind'), [{ group: 'kubevz.io', kind: 'VirtualEnvironment', version: 'v1alpha1' }]);
    assert.equal(str(doc, 1), '2.0');
  });
});
