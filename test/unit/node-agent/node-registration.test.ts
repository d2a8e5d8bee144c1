// VENode registration and heartbeat on FakeApi with a fake host probe: capacity and
// allocatable, features, labels, Ready=True, heartbeats, and registering again after a delete.
// The published features are the runtime's own (FakeRuntime.features), reasons included.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { NODE_LABEL, VENODE_RESOURCE, type VENode } from '../../../src/api/types.js';
import { findCondition } from '../../../src/core/conditions.js';
import { silentLogger } from '../../../src/core/logger.js';
import { NodeRegistration, hostProbe, publishedFeatures, type HostProbe } from '../../../src/node-agent/node-registration.js';
import { FakeApi } from '../../helpers/fake-resource-client.js';
import { FakeRuntime } from '../../helpers/fake-runtime.js';

const ref = { ...VENODE_RESOURCE, namespaced: false };

const probe: HostProbe = {
  capacity: () => ({ cpuMilli: 4000, memoryBytes: 8 * 2 ** 30, diskBytes: 100 * 2 ** 30 }),
  features: async () => ({ cgroupVersion: 'v1', criu: true, criuVersion: '4.2.1', onlineDiskGrow: true, secondLevelQuota: false, userNamespaces: true }),
  info: () => ({ kernelVersion: '6.1.0-test', hostname: 'host-a' }),
};

function setup() {
  const api = new FakeApi();
  const nodes = api.client<VENode>(ref);
  let now = Date.parse('2026-01-01T12:00:00Z');
  const reg = new NodeRegistration({ nodes, nodeName: 'n1', probe, labels: { zone: 'a' }, nodeInfo: { bridge: 'br0', subnet: '10.1.0.0/24' }, log: silentLogger, now: () => new Date(now), heartbeatMs: 60_000 });
  return { api, nodes, reg, advance: (ms: number) => (now += ms) };
}

test('register: capacity, allocatable (minus the host reserve), features, labels, Ready=True', async () => {
  const { nodes, reg } = setup();
  await reg.register();
  const n = (await nodes.get('n1'))!;
  assert.deepEqual(n.metadata.labels, { [NODE_LABEL]: 'n1', zone: 'a' });
  assert.deepEqual(n.status?.capacity, { cpu: '4', memory: `${8 * 1024 * 1024}Ki`, disk: `${100 * 1024 * 1024}Ki` });
  // memory reserve min(1Gi, 10%) = 819.2Mi; disk 10%
  assert.equal(n.status?.allocatable?.memory, `${Math.floor((8 * 2 ** 30 - Math.floor(8 * 2 ** 30 * 0.1)) / 1024)}Ki`);
  assert.equal(n.status?.allocatable?.cpu, '4');
  assert.equal(n.status?.features?.criu, true);
  assert.equal(n.status?.features?.cgroupVersion, 'v1');
  assert.deepEqual(n.status?.nodeInfo, { kernelVersion: '6.1.0-test', hostname: 'host-a', bridge: 'br0', subnet: '10.1.0.0/24' });
  assert.equal(n.status?.heartbeatTime, '2026-01-01T12:00:00.000Z');
  const ready = findCondition(n.status?.conditions, 'Ready');
  assert.equal(ready?.status, 'True');
  assert.equal(ready?.observedGeneration, n.metadata.generation);
});

test('heartbeat moves heartbeatTime; Ready is set back to True after the controller marked it Unknown', async () => {
  const { nodes, reg, advance } = setup();
  await reg.register();
  advance(10_000);
  await reg.heartbeat();
  let n = (await nodes.get('n1'))!;
  assert.equal(n.status?.heartbeatTime, '2026-01-01T12:00:10.000Z');
  await nodes.patchStatus('n1', undefined, { conditions: [{ type: 'Ready', status: 'Unknown', reason: 'NodeStatusUnknown', message: '', lastTransitionTime: '2026-01-01T12:00:05Z' }] });
  advance(10_000);
  await reg.heartbeat();
  n = (await nodes.get('n1'))!;
  assert.equal(findCondition(n.status?.conditions, 'Ready')?.status, 'True');
  assert.equal(findCondition(n.status?.conditions, 'Ready')?.lastTransitionTime, '2026-01-01T12:00:20Z');
});

