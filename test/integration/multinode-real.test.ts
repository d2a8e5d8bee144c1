// Three real node agents (`kvz node-agent`, each in its own network namespace as its host, via
// test/helpers/multinode.ts) and `kvz controller` against one embedded API server. Root only.
// VEs are scheduled across the nodes and each is reachable (ping) from the root namespace at its
// address; an agent stopped → its VENode NotReady and its VEs Ready=Unknown, not moved; teardown
// leaves no netns, link, mount, cgroup or process behind.

import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { NODE_LABEL, VE_RESOURCE, VENODE_RESOURCE, type VENode, type VirtualEnvironment } from '../../src/api/types.js';
import { findCondition } from '../../src/core/conditions.js';
import { loadKubeConfig, makeResourceClient } from '../../src/core/kube-client.js';
import { silentLogger } from '../../src/core/logger.js';
import type { ResourceClient } from '../../src/core/resource-client.js';
import { cgroupPath, containerId } from '../../src/runtime/index.js';
import { sh, waitFor } from '../helpers/kvz-up.js';
import { startCluster, type Cluster } from '../helpers/multinode.js';
import { missingPrereqs } from '../helpers/prereq.js';

const prereqs = { root: true, binaries: ['runc', 'ip', 'ping', 'nsenter'] };
const missing = missingPrereqs(prereqs);

