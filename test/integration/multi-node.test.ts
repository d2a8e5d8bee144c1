// Three node agents (fake runtimes, so no root) and the controller against the real embedded
// API server on a free port: VENodes register, VEs spread by capacity, an oversized VE is
// Scheduled=False with the reason, and an agent that stops heartbeating leaves its node
// Ready=Unknown and its VEs Ready=Unknown — still bound where they were. Events are written.

import * as k8s from '@kubernetes/client-node';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { NODE_LABEL, VE_RESOURCE, VENODE_RESOURCE, type VENode, type VirtualEnvironment } from '../../src/api/types.js';
import { startApiServer, type RunningApiServer } from '../../src/apiserver/index.js';
import { Controller } from '../../src/controller/index.js';
import { findCondition } from '../../src/core/conditions.js';
import { KubeEventRecorder, kubeEventsApi } from '../../src/core/events.js';
import { loadKubeConfig, makeResourceClient } from '../../src/core/kube-client.js';
import { silentLogger } from '../../src/core/logger.js';
import type { ResourceClient } from '../../src/core/resource-client.js';
import { NodeAgent, type HostProbe } from '../../src/node-agent/index.js';
import { FakeRuntime } from '../helpers/fake-runtime.js';
import { waitFor } from '../helpers/kvz-up.js';

const GiB = 2 ** 30;

function probe(memoryGi: number): HostProbe {
  return {
    capacity: () => ({ cpuMilli: 4000, memoryBytes: memoryGi * GiB, diskBytes: 100 * GiB }),
    features: async () => ({ cgroupVersion: 'v1', criu: false, onlineDiskGrow: false, secondLevelQuota: false, userNamespaces: true }),
    info: () => ({ kernelVersion: 'test', hostname: 'test' }),
  };
}