test('a VENode deleted by hand is registered again on the next heartbeat', async () => {
  const { nodes, reg } = setup();
  await reg.register();
  await nodes.delete('n1');
  await reg.heartbeat();
  const n = await nodes.get('n1');
  assert.equal(n?.status?.capacity?.cpu, '4');
});

test('the VENode says what the runtime will do: unavailable quota and online grow, with the runtime\'s reasons', async () => {
  const runtime = new FakeRuntime();
  runtime.features = {
    diskOnlineGrow: { available: false, reason: 'online ext4 resize needs CAP_SYS_RESOURCE, which the node agent lacks' },
    diskQuotaUgid: { available: false, reason: 'kubevz cannot yet hand quota administration to the VE root' },
    userNamespace: { available: true, reason: 'kvz-idmap helper works' },
    checkpoint: { available: true, reason: 'CRIU 4.2.1 at /usr/local/sbin/criu' },
    lxcfs: { available: false, reason: 'lxcfs is not installed' },
  };
  // Tools on PATH do not matter: only the runtime's word does.
  const api = new FakeApi();
  const nodes = api.client<VENode>(ref);
  const withRuntime: HostProbe = { ...probe, features: async () => publishedFeatures(await runtime.nodeFeatures(), { cgroupVersion: 'v2', criuVersion: '4.2.1' }) };
  await new NodeRegistration({ nodes, nodeName: 'n2', probe: withRuntime, log: silentLogger }).register();
  const f = (await nodes.get('n2'))?.status?.features;
  assert.equal(f?.secondLevelQuota, false);
  assert.equal(f?.onlineDiskGrow, false);
  assert.equal(f?.reasons?.secondLevelQuota, 'kubevz cannot yet hand quota administration to the VE root');
  assert.equal(f?.reasons?.onlineDiskGrow, 'online ext4 resize needs CAP_SYS_RESOURCE, which the node agent lacks');
  assert.equal(f?.criu, true);
  assert.equal(f?.reasons?.criu, 'CRIU 4.2.1 at /usr/local/sbin/criu');
  assert.equal(f?.userNamespaces, true);
  assert.equal(f?.lxcfs, false);
  assert.equal(f?.reasons?.lxcfs, 'lxcfs is not installed');
  assert.equal(f?.cgroupVersion, 'v2');

  // Available when the runtime says so; a feature the runtime does not report is not pretended.
  runtime.features = { diskOnlineGrow: { available: true, reason: 'the node agent holds CAP_SYS_RESOURCE' } };
  const g = publishedFeatures(await runtime.nodeFeatures());
  assert.equal(g.onlineDiskGrow, true);
  assert.equal(g.reasons?.onlineDiskGrow, 'the node agent holds CAP_SYS_RESOURCE');
  assert.equal(g.secondLevelQuota, false);
  assert.match(g.reasons?.secondLevelQuota ?? '', /does not report diskQuotaUgid/);
  assert.equal(g.criu, false);
});

test('the real host probe publishes the runtime\'s features, whatever tools are on PATH', async () => {
  const runtime = new FakeRuntime();
  runtime.features = {
    diskOnlineGrow: { available: false, reason: 'no CAP_SYS_RESOURCE (test)' },
    diskQuotaUgid: { available: false, reason: 'not plumbed (test)' },
    checkpoint: { available: false, reason: 'no CRIU (test)' },
  };
  const f = await hostProbe('/tmp', runtime).features();
  assert.deepEqual([f.onlineDiskGrow, f.secondLevelQuota, f.criu], [false, false, false]);
  assert.equal(f.reasons?.secondLevelQuota, 'not plumbed (test)');
  assert.equal(f.reasons?.criu, 'no CRIU (test)', 'criu check is not run when the runtime cannot checkpoint anyway');
});

test('the real host probe reports plausible numbers for this machine', async () => {
  const p = hostProbe('/tmp', new FakeRuntime());
  const cap = p.capacity();
  assert.ok(cap.cpuMilli >= 1000 && cap.memoryBytes > 2 ** 26 && cap.diskBytes > 0, JSON.stringify(cap));
  const f = await p.features();
  assert.ok(f.cgroupVersion === 'v1' || f.cgroupVersion === 'v2');
  assert.equal(typeof f.criu, 'boolean');
});
