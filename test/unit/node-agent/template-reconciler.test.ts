// Template builds on a node, on fakes of our own interfaces (FakeApi, FakeRuntime): build on
// request and on demand, per-node status (stage while building, digest/size when ready, the
// reason when failed), no rebuild loop after a failure, VEs that wait for a missing template,
// and cache removal when the VETemplate goes. The resulting state is asserted.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  NODE_LABEL,
  TEMPLATE_BUILD_ANNOTATION,
  VE_RESOURCE,
  VET_RESOURCE,
  type TemplateNodeStatus,
  type VETemplate,
  type VirtualEnvironment,
} from '../../../src/api/types.js';
import { silentLogger } from '../../../src/core/logger.js';
import type { ResourceClient } from '../../../src/core/resource-client.js';
import { mergeNodeEntry, recipeFromSpec, TemplateBuilds, TemplateReconciler } from '../../../src/node-agent/template-reconciler.js';
import { VEReconciler } from '../../../src/node-agent/ve-reconciler.js';
import { templateDigest } from '../../../src/runtime/index.js';
import { FakeApi } from '../../helpers/fake-resource-client.js';
import { FakeRuntime } from '../../helpers/fake-runtime.js';

const signal = new AbortController().signal;
const vetRef = { ...VET_RESOURCE, namespaced: false };
const veRef = { ...VE_RESOURCE, namespaced: true };

/** Records every status patch of VETemplates (to see the progress entries a build wrote). */
function recording(client: ResourceClient<VETemplate>, log: TemplateNodeStatus[][]): ResourceClient<VETemplate> {
  return new Proxy(client, {
    get(target, prop, recv) {
      if (prop === 'patchStatus') {
        return async (name: string, ns: string | undefined, status: { nodes?: TemplateNodeStatus[] }) => {
          if (status.nodes) log.push(structuredClone(status.nodes));
          return target.patchStatus(name, ns, status);
        };
      }
      return Reflect.get(target, prop, recv);
    },
  });
}

function setup(node = 'n1') {
  const api = new FakeApi();
  const patches: TemplateNodeStatus[][] = [];
  const templates = recording(api.client<VETemplate>(vetRef), patches);
  const ves = api.client<VirtualEnvironment>(veRef);
  const runtime = new FakeRuntime();
  let now = 1_000_000;
  const builds = new TemplateBuilds({ client: templates, runtime, nodeName: node, log: silentLogger, progressIntervalMs: 0, now: () => now });
  const reconciler = new TemplateReconciler({ builds, client: templates, runtime, nodeName: node, log: silentLogger });
  const veReconciler = new VEReconciler({
    client: ves,
    runtime,
    nodeName: node,
    subnet: '10.213.7.0/24',
    knownVEs: () => api.objects(veRef) as VirtualEnvironment[],
    stopTimeoutMs: 100,
    resyncMs: 30_000,
    templates: builds,
    log: silentLogger,
  });
  return { api, templates, ves, runtime, builds, reconciler, veReconciler, patches, tick: (ms: number) => (now += ms) };
}

function aTemplate(name: string, spec: Partial<VETemplate['spec']> = {}, annotations?: Record<string, string>): VETemplate {
  return {
    apiVersion: 'kubevz.io/v1alpha1',
    kind: 'VETemplate',
    metadata: { name, ...(annotations ? { annotations } : {}) },
    spec: { source: 'debootstrap', debootstrap: { suite: 'bookworm', include: ['systemd-sysv'] }, ...spec },
  };
}

function aVE(name: string, template: string): VirtualEnvironment {
  return {
    apiVersion: 'kubevz.io/v1alpha1',
    kind: 'VirtualEnvironment',
    metadata: { name, namespace: 'default', labels: { [NODE_LABEL]: 'n1' } },
    spec: { template, network: { addresses: ['10.213.7.30/24'] } },
  };
}

async function entryOf(templates: ResourceClient<VETemplate>, name: string, node = 'n1'): Promise<TemplateNodeStatus | undefined> {
  return (await templates.get(name))?.status?.nodes?.find((n) => n.node === node);
}

