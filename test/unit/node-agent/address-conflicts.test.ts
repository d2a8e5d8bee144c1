// Address conflicts and allocation across nodes: two node agents (one VEReconciler each, own
// fake runtime) over one fake API, their nodes sharing one VE subnet as in
// `hack/multinode.sh up-shared`. Each reconciler's knownVEs is its node's VEs only (as the
// agent's label-filtered informer); clusterVEs is every VE.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MIGRATION_ANNOTATION, NODE_LABEL, VE_RESOURCE, type VirtualEnvironment } from '../../../src/api/types.js';
import { silentLogger } from '../../../src/core/logger.js';
import { NodeAgent } from '../../../src/node-agent/agent.js';
import { VEReconciler } from '../../../src/node-agent/ve-reconciler.js';
import { FakeApi } from '../../helpers/fake-resource-client.js';
import { FakeRuntime } from '../../helpers/fake-runtime.js';
import { until } from '../../helpers/until.js';

const ref = { ...VE_RESOURCE, namespaced: true };
const signal = new AbortController().signal;
const SUBNET = '10.213.9.0/24';

function cluster() {
  // One second per write: creationTimestamp (second resolution) orders the VEs as created.
  let t = Date.parse('2026-01-01T00:00:00Z');
  const api = new FakeApi({ now: () => new Date((t += 1000)) });
  const client = api.client<VirtualEnvironment>(ref);
  const all = () => api.objects(ref) as VirtualEnvironment[];
  const node = (name: string) => {
    const runtime = new FakeRuntime();
    const reconciler = new VEReconciler({
      client, runtime, nodeName: name, subnet: SUBNET,
      knownVEs: () => all().filter((v) => v.metadata.labels?.[NODE_LABEL] === name),
      clusterVEs: all,
      stopTimeoutMs: 100, resyncMs: 30_000, log: silentLogger,
    });
    return { runtime, reconciler };
  };
  return { api, client, n1: node('n1'), n2: node('n2') };
}

function aVE(name: string, node: string, addresses?: string[]): VirtualEnvironment {
  return {
    apiVersion: 'kubevz.io/v1alpha1',
    kind: 'VirtualEnvironment',
    metadata: { name, namespace: 'default', labels: { [NODE_LABEL]: node } },
    spec: { template: 'busybox', ...(addresses ? { network: { addresses } } : {}) },
  };
}

const ready = (ve: VirtualEnvironment | undefined) => ve?.status?.conditions?.find((c) => c.type === 'Ready');

test('a declared address another node\'s VE holds is refused naming that VE and node; the holder is unaffected', async () => {
  const { client, n1, n2 } = cluster();
  const a = await client.create(aVE('a', 'n1', ['10.213.9.40/24']));
  await n1.reconciler.reconcile('default/a', signal);
  const b = await client.create(aVE('b', 'n2', ['10.213.9.41/24', '10.213.9.40/24']));
  assert.deepEqual(await n2.reconciler.reconcile('default/b', signal), { requeueAfterMs: 15_000 }, 'looked at again later');
  const gotB = await client.get('b', 'default');
  assert.equal(ready(gotB)?.reason, 'AddressConflict');
  assert.match(ready(gotB)?.message ?? '', /address 10\.213\.9\.40\/24 is already used by VE default\/a on node n1/);
  assert.equal(gotB?.status?.phase, 'Pending');
  assert.deepEqual(gotB?.status?.addresses ?? [], [], 'status claims no address the VE does not have');
  assert.equal((await n2.runtime.inspect(b.metadata.uid!)).state, 'absent');

  await n1.reconciler.reconcile('default/a', signal);
  const gotA = await client.get('a', 'default');
  assert.equal(ready(gotA)?.status, 'True');
  assert.equal((await n1.runtime.inspect(a.metadata.uid!)).state, 'running');
});

test('of two VEs declaring one address on two nodes, none running yet, the older one wins', async () => {
  const { client, n1, n2 } = cluster();
  const a = await client.create(aVE('a', 'n2', ['10.213.9.50/24']));
  const b = await client.create(aVE('b', 'n1', ['10.213.9.50/24']));
  // The newer one is looked at first: it still loses to the older declaration.
  await n1.reconciler.reconcile('default/b', signal);
  await n2.reconciler.reconcile('default/a', signal);
  assert.equal((await n1.runtime.inspect(b.metadata.uid!)).state, 'absent');
  assert.match(ready(await client.get('b', 'default'))?.message ?? '', /default\/a on node n2/);
  assert.equal((await n2.runtime.inspect(a.metadata.uid!)).state, 'running');
});

