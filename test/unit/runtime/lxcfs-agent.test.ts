// The node agent and the runtime's node services (lxcfs), on fakes: the agent starts them before
// it registers, the VENode reports whether lxcfs serves, stopping the agent only stops the
// supervision (lxcfs keeps serving the VEs), and a runtime without node services is left alone.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { VE_RESOURCE, VENODE_RESOURCE, type VENode, type VirtualEnvironment } from '../../../src/api/types.js';
import { silentLogger } from '../../../src/core/logger.js';
import { NodeAgent, type HostProbe } from '../../../src/node-agent/index.js';
import type { NodeFeature } from '../../../src/runtime/index.js';
import { FakeApi } from '../../helpers/fake-resource-client.js';
import { FakeRuntime } from '../../helpers/fake-runtime.js';

const probe: HostProbe = {
  capacity: () => ({ cpuMilli: 2000, memoryBytes: 4 * 2 ** 30, diskBytes: 50 * 2 ** 30 }),
  features: async () => ({ cgroupVersion: 'v1', criu: true, userNamespaces: true }),
  info: () => ({ kernelVersion: 'test', hostname: 'test' }),
};

/** A fake runtime with node services that records what the agent asks of them. */
class ServicesRuntime extends FakeRuntime {
  readonly serviceCalls: string[] = [];
  constructor(private readonly lxcfs: NodeFeature) {
    super();
  }
  async startNodeServices(): Promise<void> {
    this.serviceCalls.push('start');
  }
  releaseNodeServices(): void {
    this.serviceCalls.push('release');
  }
  override async nodeFeatures(): Promise<Record<string, NodeFeature>> {
    // Asked before start would say "not started": the agent must start first.
    return { ...(await super.nodeFeatures()), lxcfs: this.serviceCalls.includes('start') ? this.lxcfs : { available: false, reason: 'not started' } };
  }
}

async function runAgent(runtime: FakeRuntime, nodeServices?: boolean): Promise<VENode | undefined> {
  const api = new FakeApi();
  const nodes = api.client<VENode>({ ...VENODE_RESOURCE, namespaced: false });
  const agent = new NodeAgent({
    nodeName: 'n1', client: api.client<VirtualEnvironment>({ ...VE_RESOURCE, namespaced: true }), runtime, subnet: '10.250.9.0/24', log: silentLogger,
    registration: { nodes, probe, heartbeatMs: 60_000 }, orphanScanMs: 60_000, ...(nodeServices === undefined ? {} : { nodeServices }),
  });
  await agent.start();
  await agent.stop();
  return nodes.get('n1');
}

test('the agent starts lxcfs before registering, reports it, and only releases it on stop', async () => {
  const rt = new ServicesRuntime({ available: true, reason: 'lxcfs (pid 42) serves VE /proc files' });
  const node = await runAgent(rt);
  assert.deepEqual(rt.serviceCalls, ['start', 'release']);
  assert.equal(node?.status?.features?.lxcfs, true);
  assert.equal(node?.status?.features?.criu, true, 'the host probe\'s features stay');
});

test('lxcfs that could not start is reported as unavailable; the agent runs anyway', async () => {
  const rt = new ServicesRuntime({ available: false, reason: 'lxcfs is not installed' });
  const node = await runAgent(rt);
  assert.equal(node?.status?.features?.lxcfs, false);
});

test('nodeServices: false leaves lxcfs alone; a runtime without node services reports nothing', async () => {
  const rt = new ServicesRuntime({ available: true, reason: 'x' });
  await runAgent(rt, false);
  assert.deepEqual(rt.serviceCalls, [], 'neither started nor released');
  const plain = await runAgent(new FakeRuntime());
  assert.equal(plain?.status?.features?.lxcfs, undefined);
});
