// Real kubectl (the dispatcher's choice for the server's /version) against the embedded API
// server, one test per command issue 5 lists: get -o wide / -A / --show-labels / -l, get -w,
// wait for a condition and for deletion, delete held by a finalizer, describe with Events, edit,
// patch merge/json, explain (OpenAPI v3 and v2), api-resources, client-side apply validation, and
// server-side apply with conflicts, --force-conflicts and pruning of dropped fields.

import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { requirePrereqs } from '../helpers/prereq.js';
import { silentLogger } from '../../src/core/logger.js';
import { type RunningApiServer, startApiServer } from '../../src/apiserver/index.js';
import { call, readyStatus, VE_PATH } from '../unit/apiserver/helpers.js';
import { Kubectl } from '../unit/apiserver/kubectl-runner.js';

const veYaml = (name: string, extra = '', labels = '') =>
  `apiVersion: kubevz.io/v1alpha1\nkind: VirtualEnvironment\nmetadata:\n  name: ${name}\n${labels ? `  labels: ${labels}\n` : ''}spec:\n  template: busybox\n${extra}`;

describe('kubectl command coverage', () => {
  let dir: string;
  let s: RunningApiServer;
  let k: Kubectl;
  const running: { stop(): void }[] = [];

  const file = (name: string, body: string): string => {
    const p = join(dir, name);
    writeFileSync(p, body);
    return p;
  };
  const ok = async (args: string[], env: NodeJS.ProcessEnv = {}): Promise<string> => {
    const r = await k.run(args, 60_000, env);
    assert.equal(r.code, 0, `kubectl ${args.join(' ')} failed: ${r.stderr}`);
    return r.stdout;
  };
  const fails = async (args: string[]): Promise<string> => {
    const r = await k.run(args);
    assert.notEqual(r.code, 0, `kubectl ${args.join(' ')} should fail: ${r.stdout}`);
    return r.stderr;
  };
  const prereq = (t: TestContext) => requirePrereqs(t, { binaries: ['kubectl'] });
  const getJson = async (name: string) => JSON.parse(await ok(['get', 've', name, '-o', 'json', '--show-managed-fields']));
  const setReady = async (name: string) => {
    const cur = (await call(s, `${VE_PATH}/${name}`)).json();
    const r = await call(s, `${VE_PATH}/${name}/status`, { method: 'PATCH', body: readyStatus(cur.metadata.generation), contentType: 'application/merge-patch+json' });
    assert.equal(r.status, 200, r.text);
  };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'kvz-kubectl-cov-'));
    s = await startApiServer({ stateDir: join(dir, 'state'), port: 0, log: silentLogger, heartbeatMs: 1000 });
    k = new Kubectl(dir, s.kubeconfigPath);
  });
  after(async () => {
    for (const r of running) r.stop();
    try {
      await (s as RunningApiServer | undefined)?.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('get -o wide, -A, --show-labels, label selectors', async (t) => {
    if (!prereq(t)) return;
    await ok(['apply', '-f', file('g1.yaml', veYaml('g1', '', '{app: web, tier: front}'))]);
    await ok(['apply', '-f', file('g2.yaml', veYaml('g2', '', '{app: db}'))]);
    const wide = await ok(['get', 've', '-o', 'wide']);
    assert.match(wide, /^NAME\s+PHASE\s+NODE\s+IP\s+READY\s+TEMPLATE\s+AGE\n/);
    assert.match(wide, /\ng1\s+busybox\s+\d+s/);
    const all = await ok(['get', 've', '-A']);
    assert.match(all, /^NAMESPACE\s+NAME\s+PHASE/);
    assert.match(all, /\ndefault\s+g1\s/);
    assert.match(await ok(['get', 've', '--show-labels']), /\ng1\s.*app=web,tier=front/);
    const sel = await ok(['get', 've', '-l', 'app=web', '-o', 'name']);
    assert.equal(sel.trim(), 'virtualenvironment.kubevz.io/g1');
    assert.equal((await ok(['get', 've', '-l', 'app in (web,db),tier!=front', '-o', 'name'])).trim(), 'virtualenvironment.kubevz.io/g2');
    assert.equal((await ok(['get', 've', '-l', '!tier', '-o', 'name'])).trim(), 'virtualenvironment.kubevz.io/g2');
  });

  it('get -w prints rows for changes as they happen', async (t) => {
    if (!prereq(t)) return;
    const w = k.background(['get', 've', '-w', '--output-watch-events']);
    running.push(w);
    await w.waitFor(/NAME/);
    await ok(['apply', '-f', file('w1.yaml', veYaml('w1'))]);
    await w.waitFor(/ADDED\s+w1\s/);
    await setReady('w1');
    await w.waitFor(/MODIFIED\s+w1\s+Running\s+True/);
    await ok(['delete', 've', 'w1']);
    await w.waitFor(/DELETED\s+w1\s/);
    w.stop();
  });

  it('wait --for=condition=Ready and --for=delete', async (t) => {
    if (!prereq(t)) return;
    await ok(['apply', '-f', file('wt.yaml', veYaml('wt'))]);
    const cond = k.background(['wait', '--for=condition=Ready', 've/wt', '--timeout=30s']);
    running.push(cond);
    await new Promise((r) => setTimeout(r, 500));
    await setReady('wt');
    const c = await cond.done;
    assert.equal(c.code, 0, c.stderr);
    assert.match(c.stdout, /condition met/);
    const del = k.background(['wait', '--for=delete', 've/wt', '--timeout=30s']);
    running.push(del);
    await new Promise((r) => setTimeout(r, 500));
    assert.equal((await call(s, `${VE_PATH}/wt`, { method: 'DELETE' })).status, 200);
    const d = await del.done;
    assert.equal(d.code, 0, d.stderr);
  });

  it('delete with a finalizer pending waits until the finalizer is removed', async (t) => {
    if (!prereq(t)) return;
    await ok(['apply', '-f', file('fin.yaml', veYaml('fin').replace('metadata:\n', 'metadata:\n  finalizers: [kubevz.io/test]\n'))]);
    assert.match(await ok(['delete', 've', 'fin', '--wait=false']), /"fin" deleted/);
    const held = await getJson('fin');
    assert.ok(held.metadata.deletionTimestamp, 'deletionTimestamp set');
    assert.equal(held.metadata.generation, 2, 'generation bumped when deletion starts');
    const del = k.background(['delete', 've', 'fin', '--timeout=30s']);
    running.push(del);
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal((await getJson('fin')).metadata.name, 'fin', 'still there while the finalizer is pending');
    await ok(['patch', 've', 'fin', '--type=merge', '-p', '{"metadata":{"finalizers":null}}']);
    const d = await del.done;
    assert.equal(d.code, 0, d.stderr);
    assert.match(await fails(['get', 've', 'fin']), /NotFound/);
  });

  it('describe shows the object and its core/v1 Events', async (t) => {
    if (!prereq(t)) return;
    await ok(['apply', '-f', file('ds.yaml', veYaml('ds'))]);
    const ve = await getJson('ds');
    const now = new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
    const ev = {
      apiVersion: 'v1', kind: 'Event', metadata: { name: `ds.${Date.now().toString(16)}`, namespace: 'default' },
      involvedObject: { apiVersion: 'kubevz.io/v1alpha1', kind: 'VirtualEnvironment', name: 'ds', namespace: 'default', uid: ve.metadata.uid },
      reason: 'Started', message: 'VE ds started on node-a', type: 'Normal', source: { component: 'kubevz-node-agent' },
      firstTimestamp: now, lastTimestamp: now, count: 1,
    };
    assert.equal((await call(s, '/api/v1/namespaces/default/events', { method: 'POST', body: ev })).status, 201);
    const out = await ok(['describe', 've', 'ds']);
    assert.match(out, /Name:\s+ds/);
    assert.match(out, /Template:\s+busybox/);
    assert.match(out, /Events:\s*\n\s+Type\s+Reason\s+Age\s+From\s+Message/);
    assert.match(out, /Normal\s+Started\s+\S+\s+kubevz-node-agent\s+VE ds started on node-a/);
  });

  it('edit through KUBE_EDITOR changes the object', async (t) => {
    if (!prereq(t)) return;
    await ok(['apply', '-f', file('ed.yaml', veYaml('ed', '  hostname: before\n'))]);
    const editor = file('editor.sh', '#!/bin/sh\nsed -i "s/hostname: before/hostname: after/" "$1"\n');
    chmodSync(editor, 0o755);
    assert.match(await ok(['edit', 've', 'ed'], { KUBE_EDITOR: editor, EDITOR: editor }), /virtualenvironment\.kubevz\.io\/ed edited/);
    const o = await getJson('ed');
    assert.equal(o.spec.hostname, 'after');
    assert.equal(o.metadata.generation, 2);
    assert.ok(o.metadata.managedFields.some((m: { manager: string; operation: string }) => m.manager === 'kubectl-edit' && m.operation === 'Update'), JSON.stringify(o.metadata.managedFields));
  });

  it('patch --type=merge and --type=json; default strategic patch is refused with 415', async (t) => {
    if (!prereq(t)) return;
    await ok(['apply', '-f', file('pt.yaml', veYaml('pt'))]);
    assert.match(await ok(['patch', 've', 'pt', '--type=merge', '-p', '{"spec":{"hostname":"merged"}}']), /patched/);
    assert.equal((await getJson('pt')).spec.hostname, 'merged');
    assert.match(await ok(['patch', 've', 'pt', '--type=json', '-p', '[{"op":"replace","path":"/spec/hostname","value":"jsoned"},{"op":"add","path":"/metadata/labels","value":{"p":"1"}}]']), /patched/);
    const o = await getJson('pt');
    assert.equal(o.spec.hostname, 'jsoned');
    assert.deepEqual(o.metadata.labels, { p: '1' });
    assert.match(await fails(['patch', 've', 'pt', '--type=json', '-p', '[{"op":"test","path":"/spec/hostname","value":"nope"}]']), /testing value \/spec\/hostname failed|Invalid/);
    assert.match(await fails(['patch', 've', 'pt', '-p', '{"spec":{"hostname":"x"}}']), /UnsupportedMediaType|unknown format/);
  });

  it('explain reads the CRD schema (OpenAPI v3, and v2 protobuf)', async (t) => {
    if (!prereq(t)) return;
    const v3 = await ok(['explain', 've.spec.resources']);
    assert.match(v3, /KIND:\s+VirtualEnvironment/);
    assert.match(v3, /memory\s+<Object>/);
    assert.match(v3, /openFiles\s+<integer>\s*\n\s+Open files per process/);
    const v2 = await ok(['explain', 've.spec.resources', '--output=plaintext-openapiv2']);
    assert.match(v2, /RESOURCE:\s+resources <Object>/);
    assert.match(v2, /processes\s+<integer>/);
    assert.match(await ok(['explain', 'venodes']), /KIND:\s+VENode/);
    assert.match(await ok(['explain', 've.metadata.labels']), /labels\s+<map\[string\]string>/);
  });

  it('api-resources lists every served kind with short names', async (t) => {
    if (!prereq(t)) return;
    const out = await ok(['api-resources']);
    assert.match(out, /virtualenvironments\s+ve\s+kubevz\.io\/v1alpha1\s+true\s+VirtualEnvironment/);
    assert.match(out, /venodes\s+ven\s+kubevz\.io\/v1alpha1\s+false\s+VENode/);
    assert.match(out, /vetemplates\s+vet\s+kubevz\.io\/v1alpha1\s+false\s+VETemplate/);
    assert.match(out, /vemigrations\s+vem\s+kubevz\.io\/v1alpha1\s+true\s+VEMigration/);
    assert.match(out, /leases\s+coordination\.k8s\.io\/v1\s+true\s+Lease/);
    assert.match(out, /events\s+ev\s+v1\s+true\s+Event/);
    const names = (o: string) => o.split('\n').filter(Boolean).sort();
    assert.deepEqual(names(await ok(['api-resources', '--api-group=kubevz.io', '-o', 'name'])), ['vemigrations.kubevz.io', 'venodes.kubevz.io', 'vetemplates.kubevz.io', 'virtualenvironments.kubevz.io']);
    // Scope as the CRDs declare it: VENode and VETemplate cluster-wide, VE and VEMigration per namespace.
    assert.deepEqual(names(await ok(['api-resources', '--api-group=kubevz.io', '--namespaced=false', '-o', 'name'])), ['venodes.kubevz.io', 'vetemplates.kubevz.io']);
    assert.deepEqual(names(await ok(['api-resources', '--api-group=kubevz.io', '--namespaced=true', '-o', 'name'])), ['vemigrations.kubevz.io', 'virtualenvironments.kubevz.io']);
    // The short names resolve through discovery for get as well.
    for (const short of ['vet', 'vem']) {
      const r = await k.run(['get', short]);
      assert.equal(r.code, 0, `kubectl get ${short}: ${r.stderr}`);
      assert.match(r.stderr, /No resources found/);
    }
  });

  it('apply with validation accepts every kind of field and rejects unknown ones', async (t) => {
    if (!prereq(t)) return;
    const full = veYaml('val', [
      '  hostname: val', '  powerState: Stopped', '  nodeSelector: {zone: a}',
      '  resources:', '    cpu: {units: 1000, limit: "150%", cpus: 2}', '    memory: {limit: 512Mi, swap: 268435456}',
      '  network: {addresses: [10.213.0.10/24]}', '',
    ].join('\n'), '{app: val}').replace('metadata:\n', 'metadata:\n  annotations: {note: "yes"}\n');
    assert.match(await ok(['apply', '--validate=true', '-f', file('val.yaml', full)]), /created/);
    assert.match(await ok(['apply', '--validate=true', '--server-side', '-f', file('val.yaml', full)]), /serverside-applied/);
    const bad = await fails(['apply', '--validate=true', '-f', file('valbad.yaml', veYaml('valbad', '  bogus: 1\n'))]);
    assert.match(bad, /unknown field "spec\.bogus"/);
  });

  it('server-side apply: conflict (409), --force-conflicts, dropped fields pruned', async (t) => {
    if (!prereq(t)) return;
    const a = file('ssa-a.yaml', veYaml('ssa', '  hostname: one\n  nodeSelector: {zone: a}\n', '{a: "1", b: "2"}'));
    assert.match(await ok(['apply', '--server-side', '-f', a]), /serverside-applied/);
    const other = file('ssa-b.yaml', veYaml('ssa', '  hostname: two\n'));
    const conflict = await fails(['apply', '--server-side', '--field-manager=other', '-f', other]);
    assert.match(conflict, /Apply failed with 1 conflict: conflict with "kubectl": \.spec\.hostname/);
    assert.match(conflict, /--force-conflicts/);
    // The same manager dropping fields removes them.
    await ok(['apply', '--server-side', '-f', file('ssa-c.yaml', veYaml('ssa', '  hostname: one\n', '{a: "1"}'))]);
    let o = await getJson('ssa');
    assert.equal(o.spec.nodeSelector, undefined);
    assert.deepEqual(o.metadata.labels, { a: '1' });
    const mf = o.metadata.managedFields.find((m: { manager: string }) => m.manager === 'kubectl');
    assert.equal(mf.operation, 'Apply');
    assert.deepEqual(mf.fieldsV1, { 'f:metadata': { 'f:labels': { 'f:a': {} } }, 'f:spec': { 'f:hostname': {}, 'f:template': {} } });
    assert.match(await ok(['apply', '--server-side', '--field-manager=other', '--force-conflicts', '-f', other]), /serverside-applied/);
    o = await getJson('ssa');
    assert.equal(o.spec.hostname, 'two');
    const yaml = parseYaml(await ok(['get', 've', 'ssa', '-o', 'yaml', '--show-managed-fields']));
    const owners = yaml.metadata.managedFields.filter((m: { fieldsV1: { 'f:spec'?: Record<string, unknown> } }) => m.fieldsV1['f:spec']?.['f:hostname']).map((m: { manager: string }) => m.manager);
    assert.deepEqual(owners, ['other']);
  });

  it('client-side apply then server-side apply migrates ownership to the kubectl manager', async (t) => {
    if (!prereq(t)) return;
    const f = file('mig.yaml', veYaml('mig', '  hostname: h\n'));
    await ok(['apply', '-f', f]);
    await ok(['apply', '--server-side', '-f', f]);
    await ok(['apply', '--server-side', '-f', file('mig2.yaml', veYaml('mig'))]);
    assert.equal((await getJson('mig')).spec.hostname, undefined, 'the field kubectl stopped applying is gone');
  });
});
