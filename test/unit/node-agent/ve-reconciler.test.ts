// The VE reconciler on fakes of our own interfaces (FakeApi, FakeRuntime): the resulting
// state is asserted, not the sequence of calls.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { NODE_LABEL, VE_FINALIZER, VE_RESOURCE, type VirtualEnvironment } from '../../../src/api/types.js';
import { silentLogger } from '../../../src/core/logger.js';
import { RestartBackoff } from '../../../src/node-agent/lifecycle.js';
import { VEReconciler } from '../../../src/node-agent/ve-reconciler.js';
import { FakeApi } from '../../helpers/fake-resource-client.js';
import { FakeRuntime } from '../../helpers/fake-runtime.js';

const ref = { ...VE_RESOURCE, namespaced: true };
const signal = new AbortController().signal;

function setup(node = 'n1', backoff?: RestartBackoff) {
  const api = new FakeApi();
  const client = api.client<VirtualEnvironment>(ref);
  const runtime = new FakeRuntime();
  const reconciler = new VEReconciler({ client, runtime, nodeName: node, subnet: '10.213.7.0/24', knownVEs: () => api.objects(ref) as VirtualEnvironment[], stopTimeoutMs: 100, resyncMs: 30_000, log: silentLogger, backoff });
  return { api, client, runtime, reconciler };
}

function aVE(name: string, spec: Partial<VirtualEnvironment['spec']> = {}, node: string | null = 'n1'): VirtualEnvironment {
  return {
    apiVersion: 'kubevz.io/v1alpha1',
    kind: 'VirtualEnvironment',
    metadata: { name, namespace: 'default', labels: node ? { [NODE_LABEL]: node } : {} },
    spec: { template: 'busybox', ...spec },
  };
}

test('a Running VE is created on the host, gets the finalizer and a Ready status', async () => {
  const { client, runtime, reconciler } = setup();
  const created = await client.create(aVE('a', { network: { addresses: ['10.213.7.20/24'] }, resources: { processes: 50 } }));
  const res = await reconciler.reconcile('default/a', signal);
  assert.equal(res.requeueAfterMs, 30_000);
  const ve = (await client.get('a', 'default'))!;
  assert.deepEqual(ve.metadata.finalizers, [VE_FINALIZER]);
  assert.equal(ve.status?.phase, 'Running');
  assert.equal(ve.status?.nodeName, 'n1');
  assert.deepEqual(ve.status?.addresses, ['10.213.7.20']);
  assert.equal(ve.status?.observedGeneration, ve.metadata.generation);
  const ready = ve.status?.conditions?.find((c) => c.type === 'Ready');
  assert.equal(ready?.status, 'True');
  assert.equal(ready?.observedGeneration, ve.metadata.generation);
  const host = await runtime.inspect(created.metadata.uid!);
  assert.equal(host.state, 'running');
  assert.equal(host.config?.limits.pids, 50);
  assert.equal(ve.status?.initPid, host.pid);
});

test('reconciling again changes nothing and writes nothing', async () => {
  const { api, client, reconciler } = setup();
  await client.create(aVE('a'));
  await reconciler.reconcile('default/a', signal);
  const writes = api.writes.length;
  await reconciler.reconcile('default/a', signal);
  assert.equal(api.writes.length, writes);
});

test('a VE without addresses gets a free one from the node subnet, and keeps it', async () => {
  const { client, reconciler } = setup();
  await client.create(aVE('taken', { network: { addresses: ['10.213.7.10/24'] } }));
  await client.create(aVE('b'));
  await reconciler.reconcile('default/taken', signal);
  await reconciler.reconcile('default/b', signal);
  const b = (await client.get('b', 'default'))!;
  assert.deepEqual(b.status?.addresses, ['10.213.7.11']);
  await reconciler.reconcile('default/b', signal);
  assert.deepEqual((await client.get('b', 'default'))!.status?.addresses, ['10.213.7.11']);
});

test('a limit change is applied live: same init', async () => {
  const { client, runtime, reconciler } = setup();
  const ve = await client.create(aVE('a', { resources: { memory: { limit: '64Mi' } } }));
  await reconciler.reconcile('default/a', signal);
  const pid = (await runtime.inspect(ve.metadata.uid!)).pid;
  await client.mergePatch('a', 'default', { spec: { resources: { memory: { limit: '128Mi' } } } });
  await reconciler.reconcile('default/a', signal);
  const host = await runtime.inspect(ve.metadata.uid!);
  assert.equal(host.pid, pid);
  assert.equal(host.config?.limits.memoryBytes, 128 * 2 ** 20);
  const after = (await client.get('a', 'default'))!;
  assert.equal(after.status?.observedGeneration, after.metadata.generation);
});