test('recipeFromSpec: each source maps to a runtime recipe; a source without its settings is terminal', () => {
  assert.deepEqual(recipeFromSpec('t', { source: 'busybox', postInstall: 'x' }), { source: { kind: 'busybox' }, postInstall: 'x' });
  assert.deepEqual(recipeFromSpec('t', { source: 'tarball', tarball: { url: '/a.tar' }, init: { flavor: 'sysvinit' } }), {
    source: { kind: 'tarball', url: '/a.tar' },
    init: { flavor: 'sysvinit' },
  });
  assert.equal(recipeFromSpec('t', aTemplate('t').spec).source.kind, 'debootstrap');
  assert.throws(() => recipeFromSpec('t', { source: 'debootstrap' }), (e: Error & { code?: string }) => e.code === 'Terminal' && /spec\.debootstrap\.suite/.test(e.message));
  assert.throws(() => recipeFromSpec('t', { source: 'tarball' }), /spec\.tarball\.url/);
});

test('mergeNodeEntry replaces only this node\'s entry and says when nothing changed', () => {
  const other: TemplateNodeStatus = { node: 'n2', stage: 'Ready', digest: 'b' };
  const mine: TemplateNodeStatus = { node: 'n1', stage: 'Downloading', percent: 10 };
  assert.deepEqual(mergeNodeEntry([other], mine), [mine, other]);
  assert.equal(mergeNodeEntry([mine, other], { ...mine }), undefined);
  assert.deepEqual(mergeNodeEntry([mine, other], { node: 'n1', stage: 'Ready' }), [{ node: 'n1', stage: 'Ready' }, other]);
});

test('a build request builds the template and reports stage while building, then digest, init and sizes', async () => {
  const { templates, reconciler, runtime, patches } = setup();
  await templates.create(aTemplate('deb', {}, { [TEMPLATE_BUILD_ANNOTATION]: 'req-1' }));
  await reconciler.reconcile('deb', signal);
  const e = await entryOf(templates, 'deb');
  assert.equal(e?.stage, 'Ready');
  assert.equal(e?.percent, 100);
  assert.equal(e?.digest, templateDigest(recipeFromSpec('deb', aTemplate('deb').spec)));
  assert.equal(e?.init, 'systemd');
  assert.equal(e?.sizeBytes, 1000);
  assert.equal(e?.unpackedBytes, 4000);
  assert.equal(e?.buildRequest, 'req-1', 'the CLI knows its request was acted on');
  assert.equal(e?.observedGeneration, 1);
  const stages = patches.map((p) => p.find((n) => n.node === 'n1')?.stage);
  assert.deepEqual(stages, ['Downloading', 'Packing', 'Ready'], 'progress is in status while the build runs');
  // The same request again: nothing to do, nothing written.
  const writes = patches.length;
  await reconciler.reconcile('deb', signal);
  assert.equal(patches.length, writes);
  assert.equal(runtime.calls.filter((c) => c === 'buildTemplate deb').length, 1);
});

test('without a request or a cache, a declared template is not built (on demand)', async () => {
  const { templates, reconciler, runtime } = setup();
  await templates.create(aTemplate('deb'));
  await reconciler.reconcile('deb', signal);
  assert.equal(runtime.calls.length, 0);
  assert.equal(await entryOf(templates, 'deb'), undefined);
});

test('a failed build says why in status and is not retried in a loop; a new request retries', async () => {
  const { templates, reconciler, runtime, tick } = setup();
  await templates.create(aTemplate('deb', {}, { [TEMPLATE_BUILD_ANNOTATION]: 'r1' }));
  runtime.failNextBuild = Object.assign(new Error('debootstrap bookworm failed (exit 1): E: Couldn\'t find these debs: nosuchpkg'), { code: 'CommandFailed' });
  await reconciler.reconcile('deb', signal);
  const failed = await entryOf(templates, 'deb');
  assert.equal(failed?.stage, 'Failed');
  assert.match(failed?.message ?? '', /nosuchpkg/);
  assert.equal(failed?.buildRequest, 'r1');
  await reconciler.reconcile('deb', signal);
  tick(1000);
  await reconciler.reconcile('deb', signal);
  assert.equal(runtime.calls.filter((c) => c === 'buildTemplate deb').length, 1, 'no rebuild without a new request or spec');
  await templates.mergePatch('deb', undefined, { metadata: { annotations: { [TEMPLATE_BUILD_ANNOTATION]: 'r2' } } });
  await reconciler.reconcile('deb', signal);
  assert.equal((await entryOf(templates, 'deb'))?.stage, 'Ready');
  assert.equal((await entryOf(templates, 'deb'))?.buildRequest, 'r2');
});

