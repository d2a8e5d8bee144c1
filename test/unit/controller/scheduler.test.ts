// The scheduler and node health on FakeApi with a fixed clock: placement by capacity, selector
// and readiness; the reasons of an unschedulable VE; Ready=Unknown for a silent node's VEs.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { NODE_LABEL, VE_RESOURCE, VENODE_RESOURCE, type VENode, type VirtualEnvironment } from '../../../src/api/types.js';
import { findCondition } from '../../../src/core/conditions.js';
import { silentLogger } from '../../../src/core/logger.js';
import type { EventRecorder, EventType } from '../../../src/core/events.js';
import { NodeHealth } from '../../../src/controller/node-health.js';
import { Scheduler } from '../../../src/controller/scheduler.js';
import { FakeApi } from '../../helpers/fake-resource-client.js';

const veRef = { ...VE_RESOURCE, namespaced: true };
const nodeRef = { ...VENODE_RESOURCE, namespaced: false };
const NOW = Date.parse('2026-01-01T12:00:00Z');

class Recorded implements EventRecorder {
  readonly events: { name?: string; type: EventType; reason: string; message: string }[] = [];
  event(obj: { metadata?: { name?: string } }, type: EventType, reason: string, message: string): void {
    this.events.push({ name: obj.metadata?.name, type, reason, message });
  }
}

/** A VENode builder: `aNode('n1').memory('4Gi').cpu('4').heartbeatAgo(5_000)`. */
function aNode(name: string) {
  const node: VENode = {
    apiVersion: 'kubevz.io/v1alpha1', kind: 'VENode', metadata: { name, labels: { [NODE_LABEL]: name } }, spec: {},
    status: { allocatable: { cpu: '4', memory: '4Gi', disk: '100Gi' }, heartbeatTime: new Date(NOW - 1000).toISOString(), conditions: [{ type: 'Ready', status: 'True', reason: 'AgentReady', message: '', lastTransitionTime: '2026-01-01T00:00:00Z' }] },
  };
  const b = {
    memory: (m: string) => ((node.status!.allocatable!.memory = m), b),
    cpu: (c: string) => ((node.status!.allocatable!.cpu = c), b),
    disk: (d: string) => ((node.status!.allocatable!.disk = d), b),
    label: (k: string, v: string) => ((node.metadata.labels![k] = v), b),
    heartbeatAgo: (ms: number) => ((node.status!.heartbeatTime = new Date(NOW - ms).toISOString()), b),
    notReady: () => ((node.status!.conditions![0]!.status = 'Unknown'), b),
    cordoned: () => ((node.spec = { unschedulable: true }), b),
    build: () => node,
  };
  return b;
}

function aVE(name: string, spec: Partial<VirtualEnvironment['spec']> = {}): VirtualEnvironment {
  return { apiVersion: 'kubevz.io/v1alpha1', kind: 'VirtualEnvironment', metadata: { name, namespace: 'default' }, spec: { template: 'busybox', ...spec } };
}

async function setup(nodes: VENode[]) {
  const api = new FakeApi();
  const ves = api.client<VirtualEnvironment>(veRef);
  const nodeClient = api.client<VENode>(nodeRef);
  for (const n of nodes) {
    await nodeClient.create(n);
    await nodeClient.patchStatus(n.metadata.name, undefined, n.status!);
  }
  const events = new Recorded();
  const scheduler = new Scheduler({
    client: ves,
    nodes: () => api.objects(nodeRef) as VENode[],
    ves: () => api.objects(veRef) as VirtualEnvironment[],
    events, log: silentLogger, now: () => NOW, nodeGraceMs: 40_000,
  });
  const health = new NodeHealth({ nodes: nodeClient, ves, cachedVEs: () => api.objects(veRef) as VirtualEnvironment[], allocated: () => scheduler.allocated(), events, log: silentLogger, now: () => NOW, nodeGraceMs: 40_000 });
  const schedule = async (name: string, spec: Partial<VirtualEnvironment['spec']> = {}) => {
    await ves.create(aVE(name, spec));
    await scheduler.reconcile(`default/${name}`);
    return (await ves.get(name, 'default'))!;
  };
  return { api, ves, nodeClient, scheduler, health, events, schedule };
}

test('VEs spread by capacity: each goes to the node that stays least full', async () => {
  const { schedule } = await setup([aNode('big').memory('8Gi').build(), aNode('small').memory('2Gi').build()]);
  const placed: string[] = [];
  for (let i = 0; i < 5; i++) placed.push((await schedule(`ve${i}`, { resources: { memory: { limit: '1Gi' } } })).metadata.labels![NODE_LABEL]!);
  // The node whose fullest resource is least full afterwards wins; ties go to fewer VEs.
  assert.deepEqual(placed.filter((n) => n === 'small').length, 1);
  assert.deepEqual(placed.filter((n) => n === 'big').length, 4);
});

