// The HTTPS server end to end (without kubectl): auth, discovery, openapi, REST verbs, Status
// errors, tables, events/leases/namespaces, dynamic CRDs, and state reuse across restarts.

import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { request } from 'node:https';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { aVE, call, readyStatus, startTestServer, type TestServer, VE_PATH } from './helpers.js';

const TABLE = 'application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json';
const MERGE = 'application/merge-patch+json';

describe('api server', () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer();
  });
  after(async () => {
    await s.dispose();
  });

  it('writes a 0600 kubeconfig with CA, URL, token and namespace default', () => {
    assert.match(s.url, /^https:\/\/127\.0\.0\.1:\d+$/);
    assert.equal(statSync(s.kubeconfigPath).mode & 0o777, 0o600);
    for (const f of ['pki/ca.key', 'pki/server.key', 'apiserver/token', 'apiserver/db.sqlite']) assert.equal(statSync(join(s.stateDir, f)).mode & 0o777, 0o600, f);
    const kc = parseYaml(readFileSync(s.kubeconfigPath, 'utf8'));
    assert.equal(kc.clusters[0].cluster.server, s.url);
    assert.equal(Buffer.from(kc.clusters[0].cluster['certificate-authority-data'], 'base64').toString(), s.caCertPem);
    assert.equal(kc.users[0].user.token, s.token);
    assert.equal(kc.contexts[0].context.namespace, 'default');
  });

  it('401 Unauthorized without a credential or with a wrong token', async () => {
    for (const token of [null, 'wrong']) {
      const r = await call(s, '/version', { token });
      assert.equal(r.status, 401);
      assert.deepEqual(r.json(), { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: 'Unauthorized', reason: 'Unauthorized', code: 401 });
    }
  });

  it('accepts a client certificate signed by the CA instead of the token', async () => {
    const pki = join(s.stateDir, 'pki');
    const status = await new Promise<number>((resolve, reject) => {
      const req = request(new URL('/version', s.url), { ca: s.caCertPem, cert: readFileSync(join(pki, 'client.crt')), key: readFileSync(join(pki, 'client.key')) }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      req.end();
    });
    assert.equal(status, 200);
  });

  it('serves /version, discovery and the minimal /openapi/v2', async () => {
    const v = (await call(s, '/version')).json();
    assert.equal(v.minor, '32');
    assert.match(v.gitVersion, /^v1\.32\./);
    assert.deepEqual((await call(s, '/api')).json().versions, ['v1']);
    const core = (await call(s, '/api/v1')).json();
    assert.deepEqual(core.resources.map((r: { name: string }) => r.name).sort(), ['events', 'namespaces', 'secrets']);
    const groups = (await call(s, '/apis')).json();
    assert.deepEqual(groups.groups.map((g: { name: string }) => g.name), ['apiextensions.k8s.io', 'coordination.k8s.io', 'kubevz.io']);
    const kvz = (await call(s, '/apis/kubevz.io/v1alpha1')).json();
    const ve = kvz.resources.find((r: { name: string }) => r.name === 'virtualenvironments');
    assert.deepEqual(ve.shortNames, ['ve']);
    assert.equal(ve.namespaced, true);
    assert.ok(ve.verbs.includes('watch'));
    assert.ok(kvz.resources.some((r: { name: string }) => r.name === 'virtualenvironments/status'));
    assert.equal((await call(s, '/apis/kubevz.io')).json().preferredVersion.version, 'v1alpha1');
    const oa = await call(s, '/openapi/v2');
    assert.equal(oa.status, 200);
    assert.equal(oa.headers['content-type'], 'application/octet-stream');
    // gnostic Document: field 1 swagger="2.0", and the VE definition with its GVK extension inside.
    assert.ok(oa.text.startsWith('\n\u00032.0'));
    assert.ok(oa.text.includes('io.kubevz.v1alpha1.VirtualEnvironment'));
    assert.ok(oa.text.includes('x-kubernetes-group-version-kind'));
    const v3 = (await call(s, '/openapi/v3')).json();
    const gv = v3.paths['apis/kubevz.io/v1alpha1'];
    assert.match(gv.serverRelativeURL, /^\/openapi\/v3\/apis\/kubevz\.io\/v1alpha1\?hash=[0-9A-F]+$/);
    const doc = (await call(s, gv.serverRelativeURL)).json();
    const schema = doc.components.schemas['io.kubevz.v1alpha1.VirtualEnvironment'];
    assert.deepEqual(schema['x-kubernetes-group-version-kind'], [{ group: 'kubevz.io', kind: 'VirtualEnvironment', version: 'v1alpha1' }]);
    assert.ok(schema.properties.spec.properties.resources);
    assert.ok(doc.paths['/apis/kubevz.io/v1alpha1/namespaces/{namespace}/virtualenvironments/{name}'].patch.parameters.some((p: { name: string }) => p.name === 'fieldValidation'));
    assert.equal((await call(s, '/openapi/v3/apis/nope.io/v1')).status, 404);
    const nf = await call(s, '/apis/nope.io/v1');
    assert.equal(nf.status, 404);
    assert.equal(nf.json().message, 'the server could not find the requested resource');
  });

  it('create / get / list / table / put / status / delete', async () => {
    const c = await call(s, VE_PATH, { method: 'POST', body: aVE('web1') });
    assert.equal(c.status, 201);
    const created = c.json();
    assert.equal(created.spec.powerState, 'Running');
    const g = (await call(s, `${VE_PATH}/web1`)).json();
    assert.equal(g.metadata.uid, created.metadata.uid);
    const nf = await call(s, `${VE_PATH}/nope`);
    assert.equal(nf.status, 404);
    assert.equal(nf.json().message, 'virtualenvironments.kubevz.io "nope" not found');
    assert.deepEqual(nf.json().details, { name: 'nope', group: 'kubevz.io', kind: 'virtualenvironments' });
    assert.equal((await call(s, VE_PATH, { method: 'POST', body: aVE('web1') })).json().reason, 'AlreadyExists');

    const list = (await call(s, '/apis/kubevz.io/v1alpha1/virtualenvironments')).json();
    assert.equal(list.kind, 'VirtualEnvironmentList');
    assert.equal(list.items[0].kind, 'VirtualEnvironment');
    assert.ok(Number(list.metadata.resourceVersion) >= Number(created.metadata.resourceVersion));

    await call(s, `${VE_PATH}/web1/status`, { method: 'PATCH', body: readyStatus(), contentType: MERGE });
    const table = (await call(s, `${VE_PATH}?limit=500`, { accept: TABLE })).json();
    assert.equal(table.kind, 'Table');
    assert.ok(table.metadata.resourceVersion);
    assert.deepEqual(table.columnDefinitions.map((c: { name: string }) => c.name), ['Name', 'Phase', 'Node', 'IP', 'Ready', 'Template', 'Age']);
    assert.deepEqual(table.rows[0].cells.slice(0, 6), ['web1', 'Running', null, null, 'True', 'busybox']);
    assert.equal(table.rows[0].object.metadata.namespace, 'default');
    const one = (await call(s, `${VE_PATH}/web1`, { accept: TABLE })).json();
    assert.equal(one.rows.length, 1);

    const cur = (await call(s, `${VE_PATH}/web1`)).json();
    const noRv = await call(s, `${VE_PATH}/web1`, { method: 'PUT', body: { ...cur, metadata: { ...cur.metadata, resourceVersion: undefined } } });
    assert.equal(noRv.status, 422);
    assert.equal(noRv.json().details.causes[0].field, 'metadata.resourceVersion');
    const put = await call(s, `${VE_PATH}/web1`, { method: 'PUT', body: { ...cur, spec: { ...cur.spec, hostname: 'h' } } });
    assert.equal(put.status, 200);
    assert.equal(put.json().metadata.generation, 2);
    const stale = await call(s, `${VE_PATH}/web1`, { method: 'PUT', body: cur });
    assert.equal(stale.status, 409);
    assert.match(stale.json().message, /^Operation cannot be fulfilled on virtualenvironments\.kubevz\.io "web1": the object has been modified/);

    const del = await call(s, `${VE_PATH}/web1`, { method: 'DELETE', body: { propagationPolicy: 'Background' } });
    assert.equal(del.status, 200);
    assert.equal(del.json().status, 'Success');
    assert.equal((await call(s, `${VE_PATH}/web1`)).status, 404);
  });

  it('422 lists every bad field; strict field validation rejects unknown fields; warnings otherwise', async () => {
    const bad = await call(s, VE_PATH, { method: 'POST', body: { ...aVE('bad'), spec: { powerState: 'Maybe', resources: { memory: { limit: {} } } } } });
    assert.equal(bad.status, 422);
    const st = bad.json();
    assert.equal(st.reason, 'Invalid');
    assert.deepEqual(st.details.causes.map((c: { field: string }) => c.field).sort(), ['spec.powerState', 'spec.resources.memory.limit', 'spec.template']);
    assert.match(st.message, /^virtualenvironments\.kubevz\.io "bad" is invalid: \[/);
    const strict = await call(s, `${VE_PATH}?fieldValidation=Strict`, { method: 'POST', body: { ...aVE('s1'), spec: { template: 't', nope: 1 } } });
    assert.equal(strict.status, 400);
    assert.match(strict.json().message, /unknown field "spec\.nope"/);
    const warn = await call(s, VE_PATH, { method: 'POST', body: { ...aVE('s1'), spec: { template: 't', nope: 1 } } });
    assert.equal(warn.status, 201);
    assert.match(String(warn.headers.warning), /unknown field/);
    assert.equal(warn.json().spec.nope, undefined);
  });

  it('patch content types: merge, json, apply (upsert), strategic → 415, bad body → 400', async () => {
    const apply = await call(s, `${VE_PATH}/ssa1?fieldManager=kubectl&force=false`, { method: 'PATCH', body: 'apiVersion: kubevz.io/v1alpha1\nkind: VirtualEnvironment\nmetadata: {name: ssa1}\nspec: {template: busybox}\n', contentType: 'application/apply-patch+yaml' });
    assert.equal(apply.status, 201);
    const again = await call(s, `${VE_PATH}/ssa1?fieldManager=kubectl`, { method: 'PATCH', body: aVE('ssa1', { hostname: 'x' }), contentType: 'application/apply-patch+yaml' });
    assert.equal(again.status, 200);
    assert.equal(again.json().spec.hostname, 'x');
    const smp = await call(s, `${VE_PATH}/ssa1`, { method: 'PATCH', body: {}, contentType: 'application/strategic-merge-patch+json' });
    assert.equal(smp.status, 415);
    assert.equal(smp.json().reason, 'UnsupportedMediaType');
    const jp = await call(s, `${VE_PATH}/ssa1`, { method: 'PATCH', body: [{ op: 'replace', path: '/spec/hostname', value: 'y' }], contentType: 'application/json-patch+json' });
    assert.equal(jp.json().spec.hostname, 'y');
    assert.equal((await call(s, `${VE_PATH}/ssa1`, { method: 'PATCH', body: '{nope', contentType: MERGE })).status, 400);
    assert.equal((await call(s, `${VE_PATH}/missing`, { method: 'PATCH', body: {}, contentType: MERGE })).status, 404);
  });

  it('finalizers keep a deleted object until they are removed', async () => {
    await call(s, VE_PATH, { method: 'POST', body: { ...aVE('fin'), metadata: { name: 'fin', finalizers: ['kubevz.io/host-cleanup'] } } });
    const del = await call(s, `${VE_PATH}/fin`, { method: 'DELETE' });
    assert.equal(del.status, 200);
    assert.ok(del.json().metadata.deletionTimestamp);
    assert.equal((await call(s, `${VE_PATH}/fin`)).status, 200);
    await call(s, `${VE_PATH}/fin`, { method: 'PATCH', body: [{ op: 'test', path: '/metadata/finalizers/0', value: 'kubevz.io/host-cleanup' }, { op: 'remove', path: '/metadata/finalizers/0' }], contentType: 'application/json-patch+json' });
    assert.equal((await call(s, `${VE_PATH}/fin`)).status, 404);
  });

  it('dependents are deleted in the background with their owner', async () => {
    const owner = (await call(s, VE_PATH, { method: 'POST', body: aVE('owner') })).json();
    const lease = { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name: 'dep', ownerReferences: [{ apiVersion: 'kubevz.io/v1alpha1', kind: 'VirtualEnvironment', name: 'owner', uid: owner.metadata.uid }] }, spec: {} };
    assert.equal((await call(s, '/apis/coordination.k8s.io/v1/namespaces/default/leases', { method: 'POST', body: lease })).status, 201);
    await call(s, `${VE_PATH}/owner`, { method: 'DELETE' });
    await new Promise((r) => setTimeout(r, 50));
    assert.equal((await call(s, '/apis/coordination.k8s.io/v1/namespaces/default/leases/dep')).status, 404);
  });

  it('core events with involvedObject field selectors; leases with unconditional PUT; namespaces', async () => {
    const ev = (name: string, obj: string) => ({
      apiVersion: 'v1', kind: 'Event', metadata: { name },
      involvedObject: { kind: 'VirtualEnvironment', name: obj, namespace: 'default', uid: `u-${obj}` },
      reason: 'Started', message: 'started', type: 'Normal', count: 1, firstTimestamp: new Date().toISOString(), lastTimestamp: new Date().toISOString(),
    });
    const EV = '/api/v1/namespaces/default/events';
    assert.equal((await call(s, EV, { method: 'POST', body: ev('a.1', 'a') })).status, 201);
    assert.equal((await call(s, EV, { method: 'POST', body: ev('b.1', 'b') })).status, 201);
    const sel = (await call(s, `${EV}?fieldSelector=${encodeURIComponent('involvedObject.name=a,involvedObject.namespace=default,involvedObject.kind=VirtualEnvironment,involvedObject.uid=u-a')}`)).json();
    assert.deepEqual(sel.items.map((e: { metadata: { name: string } }) => e.metadata.name), ['a.1']);
    const p = await call(s, `${EV}/a.1`, { method: 'PATCH', body: { count: 2 }, contentType: MERGE });
    assert.equal(p.json().count, 2);

    const L = '/apis/coordination.k8s.io/v1/namespaces/kube-system/leases';
    const lease = { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name: 'ctl' }, spec: { holderIdentity: 'me', leaseDurationSeconds: 15, renewTime: '2026-11-25T13:00:10.000000Z' } };
    assert.equal((await call(s, L, { method: 'POST', body: lease })).status, 201);
    const upd = await call(s, `${L}/ctl`, { method: 'PUT', body: { ...lease, spec: { ...lease.spec, holderIdentity: 'you' } } });
    assert.equal(upd.status, 200);
    assert.equal(upd.json().spec.renewTime, '2026-11-25T13:00:10.000000Z');

    const ns = (await call(s, '/api/v1/namespaces/default')).json();
    assert.equal(ns.status.phase, 'Active');
    assert.equal((await call(s, '/api/v1/namespaces', { method: 'POST', body: { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'team-a' } } })).status, 201);
  });

  it('a CRD posted through the API is stored and served at once', async () => {
    const crd = {
      apiVersion: 'apiextensions.k8s.io/v1', kind: 'CustomResourceDefinition', metadata: { name: 'widgets.example.com' },
      spec: {
        group: 'example.com', scope: 'Cluster', names: { plural: 'widgets', singular: 'widget', kind: 'Widget' },
        versions: [{ name: 'v1', served: true, storage: true, schema: { openAPIV3Schema: { type: 'object', properties: { spec: { type: 'object', required: ['size'], properties: { size: { type: 'integer' } } } } } } }],
      },
    };
    const r = await call(s, '/apis/apiextensions.k8s.io/v1/customresourcedefinitions', { method: 'POST', body: crd });
    assert.equal(r.status, 201);
    assert.equal(r.json().status.conditions.find((c: { type: string }) => c.type === 'Established').status, 'True');
    assert.ok((await call(s, '/apis')).json().groups.some((g: { name: string }) => g.name === 'example.com'));
    const W = '/apis/example.com/v1/widgets';
    assert.equal((await call(s, W, { method: 'POST', body: { apiVersion: 'example.com/v1', kind: 'Widget', metadata: { name: 'w' }, spec: { size: 2 } } })).status, 201);
    assert.equal((await call(s, W, { method: 'POST', body: { apiVersion: 'example.com/v1', kind: 'Widget', metadata: { name: 'v' }, spec: {} } })).status, 422);
    assert.equal((await call(s, '/apis/example.com/v1/namespaces/default/widgets')).status, 404);
    const crds = (await call(s, '/apis/apiextensions.k8s.io/v1/customresourcedefinitions')).json();
    const names = crds.items.map((c: { metadata: { name: string } }) => c.metadata.name);
    // Every CRD of crds/ (the list grows with the project) plus the posted one.
    assert.ok(names.includes('virtualenvironments.kubevz.io') && names.includes('widgets.example.com'), names.join(', '));
  });

  it('restart reuses PKI and token, keeps objects, and revisions keep growing', async () => {
    const before = (await call(s, VE_PATH)).json().metadata.resourceVersion;
    const { stateDir, token, caCertPem } = s;
    await s.close();
    const s2 = await startTestServer({ stateDir });
    try {
      assert.equal(s2.token, token);
      assert.equal(s2.caCertPem, caCertPem);
      const list = (await call(s2, VE_PATH)).json();
      assert.ok(list.items.some((o: { metadata: { name: string } }) => o.metadata.name === 'ssa1'));
      assert.ok((await call(s2, '/apis/example.com/v1/widgets/w')).status === 200, 'API-created CRDs are served after restart');
      const c = (await call(s2, VE_PATH, { method: 'POST', body: aVE('after') })).json();
      assert.ok(Number(c.metadata.resourceVersion) > Number(before));
    } finally {
      s = s2;
    }
  });
});