describe('three nodes against the embedded API server', () => {
  const stateDir = mkdtempSync(join(tmpdir(), 'kvz-multinode-'));
  let server: RunningApiServer;
  let kc: k8s.KubeConfig;
  let ves: ResourceClient<VirtualEnvironment>;
  let nodes: ResourceClient<VENode>;
  let controller: Controller;
  const agents = new Map<string, NodeAgent>();
  const ns = `mn-${process.pid}`;

  before(async () => {
    server = await startApiServer({ stateDir, port: 0, log: silentLogger });
    kc = loadKubeConfig(server.kubeconfigPath);
    ves = makeResourceClient<VirtualEnvironment>(kc, { ...VE_RESOURCE, namespaced: true }, silentLogger);
    nodes = makeResourceClient<VENode>(kc, { ...VENODE_RESOURCE, namespaced: false }, silentLogger);
    const events = (component: string, host: string) => new KubeEventRecorder({ api: kubeEventsApi(kc), component, host, log: silentLogger });
    controller = new Controller({ client: ves, nodes, events: events('kubevz-controller', 'test'), log: silentLogger, nodeGraceMs: 1500, retryMs: 1000 });
    await controller.start();
    for (const [i, [name, mem]] of ([['node-a', 8], ['node-b', 4], ['node-c', 2]] as const).entries()) {
      const agent = new NodeAgent({
        nodeName: name, client: ves, runtime: new FakeRuntime(), subnet: `10.250.${i}.0/24`, log: silentLogger, events: events('kubevz-node-agent', name),
        registration: { nodes, probe: probe(mem), reserved: { memoryBytes: 0, diskBytes: 0 }, heartbeatMs: 200, labels: { zone: i === 2 ? 'edge' : 'core' } },
      });
      await agent.start();
      agents.set(name, agent);
    }
  });

  after(async () => {
    for (const a of agents.values()) await a.stop();
    await controller?.stop();
    await server?.close();
    rmSync(stateDir, { recursive: true, force: true });
  });

  const ve = (name: string, spec: Partial<VirtualEnvironment['spec']>): VirtualEnvironment => ({
    apiVersion: 'kubevz.io/v1alpha1', kind: 'VirtualEnvironment', metadata: { name, namespace: ns }, spec: { template: 'busybox', ...spec },
  });

  it('each agent registers a Ready VENode with capacity and features', async () => {
    const list = await nodes.list();
    assert.deepEqual(list.map((n) => n.metadata.name).sort(), ['node-a', 'node-b', 'node-c']);
    for (const n of list) {
      assert.equal(findCondition(n.status?.conditions, 'Ready')?.status, 'True');
      assert.equal(n.status?.features?.cgroupVersion, 'v1');
      assert.ok(n.status?.heartbeatTime);
    }
    assert.equal(list.find((n) => n.metadata.name === 'node-b')?.status?.allocatable?.memory, `${4 * 1024 * 1024}Ki`);
  });

  it('seven 1Gi VEs spread by capacity (8/4/2 Gi → 4/2/1) and all run', async () => {
    const t0 = Date.now();
    for (let i = 0; i < 7; i++) await ves.create(ve(`v${i}`, { resources: { memory: { limit: '1Gi' } } }));
    const all = await waitFor('7 VEs Ready', async () => {
      const l = await ves.list({ namespace: ns });
      return l.length === 7 && l.every((v) => findCondition(v.status?.conditions, 'Ready')?.status === 'True') && l;
    }, 20_000);
    const per = (n: string) => all.filter((v) => v.metadata.labels?.[NODE_LABEL] === n && v.status?.nodeName === n).length;
    assert.deepEqual([per('node-a'), per('node-b'), per('node-c')], [4, 2, 1]);
    process.stderr.write(`# 7 VEs scheduled and Ready on 3 nodes in ${Date.now() - t0} ms\n`);
    await waitFor('allocated written', async () => (await nodes.get('node-a'))?.status?.allocated?.ves === 4, 5000);
    assert.equal((await nodes.get('node-a'))?.status?.allocated?.memory, `${4 * 1024 * 1024}Ki`);
  });

  it('nodeSelector restricts placement to matching VENodes', async () => {
    await ves.create(ve('edge1', { nodeSelector: { zone: 'edge' } }));
    const v = await waitFor('edge1 bound', async () => {
      const x = await ves.get('edge1', ns);
      return x?.metadata.labels?.[NODE_LABEL] ? x : undefined;
    }, 10_000);
    assert.equal(v.metadata.labels?.[NODE_LABEL], 'node-c');
  });

  it('a VE no node has room for is Scheduled=False with the reasons, and is placed once a node can take it', async () => {
    await ves.create(ve('huge', { resources: { memory: { limit: '5Gi' } } }));
    const cond = await waitFor('Scheduled=False', async () => {
      const c = findCondition((await ves.get('huge', ns))?.status?.conditions, 'Scheduled');
      return c?.status === 'False' && c;
    }, 10_000);
    assert.match(cond.message, /^0\/3 nodes available: 3 insufficient memory/);
    // Free node-a: 4 VEs of 1Gi go, 5Gi then fits there (retried on the node's allocation change).
    for (let i = 0; i < 7; i++) {
      const v = await ves.get(`v${i}`, ns);
      if (v?.metadata.labels?.[NODE_LABEL] === 'node-a') await ves.delete(`v${i}`, ns);
    }
    const placed = await waitFor('huge placed', async () => (await ves.get('huge', ns))?.metadata.labels?.[NODE_LABEL], 15_000);
    assert.equal(placed, 'node-a');
  });

  it('an agent that stops heartbeating: node Ready=Unknown, its VEs Ready=Unknown and not moved', async () => {
    const onC = (await ves.list({ namespace: ns })).filter((v) => v.metadata.labels?.[NODE_LABEL] === 'node-c').map((v) => v.metadata.name);
    assert.ok(onC.length >= 1);
    const t0 = Date.now();
    await agents.get('node-c')!.stop();
    agents.delete('node-c');
    const node = await waitFor('node-c Ready=Unknown', async () => {
      const n = await nodes.get('node-c');
      return findCondition(n?.status?.conditions, 'Ready')?.status === 'Unknown' && n;
    }, 10_000);
    process.stderr.write(`# node-c NotReady ${Date.now() - t0} ms after its agent stopped (grace 1500 ms)\n`);
    assert.equal(findCondition(node.status?.conditions, 'Ready')?.reason, 'NodeStatusUnknown');
    for (const name of onC) {
      const v = await waitFor(`${name} Ready=Unknown`, async () => {
        const x = await ves.get(name, ns);
        return findCondition(x?.status?.conditions, 'Ready')?.status === 'Unknown' && x;
      }, 10_000);
      assert.equal(v.metadata.labels?.[NODE_LABEL], 'node-c');
      assert.equal(v.status?.nodeName, 'node-c');
    }
    // A new VE is not placed on the silent node.
    await ves.create(ve('after', { nodeSelector: { zone: 'edge' } }));
    const c = await waitFor('after unschedulable', async () => {
      const x = findCondition((await ves.get('after', ns))?.status?.conditions, 'Scheduled');
      return x?.status === 'False' && x;
    }, 10_000);
    assert.match(c.message, /1 NotReady/);
  });

  it('Events were recorded for the VEs (Scheduled by the controller, Started by the agent)', async () => {
    const core = kc.makeApiClient(k8s.CoreV1Api);
    const list = await core.listNamespacedEvent({ namespace: ns, fieldSelector: 'involvedObject.name=v0' });
    const reasons = list.items.map((e) => e.reason);
    assert.ok(reasons.includes('Scheduled'), reasons.join(','));
    assert.ok(reasons.includes('Started') || reasons.includes('Created'), reasons.join(','));
  });
});
