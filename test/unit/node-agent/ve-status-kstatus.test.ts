// kstatus compatibility of the status the agent writes (src/node-agent/ve-status.ts): the
// "abnormal-true" conditions Reconciling and Stalled, Ready, and observedGeneration on every
// condition. Read through the generic kstatus rules of manifests/README.md, once on buildStatus
// directly and once through VEReconciler on FakeRuntime (what the agent really writes).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { NODE_LABEL, VE_RESOURCE, type VEStatus, type VirtualEnvironment } from '../../../src/api/types.js';
import { findCondition } from '../../../src/core/conditions.js';
import { silentLogger } from '../../../src/core/logger.js';
import { RestartBackoff } from '../../../src/node-agent/lifecycle.js';
import { VEReconciler } from '../../../src/node-agent/ve-reconciler.js';
import { buildStatus, type StatusInput } from '../../../src/node-agent/ve-status.js';
import { FakeApi } from '../../helpers/fake-resource-client.js';
import { FakeRuntime } from '../../helpers/fake-runtime.js';

type KStatus = 'InProgress' | 'Failed' | 'Current';

/** The generic kstatus reading of a custom resource (cli-utils), as manifests/README.md states it. */
function kstatus(ve: { metadata: { generation?: number }; status?: VEStatus }): KStatus {
  const s = ve.status;
  if (!s || (s.observedGeneration ?? 0) < (ve.metadata.generation ?? 1)) return 'InProgress';
  if (findCondition(s.conditions, 'Reconciling')?.status === 'True') return 'InProgress';
  if (findCondition(s.conditions, 'Stalled')?.status === 'True') return 'Failed';
  return 'Current';
}

function assertObservedEverywhere(status: VEStatus, generation: number): void {
  assert.equal(status.observedGeneration, generation);
  assert.ok((status.conditions ?? []).length >= 3, 'Ready, Reconciling and Stalled are all present');
  for (const c of status.conditions ?? []) assert.equal(c.observedGeneration, generation, `observedGeneration on ${c.type}`);
}

const GEN = 4;
function aVE(status?: VEStatus): VirtualEnvironment {
  return { apiVersion: 'kubevz.io/v1alpha1', kind: 'VirtualEnvironment', metadata: { name: 'k', namespace: 'default', generation: GEN }, spec: { template: 'busybox' }, ...(status ? { status } : {}) };
}
const T0 = new Date('2026-01-01T00:00:00Z');
const base = { nodeName: 'n1', addresses: ['10.0.0.2/24'] };
const build = (input: Omit<StatusInput, 'nodeName' | 'addresses'>, prev?: VEStatus, now = T0) => buildStatus(aVE(prev), { ...base, ...input }, now);

test('converging (Creating): Reconciling=True with the Ready reason, Stalled=False, Ready=False → InProgress', () => {
  const s = build({ phase: 'Creating', ready: { status: 'False', reason: 'Creating', message: 'starting from template busybox' } });
  const rec = findCondition(s.conditions, 'Reconciling');
  assert.equal(rec?.status, 'True');
  assert.equal(rec?.reason, 'Creating');
  assert.equal(rec?.message, 'starting from template busybox');
  assert.equal(findCondition(s.conditions, 'Stalled')?.status, 'False');
  assert.equal(findCondition(s.conditions, 'Ready')?.status, 'False');
  assertObservedEverywhere(s, GEN);
  assert.equal(kstatus({ metadata: { generation: GEN }, status: s }), 'InProgress');
});

test('waiting for a template or a retryable error is still Reconciling, not Stalled', () => {
  for (const [phase, reason] of [['Pending', 'TemplateNotFound'], ['Pending', 'AddressConflict'], ['Pending', 'ReconcileError'], ['Running', 'Stopping']] as const) {
    const s = build({ phase, ready: { status: 'False', reason, message: 'm' } });
    assert.equal(findCondition(s.conditions, 'Reconciling')?.status, 'True', reason);
    assert.equal(findCondition(s.conditions, 'Reconciling')?.reason, reason);
    assert.equal(findCondition(s.conditions, 'Stalled')?.status, 'False', reason);
    assertObservedEverywhere(s, GEN);
  }
});

