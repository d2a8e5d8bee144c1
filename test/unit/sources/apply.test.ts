import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { VirtualEnvironment } from '../../../src/api/types.js';
import { LAST_APPLIED_ANNOTATION, applyObjects, statusCauses } from '../../../src/sources/apply.js';
import { parseManifests } from '../../../src/sources/manifests.js';
import { VE_REF, fakeTarget, veYaml } from './support.js';

const docs = (text: string) => {
  const parsed = parseManifests(text, '/m/x.yaml');
  assert.deepEqual(parsed.problems, []);
  return parsed.docs;
};

describe('applyObjects', () => {
  it('creates with the last-applied annotation, then reports unchanged', async () => {
    const { api, target } = fakeTarget();
    const text = veYaml('web1', '  template: busybox\n  hostname: web\n');
    const r1 = await applyObjects(target, docs(text));
    assert.deepEqual(r1.applied.map((a) => [a.name, a.namespace, a.action]), [['web1', 'default', 'created']]);
    const live = (await api.client<VirtualEnvironment>(VE_REF).get('web1', 'default'))!;
    assert.ok(live.metadata.annotations?.[LAST_APPLIED_ANNOTATION]);
    const writes = api.writes.length;
    const r2 = await applyObjects(target, docs(text));
    assert.equal(r2.applied[0]?.action, 'unchanged');
    assert.equal(api.writes.length, writes, 'no write for an unchanged object');
  });

  it('removes a field dropped from the manifest but keeps fields set by others', async () => {
    const { api, target } = fakeTarget();
    const client = api.client<VirtualEnvironment>(VE_REF);
    await applyObjects(target, docs(veYaml('web1', '  template: busybox\n  hostname: web\n')));
    await client.mergePatch('web1', 'default', { spec: { nodeName: 'node-a' } });
    await client.patchStatus('web1', 'default', { phase: 'Running' });
    const r = await applyObjects(target, docs(veYaml('web1', '  template: debian\n')));
    assert.equal(r.applied[0]?.action, 'configured');
    const live = (await client.get('web1', 'default'))!;
    assert.equal(live.spec.template, 'debian');
    assert.equal(live.spec.hostname, undefined);
    assert.equal(live.spec.nodeName, 'node-a', 'a field the manifest never had stays');
    assert.equal(live.status?.phase, 'Running');
  });

  it('reports a 422 with each field, naming the file and document', async () => {
    const { target } = fakeTarget();
    const r = await applyObjects(target, docs(`${veYaml('ok', '  template: busybox\n')}---\n${veYaml('bad', '  template: ""\n')}`));
    assert.deepEqual(r.applied.map((a) => a.name), ['ok']);
    assert.deepEqual(r.problems.map((p) => [p.file, p.index, p.field, p.line]), [['/m/x.yaml', 1, 'spec.template', 13]]);
  });

  it('all or nothing: a rejected document undoes the earlier ones', async () => {
    const { api, target } = fakeTarget();
    const client = api.client<VirtualEnvironment>(VE_REF);
    await applyObjects(target, docs(veYaml('keep', '  template: busybox\n  hostname: old\n')));
    const text = `${veYaml('keep', '  template: busybox\n  hostname: new\n')}---\n${veYaml('fresh', '  template: busybox\n')}---\n${veYaml('bad', '  template: ""\n')}`;
    const r = await applyObjects(target, docs(text), { allOrNothing: true });
    assert.deepEqual(r.applied, []);
    assert.equal(r.problems[0]?.index, 2);
    assert.equal((await client.get('keep', 'default'))?.spec.hostname, 'old');
    assert.equal(await client.get('fresh', 'default'), undefined);
  });

  it('an unknown kind is a problem on the kind field, before anything is written', async () => {
    const { api, target } = fakeTarget();
    const text = `${veYaml('a', '  template: busybox\n')}---\napiVersion: kubevz.io/v1alpha1\nkind: Nope\nmetadata: {name: x}\n`;
    const r = await applyObjects(target, docs(text), { allOrNothing: true });
    assert.equal(r.problems[0]?.field, 'kind');
    assert.match(r.problems[0]?.message ?? '', /no kind "Nope"/);
    assert.deepEqual(api.writes, []);
  });

  it('statusCauses reads the causes client-node keeps in the Status body', () => {
    const err = { code: 'Invalid', cause: { body: JSON.stringify({ details: { causes: [{ field: 'spec.template', message: 'Required value' }] } }) } };
    assert.deepEqual(statusCauses(err), [{ field: 'spec.template', message: 'Required value' }]);
  });
});