test('a bound VE records label, status.nodeName, Scheduled=True with observedGeneration, and an Event', async () => {
  const { schedule, events } = await setup([aNode('n1').build()]);
  const ve = await schedule('a');
  assert.equal(ve.metadata.labels?.[NODE_LABEL], 'n1');
  assert.equal(ve.status?.nodeName, 'n1');
  const sched = findCondition(ve.status?.conditions, 'Scheduled');
  assert.equal(sched?.status, 'True');
  assert.equal(sched?.observedGeneration, ve.metadata.generation);
  assert.deepEqual(events.events.map((e) => e.reason), ['Scheduled']);
});

test('unschedulable: Scheduled=False with every reason counted; retried later', async () => {
  const { schedule, scheduler, events } = await setup([
    aNode('full').memory('1Gi').label('zone', 'a').build(),
    aNode('also-full').memory('512Mi').label('zone', 'a').build(),
    aNode('silent').heartbeatAgo(60_000).build(),
    aNode('down').notReady().build(),
    aNode('other-zone').label('zone', 'b').build(),
    aNode('cordoned').cordoned().label('zone', 'a').build(),
  ]);
  const ve = await schedule('big', { resources: { memory: { limit: '2Gi' } }, nodeSelector: { zone: 'a' } });
  assert.equal(ve.metadata.labels?.[NODE_LABEL], undefined);
  const sched = findCondition(ve.status?.conditions, 'Scheduled');
  assert.equal(sched?.status, 'False');
  assert.equal(sched?.reason, 'Unschedulable');
  assert.match(sched!.message, /^0\/6 nodes available: /);
  for (const part of ['2 NotReady', '2 insufficient memory', "1 didn't match nodeSelector", '1 unschedulable', 'memory 2097152Ki']) assert.ok(sched!.message.includes(part), `${part} in: ${sched!.message}`);
  assert.equal(ve.status?.phase, 'Pending');
  assert.equal(ve.status?.observedGeneration, ve.metadata.generation);
  assert.equal(events.events.at(-1)?.reason, 'FailedScheduling');
  // Level-based: the same state writes nothing new and asks to be looked at again.
  const res = await scheduler.reconcile('default/big');
  assert.ok(res.requeueAfterMs! > 0);
  assert.equal(events.events.length, 1);
});

test('an unschedulable VE is placed once a node with room appears', async () => {
  const { schedule, scheduler, nodeClient, ves } = await setup([aNode('small').memory('1Gi').build()]);
  await schedule('x', { resources: { memory: { limit: '2Gi' } } });
  assert.deepEqual(scheduler.unbound(), ['default/x']);
  const big = aNode('big').memory('8Gi').build();
  await nodeClient.create(big);
  await nodeClient.patchStatus('big', undefined, big.status!);
  await scheduler.reconcile('default/x');
  const ve = (await ves.get('x', 'default'))!;
  assert.equal(ve.metadata.labels?.[NODE_LABEL], 'big');
  assert.equal(findCondition(ve.status?.conditions, 'Scheduled')?.status, 'True');
  assert.deepEqual(scheduler.unbound(), []);
});

test('no nodes at all: the message says to start an agent', async () => {
  const { schedule } = await setup([]);
  const ve = await schedule('lonely');
  assert.match(findCondition(ve.status?.conditions, 'Scheduled')!.message, /no node agent has registered/);
});

test('spec.nodeName pins without checks; a bound VE is never moved', async () => {
  const { schedule, scheduler, ves } = await setup([aNode('n1').build(), aNode('n2').memory('64Mi').build()]);
  const pinned = await schedule('p', { nodeName: 'n2', resources: { memory: { limit: '1Gi' } } });
  assert.equal(pinned.metadata.labels?.[NODE_LABEL], 'n2');
  assert.equal(findCondition(pinned.status?.conditions, 'Scheduled')?.reason, 'Pinned');
  await ves.mergePatch('p', 'default', { spec: { nodeName: 'n1' } });
  await scheduler.reconcile('default/p');
  assert.equal((await ves.get('p', 'default'))!.metadata.labels?.[NODE_LABEL], 'n2');
});