test('Running and Ready at the current generation: Ready=True, Reconciling=False (Converged), Stalled=False → Current', () => {
  const s = build({ phase: 'Running', initPid: 7, ready: { status: 'True', reason: 'Running', message: '' } });
  assert.equal(findCondition(s.conditions, 'Ready')?.status, 'True');
  const rec = findCondition(s.conditions, 'Reconciling');
  assert.equal(rec?.status, 'False');
  assert.equal(rec?.reason, 'Converged');
  assert.equal(findCondition(s.conditions, 'Stalled')?.status, 'False');
  assertObservedEverywhere(s, GEN);
  assert.equal(kstatus({ metadata: { generation: GEN }, status: s }), 'Current');
  // The same status read against a newer generation is not yet Current.
  assert.equal(kstatus({ metadata: { generation: GEN + 1 }, status: s }), 'InProgress');
});

test('Stopped as declared is settled (Reconciling=False) → Current', () => {
  const s = build({ phase: 'Stopped', ready: { status: 'False', reason: 'Stopped', message: 'spec.powerState is Stopped' } });
  assert.equal(findCondition(s.conditions, 'Reconciling')?.status, 'False');
  assert.equal(findCondition(s.conditions, 'Stalled')?.status, 'False');
  assertObservedEverywhere(s, GEN);
  assert.equal(kstatus({ metadata: { generation: GEN }, status: s }), 'Current');
});

test('Failed: Stalled=True with the reason and message, Reconciling=False (Stalled) → Failed', () => {
  const s = build({ phase: 'Failed', ready: { status: 'False', reason: 'InvalidSpec', message: 'spec.resources.memory.limit: "plenty" is not a quantity' } });
  const stalled = findCondition(s.conditions, 'Stalled');
  assert.equal(stalled?.status, 'True');
  assert.equal(stalled?.reason, 'InvalidSpec');
  assert.match(stalled!.message, /spec\.resources\.memory\.limit/);
  const rec = findCondition(s.conditions, 'Reconciling');
  assert.equal(rec?.status, 'False');
  assert.equal(rec?.reason, 'Stalled');
  assertObservedEverywhere(s, GEN);
  assert.equal(kstatus({ metadata: { generation: GEN }, status: s }), 'Failed');
});

test('transitions keep lastTransitionTime while a condition keeps its status, and move it when it flips', () => {
  const creating = build({ phase: 'Creating', ready: { status: 'False', reason: 'Creating' } });
  const later = new Date('2026-01-01T00:05:00Z');
  const stillCreating = build({ phase: 'Creating', ready: { status: 'False', reason: 'Creating' } }, creating, later);
  assert.equal(findCondition(stillCreating.conditions, 'Reconciling')?.lastTransitionTime, '2026-01-01T00:00:00Z');
  const running = build({ phase: 'Running', ready: { status: 'True', reason: 'Running' } }, stillCreating, later);
  assert.equal(findCondition(running.conditions, 'Reconciling')?.lastTransitionTime, '2026-01-01T00:05:00Z');
  assert.equal(findCondition(running.conditions, 'Stalled')?.lastTransitionTime, '2026-01-01T00:00:00Z', 'Stalled stayed False');
  // One condition of each type, never duplicates.
  assert.deepEqual(running.conditions!.map((c) => c.type).sort(), ['Ready', 'Reconciling', 'Stalled']);
});

// What VEReconciler really writes, on FakeApi + FakeRuntime.

const ref = { ...VE_RESOURCE, namespaced: true };
const signal = new AbortController().signal;
function agent(backoff?: RestartBackoff) {
  const api = new FakeApi();
  const client = api.client<VirtualEnvironment>(ref);
  const runtime = new FakeRuntime();
  const reconciler = new VEReconciler({ client, runtime, nodeName: 'n1', subnet: '10.213.9.0/24', knownVEs: () => api.objects(ref) as VirtualEnvironment[], stopTimeoutMs: 100, resyncMs: 30_000, log: silentLogger, backoff });
  const create = (name: string, spec: Partial<VirtualEnvironment['spec']> = {}) =>
    client.create({ apiVersion: 'kubevz.io/v1alpha1', kind: 'VirtualEnvironment', metadata: { name, namespace: 'default', labels: { [NODE_LABEL]: 'n1' } }, spec: { template: 'busybox', ...spec } });
  return { client, runtime, reconciler, create };
}