test('an address freed by a deleted VE becomes usable on another node', async () => {
  const { client, n1, n2 } = cluster();
  const a = await client.create(aVE('a', 'n1', ['10.213.9.60/24']));
  await n1.reconciler.reconcile('default/a', signal);
  const b = await client.create(aVE('b', 'n2', ['10.213.9.60/24']));
  await n2.reconciler.reconcile('default/b', signal);
  assert.equal(ready(await client.get('b', 'default'))?.reason, 'AddressConflict');

  await client.delete('a', 'default');
  // Marked for deletion: it claims nothing any more, even before its finalizer ran.
  await n2.reconciler.reconcile('default/b', signal);
  assert.equal((await n2.runtime.inspect(b.metadata.uid!)).state, 'running');
  await n1.reconciler.reconcile('default/a', signal);
  assert.equal(await client.get('a', 'default'), undefined);
  assert.equal((await n1.runtime.inspect(a.metadata.uid!)).state, 'absent');
  const gotB = await client.get('b', 'default');
  assert.equal(ready(gotB)?.status, 'True');
  assert.deepEqual(gotB?.status?.addresses, ['10.213.9.60']);
});

test('a running VE whose spec asks for an address another VE holds keeps running with its own', async () => {
  const { client, n1, n2 } = cluster();
  await client.create(aVE('a', 'n1', ['10.213.9.70/24']));
  await n1.reconciler.reconcile('default/a', signal);
  const b = await client.create(aVE('b', 'n2', ['10.213.9.71/24']));
  await n2.reconciler.reconcile('default/b', signal);
  const pid = (await n2.runtime.inspect(b.metadata.uid!)).pid;
  await client.mergePatch('b', 'default', { spec: { network: { addresses: ['10.213.9.70/24'] } } });
  await n2.reconciler.reconcile('default/b', signal);
  const host = await n2.runtime.inspect(b.metadata.uid!);
  assert.equal(host.state, 'running', 'never stopped for an address it cannot have');
  assert.equal(host.pid, pid);
  assert.deepEqual(host.config?.addresses, ['10.213.9.71/24']);
  const got = await client.get('b', 'default');
  assert.equal(got?.status?.phase, 'Running');
  assert.equal(ready(got)?.reason, 'AddressConflict');
  assert.match(ready(got)?.message ?? '', /10\.213\.9\.70\/24 is already used by VE default\/a on node n1; the VE keeps running with 10\.213\.9\.71\/24/);
  // And the holder, though younger claims exist, is never refused its own address.
  await n1.reconciler.reconcile('default/a', signal);
  assert.equal(ready(await client.get('a', 'default'))?.status, 'True');
});

test('a VE in live migration (one uid, a copy on each node) never conflicts with itself', async () => {
  const { client, n1, n2 } = cluster();
  const a = await client.create(aVE('a', 'n1', ['10.213.9.80/24']));
  await n1.reconciler.reconcile('default/a', signal);
  // Mid-migration both agents leave the VE alone; a newcomer asking for its address is refused.
  await client.mergePatch('a', 'default', { metadata: { annotations: { [MIGRATION_ANNOTATION]: 'default/m1' } } });
  const c = await client.create(aVE('c', 'n2', ['10.213.9.80/24']));
  await n2.reconciler.reconcile('default/c', signal);
  assert.match(ready(await client.get('c', 'default'))?.message ?? '', /default\/a on node n1/);
  assert.equal((await n2.runtime.inspect(c.metadata.uid!)).state, 'absent');
  // The migration restored a copy on n2 (its flows are not part of this test) and rebound the VE.
  const config = (await n1.runtime.inspect(a.metadata.uid!)).config!;
  await n2.runtime.ensureTemplate('busybox');
  await n2.runtime.ensureRunning(config);
  await client.jsonPatch('a', 'default', [{ op: 'remove', path: '/metadata/annotations' }]);
  await client.mergePatch('a', 'default', { metadata: { labels: { [NODE_LABEL]: 'n2' } } });
  // The source's status (Running, the address held, node n1) is still the VE's own: no conflict.
  assert.equal((await client.get('a', 'default'))?.status?.nodeName, 'n1');
  await n2.reconciler.reconcile('default/a', signal);
  const got = await client.get('a', 'default');
  assert.equal(ready(got)?.status, 'True', ready(got)?.message);
  assert.equal(got?.status?.nodeName, 'n2');
  assert.equal((await n2.runtime.inspect(a.metadata.uid!)).state, 'running');
  assert.equal(ready(await client.get('c', 'default'))?.reason, 'AddressConflict');
});