test('node health: a silent node gets Ready=Unknown, its VEs Ready=Unknown, nothing moves', async () => {
  const { schedule, health, nodeClient, ves, events } = await setup([aNode('n1').build()]);
  const ve = await schedule('a', { resources: { memory: { limit: '1Gi' } } });
  await ves.patchStatus('a', 'default', { conditions: [...ve.status!.conditions!, { type: 'Ready', status: 'True', reason: 'Running', message: '', lastTransitionTime: '2026-01-01T00:00:00Z', observedGeneration: 1 }] });

  // Fresh heartbeat: allocation written, node stays Ready, a wake-up just after the grace ends.
  const res = await health.reconcile('n1');
  let node = (await nodeClient.get('n1'))!;
  assert.deepEqual(node.status?.allocated, { cpu: '0', memory: '1048576Ki', disk: '0', ves: 1 });
  assert.equal(findCondition(node.status?.conditions, 'Ready')?.status, 'True');
  assert.ok(res.requeueAfterMs! > 38_000 && res.requeueAfterMs! <= 40_000, String(res.requeueAfterMs));

  await nodeClient.patchStatus('n1', undefined, { heartbeatTime: new Date(NOW - 41_000).toISOString() });
  await health.reconcile('n1');
  node = (await nodeClient.get('n1'))!;
  const ready = findCondition(node.status?.conditions, 'Ready');
  assert.equal(ready?.status, 'Unknown');
  assert.equal(ready?.reason, 'NodeStatusUnknown');
  const after = (await ves.get('a', 'default'))!;
  const veReady = findCondition(after.status?.conditions, 'Ready');
  assert.equal(veReady?.status, 'Unknown');
  assert.equal(veReady?.reason, 'NodeNotReady');
  assert.equal(veReady?.observedGeneration, after.metadata.generation);
  assert.equal(after.metadata.labels?.[NODE_LABEL], 'n1');
  assert.ok(events.events.some((e) => e.reason === 'NodeNotReady' && e.name === 'a'));
  assert.ok(events.events.some((e) => e.reason === 'NodeNotReady' && e.name === 'n1'));
});

test('placements made concurrently count each other: capacity holds without a lock around the writes', async () => {
  const { ves, scheduler } = await setup([aNode('big').memory('8Gi').build(), aNode('mid').memory('4Gi').build(), aNode('small').memory('2Gi').build()]);
  for (let i = 0; i < 7; i++) await ves.create(aVE(`c${i}`, { resources: { memory: { limit: '1Gi' } } }));
  // All seven at once, as several workers would run them.
  await Promise.all(Array.from({ length: 7 }, (_, i) => scheduler.reconcile(`default/c${i}`)));
  const count = new Map<string, number>();
  for (let i = 0; i < 7; i++) {
    const node = (await ves.get(`c${i}`, 'default'))!.metadata.labels![NODE_LABEL]!;
    count.set(node, (count.get(node) ?? 0) + 1);
  }
  assert.deepEqual(Object.fromEntries(count), { big: 4, mid: 2, small: 1 });
});

test('a stale cached copy binds nothing: the conditional binding conflicts and the stored object decides', async () => {
  const api = new FakeApi();
  const ves = api.client<VirtualEnvironment>(veRef);
  const nodeClient = api.client<VENode>(nodeRef);
  for (const n of [aNode('n1').build(), aNode('n2').build()]) {
    await nodeClient.create(n);
    await nodeClient.patchStatus(n.metadata.name, undefined, n.status!);
  }
  const stale = await ves.create(aVE('s'));
  // Meanwhile the VE was pinned to n2 (the cache has not seen it yet).
  await ves.mergePatch('s', 'default', { spec: { nodeName: 'n2' } });
  let gets = 0;
  const counting: typeof ves = Object.assign(Object.create(ves) as typeof ves, { get: (name: string, ns?: string) => ((gets++), ves.get(name, ns)) });
  const scheduler = new Scheduler({
    client: counting,
    nodes: () => api.objects(nodeRef) as VENode[],
    ves: () => api.objects(veRef) as VirtualEnvironment[],
    cached: () => stale,
    log: silentLogger, now: () => NOW, nodeGraceMs: 40_000,
  });
  await scheduler.reconcile('default/s');
  const ve = (await ves.get('s', 'default'))!;
  assert.equal(ve.metadata.labels?.[NODE_LABEL], 'n2');
  assert.equal(ve.status?.nodeName, 'n2');
  assert.equal(gets, 1, 'one GET after the conflict');
  // Nothing is left reserved for the failed attempt: n1 counts no VE.
  assert.equal(scheduler.allocated().get('n1'), undefined);
});

test('a current cached copy is bound without a GET', async () => {
  const api = new FakeApi();
  const ves = api.client<VirtualEnvironment>(veRef);
  const nodeClient = api.client<VENode>(nodeRef);
  const n = aNode('n1').build();
  await nodeClient.create(n);
  await nodeClient.patchStatus('n1', undefined, n.status!);
  const current = await ves.create(aVE('c'));
  let gets = 0;
  const counting: typeof ves = Object.assign(Object.create(ves) as typeof ves, { get: (name: string, ns?: string) => ((gets++), ves.get(name, ns)) });
  const scheduler = new Scheduler({ client: counting, nodes: () => api.objects(nodeRef) as VENode[], ves: () => api.objects(veRef) as VirtualEnvironment[], cached: () => current, log: silentLogger, now: () => NOW });
  await scheduler.reconcile('default/c');
  assert.equal((await ves.get('c', 'default'))!.metadata.labels?.[NODE_LABEL], 'n1');
  assert.equal(gets, 0);
});

