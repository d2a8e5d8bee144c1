// The agent's side of the per-VE disk on fakes: spec → disk config, status reports for grow /
// shrink / inodes, the usage throttle, refusal of second-level quota, and spec.cloneFrom.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { NODE_LABEL, VE_RESOURCE, type VirtualEnvironment } from '../../../src/api/types.js';
import { silentLogger } from '../../../src/core/logger.js';
import { diskFromSpec, diskReport, DiskReportThrottle, withDisk } from '../../../src/node-agent/ve-disk.js';
import { VEReconciler } from '../../../src/node-agent/ve-reconciler.js';
import { FakeApi } from '../../helpers/fake-resource-client.js';
import { FakeRuntime } from '../../helpers/fake-runtime.js';

const Mi = 2 ** 20;
const Gi = 2 ** 30;
const ref = { ...VE_RESOURCE, namespaced: true };
const signal = new AbortController().signal;
const noGrow = { available: false, reason: 'online ext4 resize needs CAP_SYS_RESOURCE' };

function aVE(name: string, spec: Partial<VirtualEnvironment['spec']> = {}, node = 'n1'): VirtualEnvironment {
  return { apiVersion: 'kubevz.io/v1alpha1', kind: 'VirtualEnvironment', metadata: { name, namespace: 'default', labels: { [NODE_LABEL]: node } }, spec: { template: 'busybox', ...spec } };
}

function setup() {
  const api = new FakeApi();
  const client = api.client<VirtualEnvironment>(ref);
  const runtime = new FakeRuntime();
  const reconciler = new VEReconciler({ client, runtime, nodeName: 'n1', subnet: '10.213.7.0/24', knownVEs: () => api.objects(ref) as VirtualEnvironment[], stopTimeoutMs: 100, resyncMs: 30_000, log: silentLogger });
  return { client, runtime, reconciler };
}

test('disk config from the spec: 2Gi default, quantities, a bad quantity names the field', () => {
  assert.deepEqual(diskFromSpec(aVE('a')), { sizeBytes: 2 * Gi });
  assert.deepEqual(diskFromSpec(aVE('a', { resources: { disk: { space: '512Mi', inodes: 20000, quotaUgidLimit: 0 } } })), { sizeBytes: 512 * Mi, inodes: 20000 });
  assert.throws(() => diskFromSpec(aVE('a', { resources: { disk: { space: 'lots' } } })), (e: Error & { code?: string }) => e.code === 'Terminal' && /spec\.resources\.disk\.space/.test(e.message));
});