test('pool allocation skips addresses of VEs on other nodes of the shared subnet', async () => {
  const { client, n1, n2 } = cluster();
  const a = await client.create(aVE('a', 'n1'));
  await n1.reconciler.reconcile('default/a', signal);
  assert.deepEqual((await client.get('a', 'default'))?.status?.addresses, ['10.213.9.10']);
  const d = await client.create(aVE('d', 'n1', ['10.213.9.11/24']));
  await n1.reconciler.reconcile('default/d', signal);
  const b = await client.create(aVE('b', 'n2'));
  await n2.reconciler.reconcile('default/b', signal);
  assert.deepEqual((await n2.runtime.inspect(b.metadata.uid!)).config?.addresses, ['10.213.9.12/24'], 'neither n1\'s allocated nor its declared address');
  assert.equal(ready(await client.get('b', 'default'))?.status, 'True');
  assert.equal((await n1.runtime.inspect(a.metadata.uid!)).state, 'running');
  assert.equal((await n1.runtime.inspect(d.metadata.uid!)).state, 'running');
});

test('a pool address two nodes picked at once goes to one VE; the other picks again', async () => {
  const { api, client, n1, n2 } = cluster();
  // Each agent allocated before it saw the other's choice: both statuses say .10.
  const a = await client.create(aVE('a', 'n1'));
  const b = await client.create(aVE('b', 'n2'));
  await client.patchStatus('a', 'default', { phase: 'Creating', addresses: ['10.213.9.10'] });
  await client.patchStatus('b', 'default', { phase: 'Creating', addresses: ['10.213.9.10'] });
  await n2.reconciler.reconcile('default/b', signal);
  await n1.reconciler.reconcile('default/a', signal);
  assert.deepEqual((await n1.runtime.inspect(a.metadata.uid!)).config?.addresses, ['10.213.9.10/24'], 'the older keeps it');
  assert.deepEqual((await n2.runtime.inspect(b.metadata.uid!)).config?.addresses, ['10.213.9.11/24']);
  assert.equal(ready(await client.get('b', 'default'))?.status, 'True');
  assert.equal(api.objects(ref).length, 2);
});

test('without clusterVEs the check stays within the node (knownVEs)', async () => {
  const api = new FakeApi();
  const client = api.client<VirtualEnvironment>(ref);
  const runtime = new FakeRuntime();
  const reconciler = new VEReconciler({
    client, runtime, nodeName: 'n2', subnet: SUBNET, stopTimeoutMs: 100, resyncMs: 30_000, log: silentLogger,
    knownVEs: () => (api.objects(ref) as VirtualEnvironment[]).filter((v) => v.metadata.labels?.[NODE_LABEL] === 'n2'),
  });
  await client.create(aVE('a', 'n1', ['10.213.9.90/24']));
  const b = await client.create(aVE('b', 'n2', ['10.213.9.90/24']));
  await reconciler.reconcile('default/b', signal);
  assert.equal((await runtime.inspect(b.metadata.uid!)).state, 'running');
});


test('node agents check addresses against the VEs of every node (their informer sees only their own)', async (t) => {
  const api = new FakeApi();
  const client = api.client<VirtualEnvironment>(ref);
  const agents = ['n1', 'n2'].map((n) => new NodeAgent({
    nodeName: n, client, runtime: new FakeRuntime(), subnet: SUBNET, log: silentLogger, nodeServices: false,
    stopTimeoutMs: 100, resyncMs: 60_000, orphanScanMs: 60_000, beancounters: { intervalMs: 60_000 },
  }));
  t.after(async () => {
    for (const a of agents) await a.stop();
  });
  for (const a of agents) await a.start();
  await client.create(aVE('a', 'n1', ['10.213.9.100/24']));
  await until('a running', async () => (await client.get('a', 'default'))?.status?.phase === 'Running');
  await client.create(aVE('b', 'n2', ['10.213.9.100/24']));
  const refused = await until('b refused', async () => {
    const r = ready(await client.get('b', 'default'));
    return r?.reason === 'AddressConflict' && r;
  });
  assert.match(refused.message ?? '', /default\/a on node n1/);
  // A pool address on n2 skips n1's VEs too.
  await client.create(aVE('c', 'n1'));
  await until('c running', async () => (await client.get('c', 'default'))?.status?.phase === 'Running');
  await client.create(aVE('d', 'n2'));
  const d = await until('d running', async () => {
    const v = await client.get('d', 'default');
    return v?.status?.phase === 'Running' && v;
  });
  assert.deepEqual(d.status?.addresses, ['10.213.9.11']);
});
