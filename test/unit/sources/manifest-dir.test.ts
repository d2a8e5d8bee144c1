import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, renameSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import type { VirtualEnvironment } from '../../../src/api/types.js';
import { SOURCE_DOC_ANNOTATION, SOURCE_FILE_ANNOTATION } from '../../../src/sources/apply.js';
import { watchManifestDir, type ManifestDirWatcher } from '../../../src/sources/manifest-dir.js';
import { VE_REF, eventually, fakeTarget, recordingLogger, veYaml } from './support.js';

describe('watchManifestDir', () => {
  let dir: string;
  let watchers: ManifestDirWatcher[];

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'kvz-manifests-'));
    watchers = [];
  });
  afterEach(async () => {
    for (const w of watchers) await w.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const start = async (env: ReturnType<typeof fakeTarget>, log = recordingLogger()) => {
    const w = await watchManifestDir({ dir, target: env.target, log, stabilityMs: 50, retry: { baseMs: 50, maxMs: 200 } });
    watchers.push(w);
    return w;
  };

  it('applies existing files at start, with ownership annotations', async () => {
    const env = fakeTarget();
    writeFileSync(join(dir, 'a.yaml'), `${veYaml('web1', '  template: busybox\n')}---\n${veYaml('web2', '  template: busybox\n')}`);
    writeFileSync(join(dir, 'notes.txt'), 'not a manifest');
    mkdirSync(join(dir, 'sub'));
    writeFileSync(join(dir, 'sub', 'b.yml'), veYaml('web3', '  template: busybox\n'));
    const w = await start(env);
    const client = env.api.client<VirtualEnvironment>(VE_REF);
    const names = (await client.list()).map((v) => v.metadata.name).sort();
    assert.deepEqual(names, ['web1', 'web2', 'web3']);
    const web2 = (await client.get('web2', 'default'))!;
    assert.equal(web2.metadata.annotations?.[SOURCE_FILE_ANNOTATION], join(dir, 'a.yaml'));
    assert.equal(web2.metadata.annotations?.[SOURCE_DOC_ANNOTATION], '1');
    const st = w.status();
    assert.equal(st.ready, true);
    assert.deepEqual(st.files.map((f) => [f.file, f.state, f.objects.length]), [[join(dir, 'a.yaml'), 'applied', 2], [join(dir, 'sub', 'b.yml'), 'applied', 1]]);
  });

  it('follows creates, edits (dropping a field and an object) and removals', async () => {
    const env = fakeTarget();
    const client = env.api.client<VirtualEnvironment>(VE_REF);
    await start(env);
    const file = join(dir, 'ves.yaml');
    writeFileSync(file, `${veYaml('web1', '  template: busybox\n  hostname: first\n')}---\n${veYaml('web2', '  template: busybox\n')}`);
    await eventually('web1 and web2 created', async () => (await client.list()).length === 2);

    writeFileSync(file, veYaml('web1', '  template: debian\n'));
    await eventually('web1 updated, web2 deleted', async () => {
      const web1 = await client.get('web1', 'default');
      return web1?.spec.template === 'debian' && !(await client.get('web2', 'default'));
    });
    assert.equal((await client.get('web1', 'default'))?.spec.hostname, undefined, 'the dropped field is removed');

    unlinkSync(file);
    await eventually('web1 deleted', async () => (await client.list()).length === 0);
  });

  it('an invalid file is reported with file, document and field, and changes nothing', async () => {
    const env = fakeTarget();
    const client = env.api.client<VirtualEnvironment>(VE_REF);
    const log = recordingLogger();
    const w = await start(env, log);
    const file = join(dir, 'ves.yaml');
    writeFileSync(file, `${veYaml('web1', '  template: busybox\n')}---\n${veYaml('web2', '  template: busybox\n')}`);
    await eventually('created', async () => (await client.list()).length === 2);
    const writes = env.api.writes.length;

    // Server-side rejection (422) of the second document: the edit of the first is not applied either.
    writeFileSync(file, `${veYaml('web1', '  template: debian\n')}---\n${veYaml('web2', '  template: ""\n')}`);
    const st = await eventually('invalid status', () => w.status().files.find((f) => f.state === 'invalid'));
    assert.deepEqual(st.problems.map((p) => [p.file, p.index, p.field]), [[file, 1, 'spec.template']]);
    const line = log.lines.find((l) => l.level === 'error');
    assert.ok(line, 'an error line is logged');
    assert.equal(line.fields.file, file);
    assert.equal(line.fields.doc, 1);
    assert.equal(line.fields.field, 'spec.template');
    assert.match(line.msg, /document 1 .*spec\.template/);
    assert.equal((await client.get('web1', 'default'))?.spec.template, 'busybox');
    assert.ok(await client.get('web2', 'default'));
    // The undo of web1's patch is the only change the fake may have seen; the object is as before.
    assert.equal(env.api.writes.slice(writes).filter((w) => w.startsWith('create') || w.startsWith('delete')).length, 0);

    // A YAML syntax error: nothing is written at all, objects stay.
    const before = env.api.writes.length;
    writeFileSync(file, 'apiVersion: kubevz.io/v1alpha1\nkind: [oops\n');
    await eventually('syntax error reported', () => w.status().files.find((f) => f.state === 'invalid' && f.problems.some((p) => /invalid YAML/.test(p.message))));
    assert.equal(env.api.writes.length, before);
    assert.equal((await client.list()).length, 2);

    // Fixed: applied again.
    writeFileSync(file, veYaml('web1', '  template: debian\n'));
    await eventually('fixed', async () => (await client.get('web1', 'default'))?.spec.template === 'debian' && !(await client.get('web2', 'default')));
    assert.equal(w.status().files[0]?.state, 'applied');
  });

  it('after a restart, objects of files removed meanwhile are deleted and others kept', async () => {
    const env = fakeTarget();
    const client = env.api.client<VirtualEnvironment>(VE_REF);
    writeFileSync(join(dir, 'keep.yaml'), veYaml('keep', '  template: busybox\n'));
    writeFileSync(join(dir, 'gone.yaml'), veYaml('gone', '  template: busybox\n'));
    const first = await start(env);
    await first.close();
    watchers = [];
    unlinkSync(join(dir, 'gone.yaml'));
    // An object applied by hand (kvz apply / kubectl) has no source annotation and is never touched.
    await client.create({ apiVersion: 'kubevz.io/v1alpha1', kind: 'VirtualEnvironment', metadata: { name: 'manual', namespace: 'default' }, spec: { template: 'busybox' } });
    await start(env);
    assert.deepEqual((await client.list()).map((v) => v.metadata.name).sort(), ['keep', 'manual']);
  });

  it('an object moved to another file is kept (not deleted and recreated)', async () => {
    const env = fakeTarget();
    const client = env.api.client<VirtualEnvironment>(VE_REF);
    writeFileSync(join(dir, 'a.yaml'), veYaml('web1', '  template: busybox\n'));
    await start(env);
    const uid = (await client.get('web1', 'default'))?.metadata.uid;
    renameSync(join(dir, 'a.yaml'), join(dir, 'b.yaml'));
    await eventually('owned by b.yaml', async () => (await client.get('web1', 'default'))?.metadata.annotations?.[SOURCE_FILE_ANNOTATION] === join(dir, 'b.yaml'));
    await new Promise((r) => setTimeout(r, 400));
    assert.equal((await client.get('web1', 'default'))?.metadata.uid, uid);
  });

  it('many files dropped at once are applied in one pass', async () => {
    const env = fakeTarget();
    const client = env.api.client<VirtualEnvironment>(VE_REF);
    const log = recordingLogger();
    const w = await watchManifestDir({ dir, target: env.target, log, stabilityMs: 50, batchMs: 400 });
    watchers.push(w);
    assert.equal(w.status().passes, 0);
    for (let i = 0; i < 20; i++) writeFileSync(join(dir, `ve${i}.yaml`), veYaml(`many${i}`, '  template: busybox\n'));
    await eventually('20 VEs', async () => (await client.list()).length === 20);
    await w.settled();
    assert.equal(w.status().passes, 1, 'one pass');
    const lines = log.lines.filter((l) => l.msg === 'applied manifest files');
    assert.equal(lines.length, 1);
    assert.equal((lines[0]!.fields.created as string[]).length, 20);
    assert.equal(w.status().fieldManager, `kubevz-dir:${dir}`);
    const managers = ((await client.get('many0', 'default'))!.metadata.managedFields as { manager: string }[]).map((m) => m.manager);
    assert.deepEqual(managers, [`kubevz-dir:${dir}`]);
  });

  it('with an inventory dir, ownership survives a restart through the inventory file', async () => {
    const env = fakeTarget();
    const client = env.api.client<VirtualEnvironment>(VE_REF);
    const inventoryDir = mkdtempSync(join(tmpdir(), 'kvz-inv-'));
    try {
      writeFileSync(join(dir, 'a.yaml'), `${veYaml('i1', '  template: busybox\n')}---\n${veYaml('i2', '  template: busybox\n')}`);
      const first = await watchManifestDir({ dir, target: env.target, log: recordingLogger(), stabilityMs: 50, inventoryDir });
      await first.close();
      writeFileSync(join(dir, 'a.yaml'), veYaml('i1', '  template: busybox\n'));
      // Scanning no kinds: only the inventory file can say that i2 was a.yaml's.
      const blind = { ...env.target, kinds: async () => [] };
      const w = await watchManifestDir({ dir, target: blind, log: recordingLogger(), stabilityMs: 50, inventoryDir });
      watchers.push(w);
      assert.deepEqual((await client.list()).map((v) => v.metadata.name), ['i1']);
    } finally {
      rmSync(inventoryDir, { recursive: true, force: true });
    }
  });

  it('two files declaring the same object: the second is reported, the first keeps it', async () => {
    const env = fakeTarget();
    writeFileSync(join(dir, 'a.yaml'), veYaml('web1', '  template: busybox\n'));
    const w = await start(env);
    writeFileSync(join(dir, 'b.yaml'), veYaml('web1', '  template: debian\n'));
    const st = await eventually('conflict reported', () => w.status().files.find((f) => f.file.endsWith('b.yaml') && f.state === 'invalid'));
    assert.match(st.problems[0]?.message ?? '', /already declared in .*a\.yaml/);
    assert.equal((await env.api.client<VirtualEnvironment>(VE_REF).get('web1', 'default'))?.spec.template, 'busybox');
  });
});
