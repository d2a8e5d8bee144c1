// The VE reconciler's restart request (annotation) and its Events, on FakeApi + FakeRuntime.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { NODE_LABEL, RESTART_REQUESTED_ANNOTATION, RESTARTED_ANNOTATION, VE_RESOURCE, type VirtualEnvironment } from '../../../src/api/types.js';
import type { EventRecorder, EventType } from '../../../src/core/events.js';
import { silentLogger } from '../../../src/core/logger.js';
import { VEReconciler } from '../../../src/node-agent/ve-reconciler.js';
import { FakeApi } from '../../helpers/fake-resource-client.js';
import { FakeRuntime } from '../../helpers/fake-runtime.js';

const ref = { ...VE_RESOURCE, namespaced: true };
const signal = new AbortController().signal;

function setup() {
  const api = new FakeApi();
  const client = api.client<VirtualEnvironment>(ref);
  const runtime = new FakeRuntime();
  const events: { type: EventType; reason: string; message: string }[] = [];
  const recorder: EventRecorder = { event: (_o, type, reason, message) => void events.push({ type, reason, message }) };
  const reconciler = new VEReconciler({ client, runtime, nodeName: 'n1', subnet: '10.213.9.0/24', knownVEs: () => api.objects(ref) as VirtualEnvironment[], stopTimeoutMs: 100, resyncMs: 30_000, events: recorder, log: silentLogger });
  return { client, runtime, reconciler, events };
}

const aVE = (name: string): VirtualEnvironment => ({ apiVersion: 'kubevz.io/v1alpha1', kind: 'VirtualEnvironment', metadata: { name, namespace: 'default', labels: { [NODE_LABEL]: 'n1' } }, spec: { template: 'busybox' } });

test('a restart request gives the VE a new init once, and is acknowledged in an annotation', async () => {
  const { client, runtime, reconciler, events } = setup();
  const ve = await client.create(aVE('a'));
  await reconciler.reconcile('default/a', signal);
  const pid1 = (await runtime.inspect(ve.metadata.uid!)).pid;
  assert.deepEqual(events.map((e) => e.reason), ['Created', 'Started']);

  await client.mergePatch('a', 'default', { metadata: { annotations: { [RESTART_REQUESTED_ANNOTATION]: 't1' } } });
  await reconciler.reconcile('default/a', signal);
  const pid2 = (await runtime.inspect(ve.metadata.uid!)).pid;
  assert.notEqual(pid2, pid1);
  const after = (await client.get('a', 'default'))!;
  assert.equal(after.metadata.annotations?.[RESTARTED_ANNOTATION], 't1');
  assert.equal(after.status?.initPid, pid2);
  assert.equal(events.at(-1)?.reason, 'Restarted');

  // Acted on: reconciling again does not restart again.
  await reconciler.reconcile('default/a', signal);
  assert.equal((await runtime.inspect(ve.metadata.uid!)).pid, pid2);
});

test('stop, live limits and failures are Events', async () => {
  const { client, runtime, reconciler, events } = setup();
  await client.create(aVE('b'));
  await reconciler.reconcile('default/b', signal);
  await client.mergePatch('b', 'default', { spec: { resources: { processes: 99 } } });
  await reconciler.reconcile('default/b', signal);
  assert.ok(events.some((e) => e.reason === 'LimitsChanged' && /99/.test(e.message)));
  await client.mergePatch('b', 'default', { spec: { powerState: 'Stopped' } });
  await reconciler.reconcile('default/b', signal);
  assert.equal(events.at(-1)?.reason, 'Stopped');
  await client.mergePatch('b', 'default', { spec: { powerState: 'Running' } });
  runtime.failNextStart = new Error('runc create failed: boom');
  await assert.rejects(reconciler.reconcile('default/b', signal));
  const failed = events.at(-1)!;
  assert.equal(failed.type, 'Warning');
  assert.equal(failed.reason, 'Failed');
  assert.match(failed.message, /boom/);
});