test('a dead init is brought back after a back-off, with reason CrashLoopBackOff while it waits', async () => {
  let now = 0;
  const { client, runtime, reconciler } = setup('n1', new RestartBackoff({ now: () => now }));
  const ve = await client.create(aVE('a'));
  await reconciler.reconcile('default/a', signal);
  runtime.kill(ve.metadata.uid!);
  assert.deepEqual(await reconciler.reconcile('default/a', signal), { requeueAfterMs: 1000 });
  assert.equal((await runtime.inspect(ve.metadata.uid!)).state, 'stopped');
  const ready = (await client.get('a', 'default'))?.status?.conditions?.find((c) => c.type === 'Ready');
  assert.equal(ready?.reason, 'CrashLoopBackOff');
  now += 1000;
  await reconciler.reconcile('default/a', signal);
  assert.equal((await runtime.inspect(ve.metadata.uid!)).state, 'running');
  runtime.kill(ve.metadata.uid!);
  assert.deepEqual(await reconciler.reconcile('default/a', signal), { requeueAfterMs: 2000 }, 'the second crash in a row waits twice as long');
});

test('restartPolicy Never leaves a crashed VE Stopped until its spec changes', async () => {
  const { client, runtime, reconciler } = setup();
  const ve = await client.create(aVE('a', { restartPolicy: 'Never' }));
  await reconciler.reconcile('default/a', signal);
  runtime.kill(ve.metadata.uid!);
  await reconciler.reconcile('default/a', signal);
  await reconciler.reconcile('default/a', signal);
  let got = (await client.get('a', 'default'))!;
  assert.equal(got.status?.phase, 'Stopped');
  assert.equal(got.status?.conditions?.find((c) => c.type === 'Ready')?.reason, 'Exited');
  assert.equal((await runtime.inspect(ve.metadata.uid!)).state, 'stopped');
  await client.mergePatch('a', 'default', { spec: { hostname: 'again' } });
  await reconciler.reconcile('default/a', signal);
  got = (await client.get('a', 'default'))!;
  assert.equal((await runtime.inspect(ve.metadata.uid!)).state, 'running');
  assert.equal(got.status?.phase, 'Running');
});

test('an address another VE of the node holds is refused with a condition naming that VE', async () => {
  const { client, runtime, reconciler } = setup();
  await client.create(aVE('a', { network: { addresses: ['10.213.7.40/24'] } }));
  await reconciler.reconcile('default/a', signal);
  const b = await client.create(aVE('b', { network: { addresses: ['10.213.7.41/24', '10.213.7.40/24'] } }));
  await reconciler.reconcile('default/b', signal);
  const got = (await client.get('b', 'default'))!;
  const ready = got.status?.conditions?.find((c) => c.type === 'Ready');
  assert.equal(ready?.reason, 'AddressConflict');
  assert.match(ready?.message ?? '', /10\.213\.7\.40\/24 is already used by VE default\/a/);
  assert.equal((await runtime.inspect(b.metadata.uid!)).state, 'absent');
});

test('powerState Stopped stops the VE and reports it', async () => {
  const { client, runtime, reconciler } = setup();
  const ve = await client.create(aVE('a'));
  await reconciler.reconcile('default/a', signal);
  await client.mergePatch('a', 'default', { spec: { powerState: 'Stopped' } });
  await reconciler.reconcile('default/a', signal);
  const after = (await client.get('a', 'default'))!;
  assert.equal(after.status?.phase, 'Stopped');
  assert.equal(after.status?.initPid, undefined);
  assert.equal(after.status?.conditions?.find((c) => c.type === 'Ready')?.status, 'False');
  assert.equal((await runtime.inspect(ve.metadata.uid!)).state, 'stopped');
});

test('delete removes the VE from the host, then the finalizer, and the object goes away', async () => {
  const { client, runtime, reconciler } = setup();
  const ve = await client.create(aVE('a'));
  await reconciler.reconcile('default/a', signal);
  await client.delete('a', 'default');
  assert.ok((await client.get('a', 'default'))?.metadata.deletionTimestamp, 'the finalizer holds the object');
  await reconciler.reconcile('default/a', signal);
  assert.equal(await client.get('a', 'default'), undefined);
  assert.equal((await runtime.inspect(ve.metadata.uid!)).state, 'absent');
});

