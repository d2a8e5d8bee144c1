// The engine shared by the sources: local schema check and server dry-run before any write,
// prune of exactly what a file applied (never objects others created or took over), and the
// inventory file that survives restarts.

import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { VirtualEnvironment } from '../../../src/api/types.js';
import { SOURCE_ANNOTATION } from '../../../src/sources/apply.js';
import { registryApplyTarget, refsFromCrds } from '../../../src/sources/kinds.js';
import { parseManifests } from '../../../src/sources/manifests.js';
import { SourceSync, type FileChange } from '../../../src/sources/source-sync.js';
import { VE_REF, fakeTarget, recordingLogger, veYaml } from './support.js';

const tmp = mkdtempSync(join(tmpdir(), 'kvz-sync-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
let n = 0;

const file = (name: string, text: string): FileChange => ({ file: name, parsed: parseManifests(text, name) });
const removed = (name: string): FileChange => ({ file: name, removed: true });

function engine(env: ReturnType<typeof fakeTarget>, inventoryFile = join(tmp, `inv-${n++}.json`)) {
  return new SourceSync({ target: env.target, log: recordingLogger(), sourceId: 'test:one', fieldManager: 'kubevz-test', inventoryFile });
}

describe('SourceSync', () => {
  it('a multi-document file with one bad document changes nothing (schema checked locally, with its field)', async () => {
    const env = fakeTarget();
    const s = engine(env);
    await s.load();
    const text = `${veYaml('a', '  template: busybox\n')}---\n${veYaml('b', '  template: busybox\n  powerState: Sideways\n')}`;
    const r = await s.sync([file('f.yaml', text)], { atomic: false });
    assert.deepEqual(r.applied, []);
    const problems = r.rejected.get('f.yaml') ?? [];
    assert.deepEqual(problems.map((p) => [p.index, p.field, p.line]), [[1, 'spec.powerState', 14]]);
    assert.deepEqual(env.api.writes, [], 'nothing written, not even the valid document');
  });

  it('a document the server rejects in the dry-run changes nothing either', async () => {
    const env = fakeTarget({ validate: (_r, o) => ((o as VirtualEnvironment).spec.hostname === 'bad' ? [{ field: 'spec.hostname', message: 'Invalid value: "bad"' }] : undefined) });
    const s = engine(env);
    await s.load();
    const text = `${veYaml('a', '  template: busybox\n')}---\n${veYaml('b', '  template: busybox\n  hostname: bad\n')}`;
    const r = await s.sync([file('f.yaml', text)], { atomic: false });
    assert.deepEqual(r.rejected.get('f.yaml')?.map((p) => [p.index, p.field]), [[1, 'spec.hostname']]);
    assert.deepEqual(env.api.writes, []);
  });

  it('atomic: a bad file rejects every file of the pass; non-atomic: only itself', async () => {
    const env = fakeTarget();
    const s = engine(env);
    await s.load();
    const good = file('good.yaml', veYaml('g', '  template: busybox\n'));
    const bad = file('bad.yaml', veYaml('b', '  powerState: Running\n'));
    const r1 = await s.sync([good, bad], { atomic: true, revision: 'c1' });
    assert.deepEqual([...r1.rejected.keys()], ['bad.yaml']);
    assert.deepEqual(env.api.writes, []);
    assert.equal(s.revision, undefined, 'a rejected revision is not recorded');
    const r2 = await s.sync([good, bad], { atomic: false });
    assert.deepEqual(r2.applied.map((a) => a.name), ['g']);
  });

  it('prunes exactly what a dropped document or removed file applied, never objects others created', async () => {
    const env = fakeTarget();
    const client = env.api.client<VirtualEnvironment>(VE_REF);
    const s = engine(env);
    await s.load();
    await s.sync([file('a.yaml', `${veYaml('a1', '  template: busybox\n')}---\n${veYaml('a2', '  template: busybox\n')}`), file('b.yaml', veYaml('b1', '  template: busybox\n'))], { atomic: false });
    await client.create({ apiVersion: 'kubevz.io/v1alpha1', kind: 'VirtualEnvironment', metadata: { name: 'by-kubectl', namespace: 'default' }, spec: { template: 'busybox' } });
    const r1 = await s.sync([file('a.yaml', veYaml('a1', '  template: busybox\n'))], { atomic: false });
    assert.deepEqual(r1.pruned.map((o) => o.name), ['a2']);
    const r2 = await s.sync([removed('b.yaml')], { atomic: false });
    assert.deepEqual(r2.pruned.map((o) => o.name), ['b1']);
    assert.deepEqual((await client.list()).map((v) => v.metadata.name).sort(), ['a1', 'by-kubectl']);
    assert.deepEqual(s.files(), ['a.yaml']);
  });

  it('does not prune an object that was deleted and recreated by someone else, or taken over by another source', async () => {
    const env = fakeTarget();
    const client = env.api.client<VirtualEnvironment>(VE_REF);
    const s = engine(env);
    await s.load();
    await s.sync([file('a.yaml', `${veYaml('x', '  template: busybox\n')}---\n${veYaml('y', '  template: busybox\n')}`)], { atomic: false });
    await client.delete('x', 'default');
    await client.create({ apiVersion: 'kubevz.io/v1alpha1', kind: 'VirtualEnvironment', metadata: { name: 'x', namespace: 'default', annotations: { [SOURCE_ANNOTATION]: 'test:one' } }, spec: { template: 'busybox' } });
    await client.mergePatch('y', 'default', { metadata: { annotations: { [SOURCE_ANNOTATION]: 'test:other' } } });
    const r = await s.sync([removed('a.yaml')], { atomic: false });
    assert.deepEqual(r.pruned, []);
    assert.deepEqual((await client.list()).map((v) => v.metadata.name).sort(), ['x', 'y']);
  });

  it('an object moved between files in one pass is kept (same uid)', async () => {
    const env = fakeTarget();
    const client = env.api.client<VirtualEnvironment>(VE_REF);
    const s = engine(env);
    await s.load();
    await s.sync([file('a.yaml', veYaml('m', '  template: busybox\n'))], { atomic: false });
    const uid = (await client.get('m', 'default'))?.metadata.uid;
    const r = await s.sync([removed('a.yaml'), file('b.yaml', veYaml('m', '  template: busybox\n'))], { atomic: false });
    assert.deepEqual(r.pruned, []);
    assert.equal((await client.get('m', 'default'))?.metadata.uid, uid);
    assert.deepEqual(s.files(), ['b.yaml']);
  });

  it('the inventory file survives a restart: a file removed meanwhile is pruned even for kinds nobody scans', async () => {
    const env = fakeTarget();
    const client = env.api.client<VirtualEnvironment>(VE_REF);
    const inv = join(tmp, 'restart.json');
    const s1 = engine(env, inv);
    await s1.load();
    await s1.sync([file('a.yaml', veYaml('kept', '  template: busybox\n')), file('b.yaml', veYaml('gone', '  template: busybox\n'))], { atomic: true, revision: 'c1' });
    assert.ok(existsSync(inv));
    const saved = JSON.parse(readFileSync(inv, 'utf8')) as { revision: string; files: Record<string, { name: string; uid: string }[]> };
    assert.equal(saved.revision, 'c1');
    assert.equal(saved.files['b.yaml']?.[0]?.uid, (await client.get('gone', 'default'))?.metadata.uid);

    // A target that scans no kinds: ownership can only come from the inventory file.
    const blind = { ...env.target, kinds: async () => [] };
    const s2 = new SourceSync({ target: blind, log: recordingLogger(), sourceId: 'test:one', fieldManager: 'kubevz-test', inventoryFile: inv });
    await s2.load();
    assert.equal(s2.revision, 'c1');
    const r = await s2.sync([removed('b.yaml')], { atomic: false });
    assert.deepEqual(r.pruned.map((o) => o.name), ['gone']);
    assert.deepEqual((await client.list()).map((v) => v.metadata.name), ['kept']);
  });

  it('without an inventory file, ownership is rebuilt from the objects\' annotations', async () => {
    const env = fakeTarget();
    const s1 = new SourceSync({ target: env.target, log: recordingLogger(), sourceId: 'test:one', fieldManager: 'kubevz-test' });
    await s1.load();
    await s1.sync([file('a.yaml', veYaml('a', '  template: busybox\n'))], { atomic: false });
    const s2 = new SourceSync({ target: registryApplyTarget(refsFromCrds(), (ref) => env.api.client(ref)), log: recordingLogger(), sourceId: 'test:one', fieldManager: 'kubevz-test' });
    await s2.load();
    assert.deepEqual(s2.owned('a.yaml'), ['VirtualEnvironment.kubevz.io/default/a']);
  });

  it('two files declaring one object: the second is rejected and the first keeps it', async () => {
    const env = fakeTarget();
    const s = engine(env);
    await s.load();
    await s.sync([file('a.yaml', veYaml('w', '  template: busybox\n'))], { atomic: false });
    const r = await s.sync([file('b.yaml', veYaml('w', '  template: debian\n'))], { atomic: false });
    assert.match(r.rejected.get('b.yaml')?.[0]?.message ?? '', /already declared in a\.yaml/);
    assert.equal((await env.api.client<VirtualEnvironment>(VE_REF).get('w', 'default'))?.spec.template, 'busybox');
  });
});