describe('three real node agents in their own network namespaces', { skip: missing.length && process.env.CI !== 'true' ? `needs ${missing.join(', ')}` : false }, () => {
  let cluster: Cluster;
  let ves: ResourceClient<VirtualEnvironment>;
  let nodes: ResourceClient<VENode>;
  const ns = 'mnreal';
  const seen = { uids: new Set<string>(), pids: new Set<number>() };
  let dir = '';
  let id = '';

  before(async () => {
    if (missing.length) throw new Error(`prerequisite missing under CI: needs ${missing.join(', ')}`);
    dir = mkdtempSync(join(tmpdir(), 'kvz-mnreal-'));
    const t0 = Date.now();
    cluster = await startCluster({ nodes: 3, dir, heartbeat: '1s', nodeGrace: '4s' });
    id = cluster.state.id;
    process.stderr.write(`# 3 node agents + controller + API server up in ${Date.now() - t0} ms (run ${id})\n`);
    const kc = loadKubeConfig(cluster.kubeconfig);
    ves = makeResourceClient<VirtualEnvironment>(kc, { ...VE_RESOURCE, namespaced: true }, silentLogger);
    nodes = makeResourceClient<VENode>(kc, { ...VENODE_RESOURCE, namespaced: false }, silentLogger);
  });

  after(async () => {
    await cluster?.stop();
  });

  it('every agent registers a Ready VENode', async () => {
    const names = cluster.state.nodes.map((n) => n.name).sort();
    await waitFor('3 Ready VENodes', async () => {
      const l = await nodes.list();
      return names.every((n) => findCondition(l.find((x) => x.metadata.name === n)?.status?.conditions, 'Ready')?.status === 'True');
    }, 20_000);
  });

  it('VEs are scheduled across the nodes and each is reachable from the root namespace at its address', async () => {
    const placed: VirtualEnvironment[] = [];
    for (let i = 0; i < 3; i++) {
      await ves.create({
        apiVersion: 'kubevz.io/v1alpha1', kind: 'VirtualEnvironment', metadata: { name: `web${i}`, namespace: ns },
        spec: { template: 'busybox', resources: { memory: { limit: '64Mi' }, processes: 64 } },
      });
      placed.push(await waitFor(`web${i} Running`, async () => {
        const v = await ves.get(`web${i}`, ns);
        return v?.status?.phase === 'Running' && v.status.addresses?.[0] && v.status.initPid ? v : undefined;
      }, 60_000));
    }
    const onNodes = new Set(placed.map((v) => v.metadata.labels?.[NODE_LABEL]));
    assert.equal(onNodes.size, 3, `expected one VE per node, got ${[...onNodes].join(',')}`);
    for (const v of placed) {
      seen.uids.add(v.metadata.uid!);
      seen.pids.add(v.status!.initPid!);
      const node = cluster.state.nodes.find((n) => n.name === v.metadata.labels?.[NODE_LABEL])!;
      const addr = v.status!.addresses![0]!.split('/')[0]!;
      assert.ok(addr.startsWith(node.subnet.replace(/0\/24$/, '')), `${v.metadata.name} ${addr} is in ${node.name}'s subnet ${node.subnet}`);
      const out = await sh('ping', ['-c', '1', '-W', '2', addr]);
      assert.match(out, /1 received/, `${v.metadata.name} at ${addr} on ${node.name}`);
    }
    // The agent runs in its node's netns: the VE's host veth is there, not in the root namespace.
    const uid = placed[0]!.metadata.uid!;
    const node = cluster.state.nodes.find((n) => n.name === placed[0]!.metadata.labels?.[NODE_LABEL])!;
    const inNode = await sh('ip', ['-n', node.netns, '-br', 'link']);
    assert.match(inNode, /kvzbr0/);
    assert.ok(existsSync(`/sys/fs/cgroup/pids${cgroupPath(uid)}`));
    // The pre-made node bridge was attached to as it is: not tagged as kubevz's own.
    assert.doesNotMatch(await sh('ip', ['-n', node.netns, '-d', 'link', 'show', 'kvzbr0']), /alias kubevz-managed/);
  });

  it('an agent stopped: its VENode goes NotReady and its VEs Ready=Unknown, still bound there', async () => {
    const victim = cluster.state.nodes[2]!;
    const mine = (await ves.list({ namespace: ns })).filter((v) => v.metadata.labels?.[NODE_LABEL] === victim.name);
    assert.equal(mine.length, 1);
    await cluster.stopAgent(victim.name);
    await waitFor(`${victim.name} not Ready`, async () => {
      const c = findCondition((await nodes.get(victim.name))?.status?.conditions, 'Ready');
      return c && c.status !== 'True';
    }, 20_000);
    const v = await waitFor('its VE Ready=Unknown', async () => {
      const x = await ves.get(mine[0]!.metadata.name, ns);
      return findCondition(x?.status?.conditions, 'Ready')?.status === 'Unknown' ? x : undefined;
    }, 20_000);
    assert.equal(v.metadata.labels?.[NODE_LABEL], victim.name);
    // The VE itself keeps running without its agent.
    const addr = v.status!.addresses![0]!.split('/')[0]!;
    assert.match(await sh('ping', ['-c', '1', '-W', '2', addr]), /1 received/);
  });

  it('teardown leaves no netns, link, route, mount, cgroup or process behind', async () => {
    const agentPids = cluster.state.nodes.map((n) => n.agentPid!);
    const controllerPid = cluster.state.controllerPid!;
    const subnets = cluster.state.nodes.map((n) => n.subnet);
    await cluster.stop();
    assert.ok(!existsSync(dir), 'run directory removed');
    const netns = await sh('ip', ['netns', 'list']);
    assert.doesNotMatch(netns, new RegExp(`kvzh${id}`));
    for (const uid of seen.uids) assert.ok(!netns.includes(containerId(uid)), `VE netns ${containerId(uid)} removed`);
    const links = await sh('ip', ['-br', 'link']);
    assert.doesNotMatch(links, new RegExp(id));
    const routes = await sh('ip', ['-4', 'route']);
    for (const s of subnets) assert.ok(!routes.includes(s), `route to ${s} removed`);
    assert.ok(!readFileSync('/proc/self/mountinfo', 'utf8').includes(dir), 'no mounts under the run dir');
    for (const uid of seen.uids) assert.ok(!existsSync(`/sys/fs/cgroup/pids${cgroupPath(uid)}`), `cgroup of ${uid} removed`);
    for (const pid of [...agentPids, controllerPid, ...seen.pids]) assert.ok(!existsSync(`/proc/${pid}/stat`) || readFileSync(`/proc/${pid}/stat`, 'utf8').includes(') Z'), `process ${pid} gone`);
  });
});