test('a changed recipe of a template this node has cached is rebuilt with a new digest', async () => {
  const { templates, reconciler } = setup();
  await templates.create(aTemplate('deb', {}, { [TEMPLATE_BUILD_ANNOTATION]: 'r1' }));
  await reconciler.reconcile('deb', signal);
  const before = (await entryOf(templates, 'deb'))?.digest;
  await templates.mergePatch('deb', undefined, { spec: { postInstall: 'echo changed' } });
  await reconciler.reconcile('deb', signal);
  const after = await entryOf(templates, 'deb');
  assert.equal(after?.stage, 'Ready');
  assert.notEqual(after?.digest, before);
  assert.equal(after?.observedGeneration, 2);
});

test('the first VE that needs a template builds it, and the template\'s status shows this node', async () => {
  const { templates, ves, veReconciler, runtime } = setup();
  await templates.create(aTemplate('deb'));
  const ve = await ves.create(aVE('a', 'deb'));
  await veReconciler.reconcile('default/a', signal);
  assert.equal((await runtime.inspect(ve.metadata.uid!)).state, 'running');
  assert.equal((await entryOf(templates, 'deb'))?.stage, 'Ready');
  assert.equal((await ves.get('a', 'default'))?.status?.phase, 'Running');
});

test('a VE whose template does not exist waits with a clear condition, then starts when it appears', async () => {
  const { templates, ves, veReconciler, runtime } = setup();
  const ve = await ves.create(aVE('a', 'debian-13'));
  const res = await veReconciler.reconcile('default/a', signal);
  assert.ok(res.requeueAfterMs && res.requeueAfterMs > 0, 'looked at again later, not a crash loop');
  const st = (await ves.get('a', 'default'))?.status;
  const ready = st?.conditions?.find((c) => c.type === 'Ready');
  assert.equal(ready?.status, 'False');
  assert.equal(ready?.reason, 'TemplateNotFound');
  assert.match(ready?.message ?? '', /VETemplate "debian-13" does not exist/);
  assert.equal(st?.phase, 'Pending');
  assert.equal((await runtime.inspect(ve.metadata.uid!)).state, 'absent');

  await templates.create(aTemplate('debian-13', { debootstrap: { suite: 'trixie' } }));
  await veReconciler.reconcile('default/a', signal);
  assert.equal((await runtime.inspect(ve.metadata.uid!)).state, 'running');
  assert.equal((await ves.get('a', 'default'))?.status?.conditions?.find((c) => c.type === 'Ready')?.status, 'True');
});

test('the built-in busybox needs no declaration', async () => {
  const { ves, veReconciler, runtime } = setup();
  const ve = await ves.create(aVE('a', 'busybox'));
  await veReconciler.reconcile('default/a', signal);
  assert.equal((await runtime.inspect(ve.metadata.uid!)).state, 'running');
  assert.equal((await runtime.listTemplates())[0]?.builtin, true);
});

test('a deleted VETemplate\'s cache is removed from the node, but kept while a VE uses it', async () => {
  const { templates, ves, reconciler, veReconciler, runtime } = setup();
  await templates.create(aTemplate('deb'));
  const ve = await ves.create(aVE('a', 'deb'));
  await veReconciler.reconcile('default/a', signal);
  await templates.delete('deb');
  const kept = await reconciler.reconcile('deb', signal);
  assert.ok(kept.requeueAfterMs, 'retried later');
  assert.deepEqual((await runtime.listTemplates()).map((t) => t.name), ['deb'], 'the running VE keeps its template');
  await runtime.destroy(ve.metadata.uid!, { timeoutMs: 100 });
  await reconciler.reconcile('deb', signal);
  assert.deepEqual(await runtime.listTemplates(), []);
});
