// Server-side apply as `kvz apply` uses it: upsert under a field manager, removal of dropped
// fields, conflicts with other writers (and --force-conflicts), per-document problems.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { VirtualEnvironment } from '../../../src/api/types.js';
import { KVZ_FIELD_MANAGER, applyObjects, fieldManagerName, statusCauses } from '../../../src/sources/apply.js';
import { parseManifests } from '../../../src/sources/manifests.js';
import { VE_REF, fakeTarget, veYaml } from './support.js';

const docs = (text: string) => {
  const parsed = parseManifests(text, '/m/x.yaml');
  assert.deepEqual(parsed.problems, []);
  return parsed.docs;
};
const kvz = { fieldManager: KVZ_FIELD_MANAGER };

describe('applyObjects (server-side apply)', () => {
  it('creates under the field manager, then reports unchanged without writing', async () => {
    const { api, target } = fakeTarget();
    const text = veYaml('web1', '  template: busybox\n  hostname: web\n');
    const r1 = await applyObjects(target, docs(text), kvz);
    assert.deepEqual(r1.applied.map((a) => [a.name, a.namespace, a.action]), [['web1', 'default', 'created']]);
    const live = (await api.client<VirtualEnvironment>(VE_REF).get('web1', 'default'))!;
    assert.deepEqual((live.metadata.managedFields as { manager: string; operation: string }[]).map((m) => [m.manager, m.operation]), [['kvz', 'Apply']]);
    assert.equal(live.metadata.annotations?.['kubectl.kubernetes.io/last-applied-configuration'], undefined, 'no client-side apply annotation');
    const writes = api.writes.length;
    const r2 = await applyObjects(target, docs(text), kvz);
    assert.equal(r2.applied[0]?.action, 'unchanged');
    assert.equal(api.writes.length, writes, 'no write for an unchanged object');
  });

  it('removes a field dropped from the manifest but keeps fields set by others', async () => {
    const { api, target } = fakeTarget();
    const client = api.client<VirtualEnvironment>(VE_REF);
    await applyObjects(target, docs(veYaml('web1', '  template: busybox\n  hostname: web\n')), kvz);
    await client.mergePatch('web1', 'default', { spec: { nodeName: 'node-a' } });
    await client.patchStatus('web1', 'default', { phase: 'Running' });
    const r = await applyObjects(target, docs(veYaml('web1', '  template: debian\n')), kvz);
    assert.equal(r.applied[0]?.action, 'configured');
    const live = (await client.get('web1', 'default'))!;
    assert.equal(live.spec.template, 'debian');
    assert.equal(live.spec.hostname, undefined);
    assert.equal(live.spec.nodeName, 'node-a', 'a field another writer owns stays');
    assert.equal(live.status?.phase, 'Running');
  });

  it('a field another writer changed is a conflict naming the field; --force-conflicts takes it over', async () => {
    const { api, target } = fakeTarget();
    const client = api.client<VirtualEnvironment>(VE_REF);
    const text = veYaml('web1', '  template: busybox\n  hostname: mine\n');
    await applyObjects(target, docs(text), kvz);
    await client.mergePatch('web1', 'default', { spec: { hostname: 'theirs' } });
    const r = await applyObjects(target, docs(text), kvz);
    assert.deepEqual(r.applied, []);
    assert.deepEqual(r.problems.map((p) => [p.index, p.field, p.line]), [[0, 'spec.hostname', 7]]);
    assert.match(r.problems[0]!.message, /conflict with "fake-client".*--force-conflicts/);
    assert.equal((await client.get('web1', 'default'))?.spec.hostname, 'theirs');
    const forced = await applyObjects(target, docs(text), { ...kvz, force: true });
    assert.equal(forced.applied[0]?.action, 'configured');
    assert.equal((await client.get('web1', 'default'))?.spec.hostname, 'mine');
  });

  it('reports a 422 with each field, naming the file and document; other documents are applied', async () => {
    const { target } = fakeTarget();
    const r = await applyObjects(target, docs(`${veYaml('ok', '  template: busybox\n')}---\n${veYaml('bad', '  template: ""\n')}`), kvz);
    assert.deepEqual(r.applied.map((a) => a.name), ['ok']);
    assert.deepEqual(r.problems.map((p) => [p.file, p.index, p.field, p.line]), [['/m/x.yaml', 1, 'spec.template', 13]]);
  });

  it('an unknown kind is a problem on the kind field, and nothing is sent for it', async () => {
    const { api, target } = fakeTarget();
    const text = `apiVersion: kubevz.io/v1alpha1\nkind: Nope\nmetadata: {name: x}\n`;
    const r = await applyObjects(target, docs(text), kvz);
    assert.equal(r.problems[0]?.field, 'kind');
    assert.match(r.problems[0]?.message ?? '', /no kind "Nope"/);
    assert.deepEqual(api.writes, []);
  });

  it('field manager names stay within 128 characters and stable', () => {
    assert.equal(fieldManagerName('kubevz-dir', '/srv/m'), 'kubevz-dir:/srv/m');
    const long = `/srv/${'x'.repeat(300)}/manifests`;
    const a = fieldManagerName('kubevz-dir', long);
    assert.equal(a.length, 128);
    assert.equal(a, fieldManagerName('kubevz-dir', long));
    assert.notEqual(a, fieldManagerName('kubevz-dir', `${long}2`));
    assert.ok(a.endsWith('/manifests'));
  });

  it('statusCauses reads the causes client-node keeps in the Status body', () => {
    const err = { code: 'Invalid', cause: { body: JSON.stringify({ details: { causes: [{ field: 'spec.template', message: 'Required value' }] } }) } };
    assert.deepEqual(statusCauses(err), [{ field: 'spec.template', message: 'Required value', reason: undefined }]);
  });
});