test('cpu: a VE whose CPU cap fits no node is Scheduled=False naming cpu', async () => {
  const { schedule } = await setup([aNode('two').cpu('2').build(), aNode('three').cpu('3').build()]);
  // cpu.limit 400% = 4 cores; the smaller of limit and cpus counts, so cpus 6 does not lower it.
  const ve = await schedule('hungry', { resources: { cpu: { limit: '400%', cpus: 6 } } });
  assert.equal(ve.metadata.labels?.[NODE_LABEL], undefined);
  const sched = findCondition(ve.status?.conditions, 'Scheduled');
  assert.equal(sched?.status, 'False');
  assert.equal(sched?.reason, 'Unschedulable');
  assert.ok(sched!.message.includes('2 insufficient cpu'), sched!.message);
  assert.ok(!sched!.message.includes('insufficient memory') && !sched!.message.includes('insufficient disk'), sched!.message);
  assert.ok(sched!.message.includes('cpu 4,'), sched!.message);
  assert.equal(sched?.observedGeneration, ve.metadata.generation);
});

test('cpu: the smaller of cpu.limit and cpu.cpus counts, and earlier placements use up a node', async () => {
  const { schedule } = await setup([aNode('n1').cpu('2').build()]);
  // limit 8 cores but pinned to 1.5 CPUs: counts 1500m, fits on 2 cores.
  const first = await schedule('a', { resources: { cpu: { limit: '8', cpus: 1.5 } } });
  assert.equal(first.metadata.labels?.[NODE_LABEL], 'n1');
  // 1500m + 1000m > 2 cores: the second one does not fit any more.
  const second = await schedule('b', { resources: { cpu: { limit: '1000m' } } });
  assert.equal(second.metadata.labels?.[NODE_LABEL], undefined);
  assert.ok(findCondition(second.status?.conditions, 'Scheduled')!.message.includes('1 insufficient cpu'));
});

test('disk: a VE whose disk space fits no node is Scheduled=False naming disk', async () => {
  const { schedule, events } = await setup([aNode('n1').disk('10Gi').build(), aNode('n2').disk('20Gi').build()]);
  const ve = await schedule('fat', { resources: { disk: { space: '50Gi' } } });
  assert.equal(ve.metadata.labels?.[NODE_LABEL], undefined);
  const sched = findCondition(ve.status?.conditions, 'Scheduled');
  assert.equal(sched?.status, 'False');
  assert.equal(sched?.reason, 'Unschedulable');
  assert.ok(sched!.message.includes('2 insufficient disk'), sched!.message);
  assert.ok(!sched!.message.includes('insufficient cpu') && !sched!.message.includes('insufficient memory'), sched!.message);
  assert.ok(sched!.message.includes(`disk ${50 * 1024 * 1024}Ki`), sched!.message);
  assert.equal(events.events.at(-1)?.reason, 'FailedScheduling');
});

test('disk: a node with room for everything is chosen over a roomier one short of disk', async () => {
  // 'roomy' has more memory and CPU (it would win on score) but only 5Gi of disk.
  const { schedule } = await setup([
    aNode('roomy').memory('64Gi').cpu('32').disk('5Gi').build(),
    aNode('fits').memory('2Gi').cpu('2').disk('20Gi').build(),
  ]);
  const ve = await schedule('d', { resources: { memory: { limit: '1Gi' }, cpu: { limit: '1' }, disk: { space: '10Gi' } } });
  assert.equal(ve.metadata.labels?.[NODE_LABEL], 'fits');
  assert.equal(ve.status?.nodeName, 'fits');
  assert.equal(findCondition(ve.status?.conditions, 'Scheduled')?.status, 'True');
  // Control: without the disk request the roomier node wins, so disk is what decided above.
  const noDisk = await schedule('m', { resources: { memory: { limit: '1Gi' }, cpu: { limit: '1' } } });
  assert.equal(noDisk.metadata.labels?.[NODE_LABEL], 'roomy');
});

test('several resources short: each node is counted once per resource it lacks', async () => {
  const { schedule } = await setup([aNode('n1').memory('1Gi').cpu('1').disk('1Gi').build()]);
  const ve = await schedule('all', { resources: { memory: { limit: '2Gi' }, cpu: { limit: '2' }, disk: { space: '2Gi' } } });
  const msg = findCondition(ve.status?.conditions, 'Scheduled')!.message;
  for (const part of ['1 insufficient memory', '1 insufficient cpu', '1 insufficient disk']) assert.ok(msg.includes(part), `${part} in: ${msg}`);
});