test('an invalid quantity fails terminally with the field in status, and the running VE keeps its last good limits', async () => {
  const { client, runtime, reconciler } = setup();
  const ve = await client.create(aVE('a', { resources: { memory: { limit: '64Mi' } } }));
  await reconciler.reconcile('default/a', signal);
  await client.mergePatch('a', 'default', { spec: { resources: { memory: { limit: 'plenty' } } } });
  await assert.rejects(reconciler.reconcile('default/a', signal), (err: Error & { code?: string }) => err.code === 'Terminal');
  const after = (await client.get('a', 'default'))!;
  const ready = after.status?.conditions?.find((c) => c.type === 'Ready');
  assert.equal(ready?.status, 'False');
  assert.match(ready?.message ?? '', /spec\.resources\.memory\.limit/);
  const host = await runtime.inspect(ve.metadata.uid!);
  assert.equal(host.state, 'running', 'a bad update never takes the VE down');
  assert.equal(host.config?.limits.memoryBytes, 64 * 2 ** 20);
});

test('a VE bound to another node is not touched; leftovers of it here are removed', async () => {
  const { client, runtime, reconciler } = setup('n1');
  const ve = await client.create(aVE('a', {}, 'n1'));
  await reconciler.reconcile('default/a', signal);
  await client.mergePatch('a', 'default', { metadata: { labels: { [NODE_LABEL]: 'n2' } } });
  await reconciler.reconcile('default/a', signal);
  assert.equal((await runtime.inspect(ve.metadata.uid!)).state, 'absent');
  const other = await client.create(aVE('b', {}, null));
  await reconciler.reconcile('default/b', signal);
  assert.equal((await runtime.inspect(other.metadata.uid!)).state, 'absent', 'unbound VEs wait for the scheduler');
});

test('a failed start is reported and retried', async () => {
  const { client, runtime, reconciler } = setup();
  await client.create(aVE('a'));
  runtime.failNextStart = new Error('runc create failed: boom');
  await assert.rejects(reconciler.reconcile('default/a', signal), /boom/);
  const failed = (await client.get('a', 'default'))!;
  assert.equal(failed.status?.conditions?.find((c) => c.type === 'Ready')?.reason, 'ReconcileError');
  await reconciler.reconcile('default/a', signal);
  assert.equal((await client.get('a', 'default'))!.status?.phase, 'Running');
});

test('the echo of its own last write is known as such; any later change is not', async () => {
  const { client, reconciler } = setup();
  await client.create(aVE('echo', { powerState: 'Stopped' }));
  await reconciler.reconcile('default/echo', signal);
  const written = (await client.get('echo', 'default'))!;
  assert.equal(written.status?.phase, 'Stopped');
  assert.equal(reconciler.isOwnWrite(written), true);
  // Someone else's change (a new spec) has another resourceVersion: it wakes the reconciler.
  const changed = await client.mergePatch('echo', 'default', { spec: { powerState: 'Running' } });
  assert.equal(reconciler.isOwnWrite(changed), false);
  assert.equal(reconciler.isOwnWrite(aVE('never-written')), false);
});

test('a VE removed by its finalizer here is not searched for on the host again', async () => {
  const { client, runtime, reconciler } = setup();
  const created = await client.create(aVE('gone', { powerState: 'Stopped' }));
  await reconciler.reconcile('default/gone', signal);
  await client.delete('gone', 'default');
  await reconciler.reconcile('default/gone', signal); // finalizer cleanup, then the object goes
  assert.equal(await client.get('gone', 'default'), undefined);
  assert.equal((await runtime.inspect(created.metadata.uid!)).state, 'absent');
  let listed = 0;
  const list = runtime.list.bind(runtime);
  runtime.list = async () => ((listed++), list());
  await reconciler.reconcile('default/gone', signal); // the DELETED event
  assert.equal(listed, 0);
  // An unknown VE that is gone is still searched for (a leftover after a crash).
  await reconciler.reconcile('default/other', signal);
  assert.equal(listed, 1);
});

test('VEs reconciled at once get distinct addresses, though none sees the others\' status yet', async () => {
  const api = new FakeApi();
  const client = api.client<VirtualEnvironment>(ref);
  const runtime = new FakeRuntime();
  // The informer cache as it is during a burst: none of the new VEs has a status there yet.
  const reconciler = new VEReconciler({ client, runtime, nodeName: 'n1', subnet: '10.213.7.0/24', knownVEs: () => [], stopTimeoutMs: 100, resyncMs: 30_000, log: silentLogger });
  for (let i = 0; i < 5; i++) await client.create(aVE(`burst${i}`, { powerState: 'Stopped' }));
  await Promise.all(Array.from({ length: 5 }, (_, i) => reconciler.reconcile(`default/burst${i}`, signal)));
  const addresses = await Promise.all(Array.from({ length: 5 }, async (_, i) => (await client.get(`burst${i}`, 'default'))!.status?.addresses?.[0]));
  assert.equal(new Set(addresses).size, 5, addresses.join(' '));
});
