// Suspend and resume through the VE reconciler (fake runtime): state on the host, status and
// Events; a refused suspend keeps the VE running with the reason and is not retried in a hot loop.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { MIGRATION_ANNOTATION, NODE_LABEL, VE_RESOURCE, type KubeObject, type VirtualEnvironment } from '../../../src/api/types.js';
import { KvzError } from '../../../src/core/errors.js';
import { silentLogger } from '../../../src/core/logger.js';
import { VEReconciler } from '../../../src/node-agent/ve-reconciler.js';
import { FakeApi } from '../../helpers/fake-resource-client.js';
import { MigratingFakeRuntime } from './migration-fakes.js';

const ref = { ...VE_RESOURCE, namespaced: true };
const signal = new AbortController().signal;

function setup(t: { after(fn: () => void): void }) {
  const dir = mkdtempSync(join(tmpdir(), 'kvz-suspend-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const api = new FakeApi();
  const client = api.client<VirtualEnvironment>(ref);
  const runtime = new MigratingFakeRuntime(dir);
  const events: { reason: string; type: string; message: string }[] = [];
  let now = 0;
  const reconciler = new VEReconciler({
    client, runtime, nodeName: 'n1', subnet: '10.213.9.0/24', knownVEs: () => api.objects(ref) as VirtualEnvironment[], stopTimeoutMs: 100, resyncMs: 30_000, log: silentLogger,
    events: { event: (_o: KubeObject, type, reason, message) => events.push({ type, reason, message }) },
    suspendBackoff: { initialMs: 1_000, maxMs: 8_000, now: () => now },
  });
  return { client, runtime, reconciler, events, advance: (ms: number) => (now += ms) };
}

function aVE(name: string, spec: Partial<VirtualEnvironment['spec']> = {}, annotations?: Record<string, string>): VirtualEnvironment {
  return {
    apiVersion: 'kubevz.io/v1alpha1',
    kind: 'VirtualEnvironment',
    metadata: { name, namespace: 'default', labels: { [NODE_LABEL]: 'n1' }, ...(annotations ? { annotations } : {}) },
    spec: { template: 'busybox', ...spec },
  };
}

const cond = (ve: VirtualEnvironment | undefined, type: string) => ve?.status?.conditions?.find((c) => c.type === type);

test('Suspended checkpoints the VE; Running again resumes it (same init, not a cold boot)', async (t) => {
  const { client, runtime, reconciler, events } = setup(t);
  const ve = await client.create(aVE('s', { security: { userNamespace: false } }));
  const uid = ve.metadata.uid!;
  await reconciler.reconcile('default/s', signal);

  await client.mergePatch('s', 'default', { spec: { powerState: 'Suspended' } });
  await reconciler.reconcile('default/s', signal);
  assert.equal((await runtime.inspect(uid)).state, 'suspended');
  let got = await client.get('s', 'default');
  assert.equal(got?.status?.phase, 'Suspended');
  assert.equal(cond(got, 'Ready')?.status, 'False');
  assert.equal(cond(got, 'Ready')?.reason, 'Suspended');
  assert.equal(cond(got, 'Suspended')?.status, 'True');
  assert.ok(events.some((e) => e.reason === 'Suspended' && e.type === 'Normal'));

  await client.mergePatch('s', 'default', { spec: { powerState: 'Running' } });
  await reconciler.reconcile('default/s', signal);
  const host = await runtime.inspect(uid);
  assert.equal(host.state, 'running');
  assert.ok(runtime.calls.includes(`resume ${uid}`), 'resumed from the checkpoint');
  assert.equal(runtime.calls.filter((c) => c === `ensureRunning ${uid}`).length, 2, 'no cold boot besides the first start (the second ensureRunning is the no-op after resume)');
  got = await client.get('s', 'default');
  assert.equal(got?.status?.phase, 'Running');
  assert.equal(cond(got, 'Ready')?.status, 'True');
  assert.equal(cond(got, 'Suspended'), undefined, 'a resumed VE no longer carries the Suspended condition');
  assert.ok(events.some((e) => e.reason === 'Resumed'));
});

test('a refused suspend keeps the VE running with the reason, a Warning, and back-off', async (t) => {
  const { client, runtime, reconciler, events, advance } = setup(t);
  const ve = await client.create(aVE('u', { powerState: 'Running', security: { userNamespace: false } }));
  const uid = ve.metadata.uid!;
  await reconciler.reconcile('default/u', signal);
  await client.mergePatch('u', 'default', { spec: { powerState: 'Suspended' } });
  const criuLog = "Error (criu/namespaces.c:1234): Can't setns 4/net: Operation not permitted";
  runtime.failNextCheckpoint = new KvzError('CommandFailed', 'runc checkpoint failed', { details: { reason: 'CheckpointFailed', criuLog } });
  const res = await reconciler.reconcile('default/u', signal);
  assert.ok((res.requeueAfterMs ?? 0) > 0, 'looked at again later');
  assert.equal((await runtime.inspect(uid)).state, 'running');
  const got = await client.get('u', 'default');
  assert.equal(got?.status?.phase, 'Running');
  assert.equal(cond(got, 'Ready')?.status, 'True');
  const s = cond(got, 'Suspended');
  assert.equal(s?.status, 'False');
  assert.equal(s?.reason, 'CheckpointFailed');
  assert.match(s?.message ?? '', /Can't setns/);
  assert.equal(events.filter((e) => e.reason === 'SuspendFailed' && e.type === 'Warning').length, 1);

  // Not again right away: the next look waits out the back-off.
  await reconciler.reconcile('default/u', signal);
  assert.equal(runtime.calls.filter((c) => c === `suspend ${uid}`).length, 1);
  advance(1_500);
  await reconciler.reconcile('default/u', signal);
  assert.equal(runtime.calls.filter((c) => c === `suspend ${uid}`).length, 2);
  assert.equal((await runtime.inspect(uid)).state, 'suspended', 'the retry after the back-off succeeded');
});

test('Stopped while suspended discards the checkpoint', async (t) => {
  const { client, runtime, reconciler } = setup(t);
  const ve = await client.create(aVE('d', { powerState: 'Running', security: { userNamespace: false } }));
  await reconciler.reconcile('default/d', signal);
  await client.mergePatch('d', 'default', { spec: { powerState: 'Suspended' } });
  await reconciler.reconcile('default/d', signal);
  await client.mergePatch('d', 'default', { spec: { powerState: 'Stopped' } });
  await reconciler.reconcile('default/d', signal);
  const st = (await runtime.inspect(ve.metadata.uid!)).state;
  assert.ok(st === 'stopped' || st === 'absent', `checkpoint discarded, VE not running (${st})`);
  assert.equal((await client.get('d', 'default'))?.status?.phase, 'Stopped');
});

test('a VE under migration (annotation) is left alone: a dumped VE is not restarted', async (t) => {
  const { client, runtime, reconciler } = setup(t);
  const ve = await client.create(aVE('m', { security: { userNamespace: false } }));
  const uid = ve.metadata.uid!;
  await reconciler.reconcile('default/m', signal);
  await client.mergePatch('m', 'default', { metadata: { annotations: { [MIGRATION_ANNOTATION]: 'mig1' } } });
  await runtime.migration.checkpoint(uid, { imageDir: join(runtime.dir, 'img') });
  const starts = runtime.calls.filter((c) => c === `ensureRunning ${uid}`).length;
  await reconciler.reconcile('default/m', signal);
  assert.equal(runtime.calls.filter((c) => c === `ensureRunning ${uid}`).length, starts);
  assert.equal((await runtime.inspect(uid)).state, 'absent');
  // Deleted mid-migration: the finalizer waits for the migration to end.
  await client.delete('m', 'default');
  await reconciler.reconcile('default/m', signal);
  assert.ok(await client.get('m', 'default'), 'still there while annotated');
  assert.ok(!runtime.calls.includes(`destroy ${uid}`));
});