test('reports: applied, grow pending a restart, shrink refused below used, unsupported above, inodes fixed', () => {
  const usage = { sizeBytes: Gi, inodes: 65536, mounted: true, usedBytes: 300 * Mi, availableBytes: 700 * Mi, inodesUsed: 120 };
  const ok = diskReport({ sizeBytes: Gi }, usage, noGrow);
  assert.equal(ok.condition.status, 'True');
  assert.deepEqual(ok.pending, []);
  assert.equal(ok.disk.size, '1Gi');
  assert.equal(ok.disk.usedBytes, 300 * Mi);

  const grow = diskReport({ sizeBytes: 2 * Gi }, usage, noGrow);
  assert.equal(grow.condition.reason, 'RestartRequired');
  assert.match(grow.pending[0]!.reason, /grows to 2Gi at the VE's next stop\/start.*CAP_SYS_RESOURCE/);
  assert.equal(grow.pending[0]!.field, 'spec.resources.disk.space');

  const below = diskReport({ sizeBytes: 200 * Mi }, usage, noGrow);
  assert.equal(below.condition.reason, 'ShrinkRefused');
  assert.match(below.condition.message, /requested 200Mi is below the 300Mi the VE uses \(disk 1Gi\)/);

  const above = diskReport({ sizeBytes: 512 * Mi }, usage, noGrow);
  assert.equal(above.condition.reason, 'ShrinkUnsupported');
  assert.match(above.condition.message, /not supported.*stays 1Gi/);

  const inodes = diskReport({ sizeBytes: Gi, inodes: 100000 }, usage, noGrow);
  assert.equal(inodes.condition.reason, 'InodesFixed');
  assert.equal(inodes.pending[0]!.field, 'spec.resources.disk.inodes');
  assert.equal(diskReport({ sizeBytes: Gi, inodes: 1000 }, usage, noGrow).condition.status, 'True', 'fewer inodes than the disk has is fine');
});

test('withDisk keeps other pending resources and replaces its own', () => {
  const usage = { sizeBytes: Gi, inodes: 65536, mounted: true };
  const status = { pendingResources: [{ field: 'spec.resources.openFiles', reason: 'RestartRequired: x' }, { field: 'spec.resources.disk.space', reason: 'old' }] };
  const next = withDisk(status, diskReport({ sizeBytes: 2 * Gi }, usage, noGrow), 3);
  assert.deepEqual(next.pendingResources?.map((p) => p.field), ['spec.resources.openFiles', 'spec.resources.disk.space']);
  assert.notEqual(next.pendingResources?.[1]?.reason, 'old');
  const c = next.conditions?.find((x) => x.type === 'DiskResized');
  assert.equal(c?.status, 'False');
  assert.equal(c?.observedGeneration, 3);
});

test('usage numbers are refreshed at most once per interval; a size change goes through at once', () => {
  let now = 0;
  const th = new DiskReportThrottle(60_000, () => now);
  const at = (used: number, size = Gi) => diskReport({ sizeBytes: size }, { sizeBytes: size, inodes: 1, mounted: true, usedBytes: used }, noGrow);
  assert.equal(th.pick('u', at(1)).disk.usedBytes, 1);
  now = 10_000;
  assert.equal(th.pick('u', at(2)).disk.usedBytes, 1, 'held back');
  assert.equal(th.pick('u', at(3, 2 * Gi)).disk.usedBytes, 3, 'size changed');
  now = 80_000;
  assert.equal(th.pick('u', at(4, 2 * Gi)).disk.usedBytes, 4, 'interval passed');
});

test('a VE asking for second-level quota fails with the field named; the node feature is not pretended', async () => {
  const { client, runtime, reconciler } = setup();
  await client.create(aVE('q', { resources: { disk: { quotaUgidLimit: 50 } } }));
  await assert.rejects(reconciler.reconcile('default/q', signal), (e: Error & { code?: string }) => e.code === 'Terminal' && /spec\.resources\.disk\.quotaUgidLimit.*CONFIG_QFMT_V2/.test(e.message));
  const ve = (await client.get('q', 'default'))!;
  assert.equal(ve.status?.phase, 'Failed');
  assert.match(ve.status?.message ?? '', /quotaUgidLimit/);
  assert.equal(runtime.ves.size, 0);
});

test('a running VE reports its disk; a bigger spec waits for a restart where online grow is unavailable', async () => {
  const { client, runtime, reconciler } = setup();
  const created = await client.create(aVE('d', { resources: { disk: { space: '1Gi' } } }));
  await reconciler.reconcile('default/d', signal);
  let ve = (await client.get('d', 'default'))!;
  assert.equal(ve.status?.disk?.size, '1Gi');
  assert.equal(ve.status?.conditions?.find((c) => c.type === 'DiskResized')?.status, 'True');

  await client.mergePatch('d', 'default', { spec: { resources: { disk: { space: '2Gi' } } } });
  await reconciler.reconcile('default/d', signal);
  ve = (await client.get('d', 'default'))!;
  const cond = ve.status?.conditions?.find((c) => c.type === 'DiskResized');
  assert.equal(cond?.reason, 'RestartRequired');
  assert.ok(ve.status?.pendingResources?.some((p) => p.field === 'spec.resources.disk.space'));
  assert.equal((await runtime.diskUsage(created.metadata.uid!))?.sizeBytes, Gi, 'not grown behind the status\'s back');

  runtime.features.diskOnlineGrow = { available: true, reason: 'fake' };
  await reconciler.reconcile('default/d', signal);
  ve = (await client.get('d', 'default'))!;
  assert.equal(ve.status?.conditions?.find((c) => c.type === 'DiskResized')?.status, 'True');
  assert.equal(ve.status?.disk?.size, '2Gi');
});

test('spec.cloneFrom seeds the disk from the source on this node; a copied address is refused', async () => {
  const { client, runtime, reconciler } = setup();
  const src = await client.create(aVE('src', { network: { addresses: ['10.213.7.30/24'] }, resources: { disk: { space: '1Gi' } } }));
  await reconciler.reconcile('default/src', signal);
  runtime.ves.get(src.metadata.uid!)!.disk.usedBytes = 123;

  const copy = await client.create(aVE('copy', { cloneFrom: 'src', resources: { disk: { space: '1Gi' } } }));
  await reconciler.reconcile('default/copy', signal);
  const host = runtime.ves.get(copy.metadata.uid!)!;
  assert.equal(host.config.disk?.cloneFrom, src.metadata.uid);
  assert.equal(host.disk.usedBytes, 123, 'the disk came from the source');
  assert.notDeepEqual(host.config.addresses, ['10.213.7.30/24'], 'no address copied implicitly');
  assert.equal(runtime.ves.get(src.metadata.uid!)!.state, 'running', 'the source keeps running');

  await client.create(aVE('dup', { cloneFrom: 'src', network: { addresses: ['10.213.7.30/24'] } }));
  await assert.rejects(reconciler.reconcile('default/dup', signal), /spec\.network\.addresses: 10\.213\.7\.30 is the address of the clone source "src"/);

  await client.create(aVE('tiny', { cloneFrom: 'src', resources: { disk: { space: '512Mi' } } }));
  await assert.rejects(reconciler.reconcile('default/tiny', signal), /smaller than the disk of the clone source "src" \(1Gi\)/);

  await client.create(aVE('far', { cloneFrom: 'elsewhere' }));
  await client.create(aVE('elsewhere', {}, 'n2'));
  await assert.rejects(reconciler.reconcile('default/far', signal), /is on node n2.*set spec\.nodeName: n2/);

  await client.create(aVE('early', { cloneFrom: 'nope' }));
  await assert.rejects(reconciler.reconcile('default/early', signal), (e: Error & { code?: string }) => e.code === 'NotFound');
});