test('agent: a VE that came up is Current; a spec edit is InProgress until the agent observes it', async () => {
  const { client, reconciler, create } = agent();
  await create('up');
  await reconciler.reconcile('default/up', signal);
  let ve = (await client.get('up', 'default'))!;
  assert.equal(ve.status?.phase, 'Running');
  assertObservedEverywhere(ve.status!, ve.metadata.generation!);
  assert.equal(kstatus(ve), 'Current');
  await client.mergePatch('up', 'default', { spec: { hostname: 'renamed' } });
  ve = (await client.get('up', 'default'))!;
  assert.ok(ve.metadata.generation! > ve.status!.observedGeneration!);
  assert.equal(kstatus(ve), 'InProgress');
  await reconciler.reconcile('default/up', signal);
  ve = (await client.get('up', 'default'))!;
  assertObservedEverywhere(ve.status!, ve.metadata.generation!);
  assert.equal(kstatus(ve), 'Current');
});

test('agent: an invalid spec makes the VE Stalled (Failed); fixing the spec clears it', async () => {
  const { client, reconciler, create } = agent();
  await create('bad', { resources: { memory: { limit: 'plenty' } } });
  await assert.rejects(reconciler.reconcile('default/bad', signal), (err: Error & { code?: string }) => err.code === 'Terminal');
  let ve = (await client.get('bad', 'default'))!;
  assert.equal(ve.status?.phase, 'Failed');
  const stalled = findCondition(ve.status?.conditions, 'Stalled');
  assert.equal(stalled?.status, 'True');
  assert.equal(stalled?.reason, 'InvalidSpec');
  assert.match(stalled!.message, /spec\.resources\.memory\.limit/);
  assertObservedEverywhere(ve.status!, ve.metadata.generation!);
  assert.equal(kstatus(ve), 'Failed');
  await client.mergePatch('bad', 'default', { spec: { resources: { memory: { limit: '64Mi' } } } });
  await reconciler.reconcile('default/bad', signal);
  ve = (await client.get('bad', 'default'))!;
  assert.equal(findCondition(ve.status?.conditions, 'Stalled')?.status, 'False');
  assert.equal(kstatus(ve), 'Current');
});

