// The Git source against a fake API and real local repositories (needs the git CLI, no
// network): a commit is applied as a unit, a bad commit changes nothing and is reported with
// the commit and file, a removed file is pruned, and the applied commit is reported.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import type { VirtualEnvironment } from '../../../src/api/types.js';
import { parseInterval, startGitSource, type GitSource } from '../../../src/sources/git-source.js';
import { makeRepo, type TestRepo } from '../../helpers/git-repo.js';
import { requirePrereqs } from '../../helpers/prereq.js';
import { VE_REF, fakeTarget, recordingLogger, veYaml } from './support.js';

describe('Git source', () => {
  let repo: TestRepo;
  let stateDir: string;
  let sources: GitSource[];

  beforeEach(() => {
    stateDir = mkdtempSync(join(tmpdir(), 'kvz-gitstate-'));
    sources = [];
  });
  afterEach(async () => {
    for (const s of sources) await s.close();
    repo?.remove();
    rmSync(stateDir, { recursive: true, force: true });
  });

  it('parses intervals', () => {
    assert.equal(parseInterval('30s'), 30_000);
    assert.equal(parseInterval('1m30s'), 90_000);
    assert.equal(parseInterval('250ms'), 250);
    assert.equal(parseInterval('2'), 2000);
    assert.throws(() => parseInterval('soon'), /--interval soon: expected a duration/);
  });

  it('applies commits, rejects a bad one without changing anything, prunes removed files', async (t) => {
    if (!requirePrereqs(t, { binaries: ['git'] })) return;
    repo = makeRepo();
    repo.commit({ 'README.md': 'not a manifest\n', 'other/x.yaml': veYaml('outside', '  template: busybox\n') }, 'init');
    const c1 = repo.commit({ 'deploy/web.yaml': veYaml('web', '  template: busybox\n  hostname: one\n'), 'deploy/db.yaml': veYaml('db', '  template: busybox\n') }, 'add web and db');
    const env = fakeTarget();
    const client = env.api.client<VirtualEnvironment>(VE_REF);
    const log = recordingLogger();
    const src = await startGitSource({ url: repo.url, branch: 'main', path: 'deploy', intervalMs: 60_000, stateDir, target: env.target, log });
    sources.push(src);
    assert.deepEqual((await client.list()).map((v) => v.metadata.name).sort(), ['db', 'web'], 'only files under --path');
    assert.equal(src.status().applied?.commit, c1);
    assert.ok(log.lines.some((l) => l.level === 'info' && l.fields.commit === c1 && l.msg.includes(c1.slice(0, 12))), 'the applied commit is logged');
    const web = (await client.get('web', 'default'))!;
    assert.equal(web.metadata.annotations?.['kubevz.io/source-file'], 'deploy/web.yaml');
    assert.match((web.metadata.managedFields as { manager: string }[])[0]!.manager, /^kubevz-git:file:\/\/.*#main:deploy$/);

    const c2 = repo.commit({ 'deploy/web.yaml': veYaml('web', '  template: busybox\n') }, 'drop hostname');
    await src.poll();
    assert.equal(src.status().applied?.commit, c2);
    assert.equal((await client.get('web', 'default'))?.spec.hostname, undefined, 'the dropped field is removed');

    // A bad commit: a valid edit in one file, an invalid document in another → nothing changes.
    const writes = env.api.writes.length;
    const c3 = repo.commit({ 'deploy/web.yaml': veYaml('web', '  template: debian\n'), 'deploy/bad.yaml': veYaml('bad', '  template: busybox\n  powerState: Sideways\n') }, 'bad');
    await src.poll();
    assert.equal(env.api.writes.length, writes, 'nothing written');
    assert.equal((await client.get('web', 'default'))?.spec.template, 'busybox');
    const st = src.status();
    assert.equal(st.applied?.commit, c2, 'the previous good commit stays applied');
    assert.equal(st.rejected?.commit, c3);
    assert.deepEqual(st.rejected?.problems.map((p) => [p.file, p.index, p.field]), [['deploy/bad.yaml', 0, 'spec.powerState']]);
    const err = log.lines.find((l) => l.level === 'error' && l.fields.commit === c3);
    assert.ok(err, 'the bad commit is logged');
    assert.equal(err.fields.file, 'deploy/bad.yaml');
    assert.match(err.msg, /deploy\/bad\.yaml: document 0 .*spec\.powerState/);

    // Fixed, and db.yaml removed: db is pruned; an object created by hand is untouched.
    await client.create({ apiVersion: 'kubevz.io/v1alpha1', kind: 'VirtualEnvironment', metadata: { name: 'by-hand', namespace: 'default' }, spec: { template: 'busybox' } });
    const c4 = repo.commit({ 'deploy/bad.yaml': null, 'deploy/db.yaml': null }, 'fix, remove db');
    await src.poll();
    assert.equal(src.status().applied?.commit, c4);
    assert.equal(src.status().rejected, undefined);
    assert.deepEqual((await client.list()).map((v) => v.metadata.name).sort(), ['by-hand', 'web']);
    assert.equal((await client.get('web', 'default'))?.spec.template, 'debian');
  });

  it('an unreachable repository is reported and retried, and changes nothing', async (t) => {
    if (!requirePrereqs(t, { binaries: ['git'] })) return;
    const env = fakeTarget();
    const log = recordingLogger();
    const src = await startGitSource({ url: join(stateDir, 'no-such-repo'), branch: 'main', path: '.', intervalMs: 60_000, stateDir, target: env.target, log });
    sources.push(src);
    assert.match(src.status().error ?? '', /git .*fetch.*failed.*check that --git .*no-such-repo/s);
    assert.deepEqual(env.api.writes, []);
  });
});
