// `kvz template ...` on a fake API with a real TemplateReconciler on a FakeRuntime: build follows
// the node's status to Ready (or Failed), import declares a tarball template, delete refuses
// while VEs use a template and names them; the progress bar and the list table.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { TEMPLATE_BUILD_ANNOTATION, VET_RESOURCE, type VETemplate, type VirtualEnvironment } from '../../../src/api/types.js';
import { VE_REF, stderrLogger, type CliIO, type Connection } from '../../../src/cli/context.js';
import { runCli } from '../../../src/cli/main.js';
import { ProgressView, followedEntry, templateRows } from '../../../src/cli/template.js';
import { silentLogger } from '../../../src/core/logger.js';
import { TemplateBuilds, TemplateReconciler } from '../../../src/node-agent/template-reconciler.js';
import { refsFromCrds, registryApplyTarget } from '../../../src/sources/kinds.js';
import { FakeApi } from '../../helpers/fake-resource-client.js';
import { FakeRuntime } from '../../helpers/fake-runtime.js';

const tmp = mkdtempSync(join(tmpdir(), 'kvz-cli-tpl-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
const vetRef = { ...VET_RESOURCE, namespaced: false };
const signal = new AbortController().signal;

/** A CLI whose sleep lets a node agent (the template reconciler on a fake runtime) act. */
function harness(opts: { tty?: boolean } = {}) {
  const api = new FakeApi();
  const templates = api.client<VETemplate>(vetRef);
  const runtime = new FakeRuntime();
  const builds = new TemplateBuilds({ client: templates, runtime, nodeName: 'node-a', log: silentLogger, progressIntervalMs: 0 });
  const agent = new TemplateReconciler({ builds, client: templates, runtime, nodeName: 'node-a', log: silentLogger });
  const out: string[] = [];
  const err: string[] = [];
  const conn: Connection = {
    kubeconfigPath: '/fake/kubeconfig',
    server: 'https://fake:6443',
    target: registryApplyTarget(refsFromCrds(), (ref) => api.client(ref), 'https://fake:6443'),
    ves: api.client<VirtualEnvironment>(VE_REF),
    templates,
  };
  let t = Date.parse('2024-01-01T12:00:00Z');
  const io: CliIO & { stderrIsTTY: boolean } = {
    stdout: (s) => void out.push(s),
    stderr: (s) => void err.push(s),
    env: {},
    stdinIsTTY: false,
    stderrIsTTY: opts.tty ?? false,
    readStdin: () => '',
    now: () => new Date(t),
    hostname: () => 'node-a',
    log: stderrLogger((s) => void err.push(s)),
    connect: () => conn,
    runtime: async () => runtime,
    sleep: async (ms) => {
      t += ms;
      for (const v of await templates.list()) await agent.reconcile(v.metadata.name, signal);
    },
  };
  return { api, templates, runtime, out, err, io, run: (...argv: string[]) => runCli(argv, io) };
}

const deb = (name: string): VETemplate => ({
  apiVersion: 'kubevz.io/v1alpha1',
  kind: 'VETemplate',
  metadata: { name },
  spec: { source: 'debootstrap', debootstrap: { suite: 'bookworm', include: ['sysvinit-core'] }, init: { flavor: 'sysvinit' } },
});

test('template build asks the node, follows its status and reports the result', async () => {
  const h = harness();
  await h.templates.create(deb('deb12'));
  assert.equal(await h.run('template', 'build', 'deb12'), 0);
  const vet = await h.templates.get('deb12');
  const token = vet?.metadata.annotations?.[TEMPLATE_BUILD_ANNOTATION];
  assert.ok(token);
  assert.equal(vet?.status?.nodes?.[0]?.buildRequest, token);
  assert.match(h.out.join(''), /vetemplate\.kubevz\.io\/deb12 ready on node-a: init sysvinit, digest [0-9a-f]{12}, 1000B packed/);
  assert.match(h.err.join(''), /deb12: Ready 100% on node-a/);
});

test('on a terminal the build draws a progress bar', async () => {
  const h = harness({ tty: true });
  await h.templates.create(deb('deb12'));
  // The fake node reports Downloading/Packing within one sleep; a stage seen by the CLI is drawn.
  await h.templates.patchStatus('deb12', undefined, { nodes: [{ node: 'node-a', stage: 'Downloading', percent: 30, message: 'Retrieving libc6' }] });
  assert.equal(await h.run('template', 'build', 'deb12'), 0);
  const drawn = h.err.join('');
  assert.match(drawn, /\r\x1b\[2Kdeb12 \[#########\.{21}\]  30% Downloading  Retrieving libc6/);
  assert.match(drawn, /\[#{30}\] 100% Ready/);
});

test('a failed build is an error with the node\'s reason', async () => {
  const h = harness();
  await h.templates.create(deb('deb12'));
  h.runtime.failNextBuild = Object.assign(new Error('debootstrap failed: E: Couldn\'t find these debs: nosuchpkg'), { code: 'CommandFailed' });
  assert.equal(await h.run('template', 'build', 'deb12'), 1);
  assert.match(h.err.join(''), /error: building template "deb12" on node node-a failed: .*nosuchpkg/);
});

test('template build of an undeclared template says what to do; busybox is declared on the fly', async () => {
  const h = harness();
  assert.equal(await h.run('template', 'build', 'nope'), 1);
  assert.match(h.err.join(''), /vetemplate "nope" not found: declare it first/);
  assert.equal(await h.run('template', 'build', 'busybox'), 0);
  assert.equal((await h.templates.get('busybox'))?.status?.nodes?.[0]?.init, 'busybox');
});

test('template import declares a tarball template from a local file and builds it', async () => {
  const h = harness();
  const file = join(tmp, 'rootfs.tar.xz');
  writeFileSync(file, 'x');
  assert.equal(await h.run('template', 'import', 'lxc-alpine', file, '--init', 'other'), 0);
  const vet = await h.templates.get('lxc-alpine');
  assert.deepEqual(vet?.spec, { source: 'tarball', tarball: { url: `file://${file}` }, init: { flavor: 'other' } });
  assert.equal(vet?.status?.nodes?.[0]?.stage, 'Ready');
  assert.equal(await h.run('template', 'import', 'x', join(tmp, 'missing.tar')), 1);
  assert.match(h.err.join(''), /missing\.tar is not a file/);
  assert.equal(await h.run('template', 'import', 'x', file, '--init', 'upstart'), 2);
});

test('template delete refuses while VEs use the template, naming them', async () => {
  const h = harness();
  await h.templates.create(deb('deb12'));
  const ves = h.api.client<VirtualEnvironment>(VE_REF);
  for (const [ns, name] of [['default', 'web1'], ['prod', 'db']] as const) {
    await ves.create({ apiVersion: 'kubevz.io/v1alpha1', kind: 'VirtualEnvironment', metadata: { name, namespace: ns }, spec: { template: 'deb12' } });
  }
  assert.equal(await h.run('template', 'delete', 'deb12'), 1);
  assert.match(h.err.join(''), /template "deb12" is in use by VEs default\/web1, prod\/db: delete them or change spec\.template first/);
  assert.ok(await h.templates.get('deb12'), 'not deleted');
  await ves.delete('web1', 'default');
  await ves.delete('db', 'prod');
  assert.equal(await h.run('template', 'delete', 'deb12'), 0);
  assert.equal(await h.templates.get('deb12'), undefined);
});

test('template list: one row per template, the built-in busybox shown when undeclared', async () => {
  const h = harness();
  await h.templates.create(deb('deb12'));
  await h.templates.patchStatus('deb12', undefined, { nodes: [{ node: 'node-a', stage: 'Ready', init: 'sysvinit', sizeBytes: 58 << 20, digest: 'abcdef0123456789' }] });
  assert.equal(await h.run('template', 'list'), 0);
  const lines = h.out.join('').trim().split('\n');
  assert.match(lines[0] ?? '', /^NAME\s+SOURCE\s+INIT\s+STAGE\s+READY\s+SIZE\s+DIGEST\s+AGE$/);
  assert.match(lines[1] ?? '', /^deb12\s+debootstrap\s+sysvinit\s+Ready\s+1\/1\s+58MiB\s+abcdef012345\s/);
  assert.match(lines[2] ?? '', /^busybox\s+busybox \(built-in\)\s+busybox\s+OnDemand/);
});

test('progress helpers', () => {
  assert.equal(ProgressView.bar(0, 10), '[..........]   0%');
  assert.equal(ProgressView.bar(55, 10), '[######....]  55%');
  assert.equal(ProgressView.bar(140, 10), '[##########] 100%');
  const nodes = [
    { node: 'a', stage: 'Ready' as const, buildRequest: 'old' },
    { node: 'b', stage: 'Installing' as const, percent: 50 },
  ];
  assert.equal(followedEntry(nodes, 'tok')?.node, 'b', 'a node that is building');
  assert.equal(followedEntry([...nodes, { node: 'c', stage: 'Ready' as const, buildRequest: 'tok' }], 'tok')?.node, 'c');
  assert.equal(followedEntry(nodes, 'tok', 'a'), undefined, 'the asked node has not acted on this request');
  const rows = templateRows([{ ...deb('x'), status: { nodes: [{ node: 'a', stage: 'Installing', percent: 42 }] } }], new Date());
  assert.equal(rows[0]?.[3], 'Installing 42%');
});