test('agent: a crash loop (2nd exit in a row) is Stalled=True, reason CrashLoopBackOff → Failed; running again clears it', async () => {
  let now = Date.parse('2026-01-01T00:00:00Z');
  const { client, runtime, reconciler, create } = agent(new RestartBackoff({ now: () => now }));
  const created = await create('loop');
  const uid = created.metadata.uid!;
  const conditions = async () => {
    const ve = (await client.get('loop', 'default'))!;
    const c = (type: string) => findCondition(ve.status?.conditions, type)!;
    return { ve, ready: c('Ready'), reconciling: c('Reconciling'), stalled: c('Stalled') };
  };
  await reconciler.reconcile('default/loop', signal);

  // First exit: restarted after 1s, reported as converging (a single `reboot` inside is no failure).
  runtime.kill(uid);
  assert.deepEqual(await reconciler.reconcile('default/loop', signal), { requeueAfterMs: 1000 });
  let s = await conditions();
  assert.equal(s.ve.status?.phase, 'Pending');
  assert.equal(s.ready.status, 'False');
  assert.equal(s.ready.reason, 'CrashLoopBackOff');
  assert.equal(s.reconciling.status, 'True');
  assert.equal(s.reconciling.reason, 'CrashLoopBackOff');
  assert.equal(s.stalled.status, 'False');
  assert.equal(kstatus(s.ve), 'InProgress');

  // Restarted, dies again within the reset window: a crash loop.
  now += 1000;
  await reconciler.reconcile('default/loop', signal);
  assert.equal((await runtime.inspect(uid)).state, 'running');
  now += 5000;
  runtime.kill(uid);
  assert.deepEqual(await reconciler.reconcile('default/loop', signal), { requeueAfterMs: 2000 });
  s = await conditions();
  assert.equal(s.ve.status?.phase, 'Pending');
  assert.equal(s.ready.status, 'False');
  assert.equal(s.ready.reason, 'CrashLoopBackOff');
  assert.equal(s.stalled.status, 'True');
  assert.equal(s.stalled.reason, 'CrashLoopBackOff');
  assert.equal(s.stalled.message, "the VE's init exited 2 times in a row, restarted 1 time; next restart at 2026-01-01T00:00:08Z (back-off 2s)");
  assert.equal(s.ready.message, s.stalled.message);
  assert.equal(s.reconciling.status, 'False');
  assert.equal(s.reconciling.reason, 'Stalled');
  assertObservedEverywhere(s.ve.status!, s.ve.metadata.generation!);
  assert.equal(kstatus(s.ve), 'Failed');

  // A look during the back-off (a resync) does not rewrite the status: the message is stable.
  const rv = s.ve.metadata.resourceVersion;
  now += 500;
  await reconciler.reconcile('default/loop', signal);
  assert.equal((await conditions()).ve.metadata.resourceVersion, rv);

  // A spec edit during the loop is observed on every condition, and the VE stays Stalled.
  await client.mergePatch('loop', 'default', { spec: { hostname: 'edited' } });
  assert.equal(kstatus((await conditions()).ve), 'InProgress', 'not yet observed');
  await reconciler.reconcile('default/loop', signal);
  s = await conditions();
  assert.equal(s.stalled.status, 'True');
  // (ResourcesApplied keeps the generation it was last measured at: nothing runs to measure.)
  assert.equal(s.ve.status?.observedGeneration, s.ve.metadata.generation);
  for (const c of [s.ready, s.reconciling, s.stalled]) assert.equal(c.observedGeneration, s.ve.metadata.generation, c.type);
  assert.equal(kstatus(s.ve), 'Failed');

  // The back-off is over: the VE runs again and the conditions are back to normal.
  now += 1500;
  await reconciler.reconcile('default/loop', signal);
  s = await conditions();
  assert.equal(s.ve.status?.phase, 'Running');
  assert.equal(s.ready.status, 'True');
  assert.equal(s.stalled.status, 'False');
  assert.equal(s.reconciling.status, 'False');
  assert.equal(s.reconciling.reason, 'Converged');
  assertObservedEverywhere(s.ve.status!, s.ve.metadata.generation!);
  assert.equal(kstatus(s.ve), 'Current');
});

test('crash loop in buildStatus: stalled input is Stalled=True with the Ready reason, Reconciling=False, whatever the phase', () => {
  const msg = "the VE's init exited 3 times in a row, restarted 2 times; next restart at 2026-01-01T00:00:04Z (back-off 4s)";
  const s = build({ phase: 'Pending', stalled: true, ready: { status: 'False', reason: 'CrashLoopBackOff', message: msg } });
  assert.deepEqual(['Ready', 'Reconciling', 'Stalled'].map((t) => { const c = findCondition(s.conditions, t)!; return [t, c.status, c.reason, c.message]; }), [
    ['Ready', 'False', 'CrashLoopBackOff', msg], ['Reconciling', 'False', 'Stalled', ''], ['Stalled', 'True', 'CrashLoopBackOff', msg],
  ]);
  assert.equal(s.phase, 'Pending');
  assertObservedEverywhere(s, GEN);
  assert.equal(kstatus({ metadata: { generation: GEN }, status: s }), 'Failed');
  const again = build({ phase: 'Running', initPid: 8, ready: { status: 'True', reason: 'Running', message: '' } }, s);
  assert.equal(findCondition(again.conditions, 'Stalled')?.status, 'False');
  assert.equal(kstatus({ metadata: { generation: GEN }, status: again }), 'Current');
});
