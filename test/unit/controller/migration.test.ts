// Migration orchestration on FakeApi with a fixed clock: the transition table, pre-flight refusals,
// the happy path to PreparingTarget (annotation + credential Secret), terminal clean-up, timeout,
// abort by deletion, the resourceVersion guard, and spec.nodeName changes becoming migrations.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { canTransition, controllerMayFail, isTerminal, MIGRATION_PHASE_ORDER, MIGRATION_PHASE_TABLE, transitionPatch } from '../../../src/api/migration-phases.js';
import { MIGRATION_ANNOTATION, MIGRATION_TOKEN_KEY, NODE_LABEL, VE_RESOURCE, VEM_RESOURCE, VENODE_RESOURCE, type MigrationPhase, type VEPhase, type VEMigration, type VENode, type VirtualEnvironment } from '../../../src/api/types.js';
import type { EventRecorder, EventType } from '../../../src/core/events.js';
import { errorCode } from '../../../src/core/errors.js';
import { silentLogger } from '../../../src/core/logger.js';
import { MIGRATION_FINALIZER, MigrationController, PinnedMove, SECRET_REF, type Secret } from '../../../src/controller/migration.js';
import { estimateDowntimeMs, inSubnet } from '../../../src/controller/migration-preflight.js';
import { Scheduler } from '../../../src/controller/scheduler.js';
import { FakeApi } from '../../helpers/fake-resource-client.js';

const veRef = { ...VE_RESOURCE, namespaced: true };
const nodeRef = { ...VENODE_RESOURCE, namespaced: false };
const vemRef = { ...VEM_RESOURCE, namespaced: true };
const T0 = Date.parse('2026-01-01T12:00:00Z');

class Recorded implements EventRecorder {
  readonly events: { name?: string; type: EventType; reason: string; message: string }[] = [];
  event(obj: { metadata?: { name?: string } }, type: EventType, reason: string, message: string): void {
    this.events.push({ name: obj.metadata?.name, type, reason, message });
  }
}

function aNode(name: string, o: { criu?: boolean; cgroup?: 'v1' | 'v2'; criuVersion?: string; subnet?: string; memory?: string; cordoned?: boolean } = {}): VENode {
  return {
    apiVersion: 'kubevz.io/v1alpha1', kind: 'VENode', metadata: { name, labels: { [NODE_LABEL]: name } }, spec: o.cordoned ? { unschedulable: true } : {},
    status: {
      allocatable: { cpu: '4', memory: o.memory ?? '4Gi', disk: '100Gi' },
      features: { criu: o.criu ?? true, cgroupVersion: o.cgroup ?? 'v2', criuVersion: o.criuVersion ?? '4.2.1' },
      nodeInfo: { subnet: o.subnet ?? '10.213.0.0/24' },
      heartbeatTime: new Date(T0 - 1000).toISOString(),
      conditions: [{ type: 'Ready', status: 'True', reason: 'AgentReady', message: '', lastTransitionTime: '2026-01-01T00:00:00Z' }],
    },
  };
}

interface VEOpts { node?: string; phase?: VEPhase; userns?: boolean; memHeld?: number; addresses?: string[]; memoryLimit?: string; pinned?: string }

async function setup(o: { nodes?: VENode[]; ve?: VEOpts; now?: () => number } = {}) {
  let now = T0;
  const api = new FakeApi({ now: () => new Date(now) });
  const ves = api.client<VirtualEnvironment>(veRef);
  const nodes = api.client<VENode>(nodeRef);
  const migrations = api.client<VEMigration>(vemRef);
  const secrets = api.client<Secret>(SECRET_REF);
  for (const n of o.nodes ?? [aNode('a'), aNode('b')]) {
    await nodes.create(n);
    await nodes.patchStatus(n.metadata.name, undefined, n.status!);
  }
  const v = o.ve ?? {};
  const node = v.node ?? 'a';
  await ves.create({
    apiVersion: 'kubevz.io/v1alpha1', kind: 'VirtualEnvironment',
    metadata: { name: 'web1', namespace: 'default', labels: { [NODE_LABEL]: node } },
    spec: { template: 'busybox', ...(v.pinned ? { nodeName: v.pinned } : {}), ...(v.memoryLimit ? { resources: { memory: { limit: v.memoryLimit } } } : {}) },
  });
  await ves.patchStatus('web1', 'default', {
    phase: v.phase ?? 'Running', nodeName: node, addresses: v.addresses ?? ['10.213.0.10'],
    beancounters: [{ resource: 'memory', held: v.memHeld ?? 50_000_000 }],
    security: { userNamespace: v.userns ?? false, privileged: !(v.userns ?? false) },
  });
  const events = new Recorded();
  const scheduler = new Scheduler({ client: ves, nodes: () => api.objects(nodeRef) as VENode[], ves: () => api.objects(veRef) as VirtualEnvironment[], log: silentLogger, now: () => now });
  const ctl = new MigrationController({
    migrations, ves, secrets, nodes: () => api.objects(nodeRef) as VENode[], allocated: () => scheduler.allocated(), events, log: silentLogger, now: () => now, nodeGraceMs: 40_000,
  });
  const create = async (spec: Partial<VEMigration['spec']> = {}, name = 'm1') =>
    migrations.create({ apiVersion: 'kubevz.io/v1alpha1', kind: 'VEMigration', metadata: { name, namespace: 'default' }, spec: { ve: 'web1', targetNode: 'b', mode: 'live', ...spec } });
  /** Reconciles until the phase stops changing (or `until` is reached). */
  const drive = async (name = 'm1', until?: MigrationPhase) => {
    for (let i = 0; i < 20; i++) {
      const before = await migrations.get(name, 'default');
      if (!before) return undefined;
      await ctl.reconcile(`default/${name}`);
      const after = await migrations.get(name, 'default');
      if (!after || (until && after.status?.phase === until)) return after;
      if (after.metadata.resourceVersion === before.metadata.resourceVersion) return after;
    }
    return migrations.get(name, 'default');
  };
  /** What an agent writes: a guarded transition. */
  const agentWrite = async (to: MigrationPhase, status: Record<string, unknown> = {}, name = 'm1') => {
    const m = (await migrations.get(name, 'default'))!;
    return migrations.jsonPatchStatus(name, 'default', transitionPatch(m, to, { status, now: new Date(now) }));
  };
  return { api, ves, nodes, migrations, secrets, ctl, events, create, drive, agentWrite, advance: (ms: number) => (now += ms), now: () => now };
}

describe('migration phase table', () => {
  it('allows the ADR path and Failed from every non-terminal phase, nothing after a terminal one', () => {
    const path: MigrationPhase[] = ['Pending', 'Scheduling', 'PreparingTarget', 'TargetReady', 'Checkpointing', 'Transferring', 'Restoring', 'Succeeded'];
    assert.equal(canTransition(undefined, 'Pending'), true);
    for (let i = 1; i < path.length; i++) assert.equal(canTransition(path[i - 1], path[i]!), true, `${path[i - 1]} → ${path[i]}`);
    for (const p of MIGRATION_PHASE_ORDER) {
      if (isTerminal(p)) assert.deepEqual(MIGRATION_PHASE_TABLE[p].next, []);
      else assert.equal(canTransition(p, 'Failed'), true, p);
    }
    assert.equal(canTransition('PreparingTarget', 'Checkpointing'), false);
    assert.equal(canTransition('Succeeded', 'Failed'), false);
    assert.deepEqual(MIGRATION_PHASE_TABLE.TargetReady.writers, ['target']);
    assert.deepEqual(MIGRATION_PHASE_TABLE.Restoring.writers, ['source']);
    assert.equal(controllerMayFail('Transferring'), true);
    assert.equal(controllerMayFail('Restoring'), false);
    assert.throws(() => transitionPatch({ metadata: { name: 'x', namespace: 'd', resourceVersion: '1' }, spec: { ve: 'v' }, status: { phase: 'Succeeded' } }, 'Failed'), /cannot go from Succeeded to Failed/);
  });

  it('a transition patch appends to transitions and is refused (Conflict) once the object moved on', async () => {
    const h = await setup();
    const m = await h.create();
    await h.migrations.jsonPatchStatus('m1', 'default', transitionPatch(m, 'Pending', { message: 'accepted', now: new Date(T0) }));
    const stale = m; // read before the write above
    await assert.rejects(h.migrations.jsonPatchStatus('m1', 'default', transitionPatch({ ...stale, status: { phase: 'Pending' } }, 'Scheduling')), (e) => errorCode(e) === 'Conflict');
    const now = (await h.migrations.get('m1', 'default'))!;
    await h.migrations.jsonPatchStatus('m1', 'default', transitionPatch(now, 'Scheduling', { now: new Date(T0 + 5) }));
    const after = (await h.migrations.get('m1', 'default'))!;
    assert.deepEqual(after.status?.transitions?.map((t) => t.phase), ['Pending', 'Scheduling']);
    assert.equal(after.status?.phase, 'Scheduling');
  });

  it('helpers: subnet containment and the downtime estimate', () => {
    assert.equal(inSubnet('10.213.0.10', '10.213.0.0/24'), true);
    assert.equal(inSubnet('10.213.1.10/24', '10.213.0.0/24'), false);
    assert.equal(inSubnet('fe80::1', '10.213.0.0/24'), undefined);
    // 300 ms + 1 GB at 100 MB/s
    assert.equal(estimateDowntimeMs({ metadata: { name: 'v', namespace: 'd' }, spec: { template: 't' }, status: { beancounters: [{ resource: 'memory', held: 1_000_000_000 }] } }), 10_300);
  });
});

describe('migration controller', () => {
  it('happy path: Pending → Scheduling → PreparingTarget annotates the VE, makes the Secret, fills status', async () => {
    const h = await setup();
    await h.create();
    const m = (await h.drive())!;
    assert.equal(m.status?.phase, 'PreparingTarget', m.status?.message);
    assert.deepEqual(m.status?.transitions?.map((t) => t.phase), ['Pending', 'Scheduling', 'PreparingTarget']);
    assert.ok(m.metadata.finalizers?.includes(MIGRATION_FINALIZER));
    assert.equal(m.status?.sourceNode, 'a');
    assert.equal(m.status?.targetNode, 'b');
    const ve = (await h.ves.get('web1', 'default'))!;
    assert.equal(m.status?.veUid, ve.metadata.uid);
    assert.equal(ve.metadata.annotations?.[MIGRATION_ANNOTATION], 'm1');
    assert.equal(m.status?.credentialSecret, 'm1-credential');
    const secret = (await h.secrets.get('m1-credential', 'default'))!;
    assert.equal(secret.type, 'Opaque');
    assert.match(Buffer.from(secret.data![MIGRATION_TOKEN_KEY]!, 'base64').toString(), /^[0-9a-f]{64}$/, '32 random bytes, hex: printable for an HTTP header');
    assert.deepEqual((secret.metadata!.ownerReferences as { kind: string; uid: string }[]).map((r) => [r.kind, r.uid]), [['VEMigration', m.metadata.uid]]);
    assert.equal(m.status?.estimatedDowntimeMs, 800); // 300 + 50 MB / 100 MB/s
    // Reconciling again changes nothing (waits for the target agent).
    const rv = m.metadata.resourceVersion;
    await h.ctl.reconcile('default/m1');
    assert.equal((await h.migrations.get('m1', 'default'))!.metadata.resourceVersion, rv);
  });

  it('a VE in a user namespace moves live too (CRIU makes its netns anew on the target)', async () => {
    const h = await setup({ ve: { userns: true } });
    await h.create();
    const m = (await h.drive())!;
    assert.equal(m.status?.phase, 'PreparingTarget', m.status?.message);
  });

  it('picks a Ready node other than the source when no target is given', async () => {
    const h = await setup({ nodes: [aNode('a'), aNode('b', { cordoned: true }), aNode('c')] });
    await h.create({ targetNode: undefined });
    const m = (await h.drive())!;
    assert.equal(m.status?.phase, 'PreparingTarget', m.status?.message);
    assert.equal(m.status?.targetNode, 'c');
  });

  const refusals: { title: string; nodes?: VENode[]; ve?: VEOpts; spec?: Partial<VEMigration['spec']>; reason: string; text: RegExp }[] = [
    { title: 'CRIU missing on the target', nodes: [aNode('a'), aNode('b', { criu: false })], reason: 'CheckpointUnsupported', text: /target node b cannot checkpoint/ },
    { title: 'different CRIU versions', nodes: [aNode('a'), aNode('b', { criuVersion: '4.1' })], reason: 'CriuVersionMismatch', text: /CRIU 4\.2\.1 and target b CRIU 4\.1/ },
    { title: 'different cgroup versions', nodes: [aNode('a'), aNode('b', { cgroup: 'v1' })], reason: 'CgroupVersionMismatch', text: /cgroup v2 and target b cgroup v1/ },
    { title: 'addresses outside the target subnet', nodes: [aNode('a'), aNode('b', { subnet: '10.99.0.0/24' })], reason: 'SubnetMismatch', text: /10\.213\.0\.10 is outside target node b's bridge subnet 10\.99\.0\.0\/24/ },
    { title: 'not enough memory on the target', nodes: [aNode('a'), aNode('b', { memory: '1Gi' })], ve: { memoryLimit: '2Gi' }, reason: 'InsufficientCapacity', text: /insufficient memory/ },
    { title: 'downtime estimate over maxDowntimeMs', ve: { memHeld: 2_000_000_000 }, spec: { maxDowntimeMs: 5000 }, reason: 'DowntimeEstimateExceeded', text: /estimated downtime 20300 ms .* exceeds maxDowntimeMs 5000/ },
    { title: 'live needs a Running VE', ve: { phase: 'Stopped' }, reason: 'VENotRunning', text: /live migration needs a Running VE/ },
    { title: 'target cordoned', nodes: [aNode('a'), aNode('b', { cordoned: true })], reason: 'TargetUnschedulable', text: /cordoned/ },
    { title: 'target is the source', spec: { targetNode: 'a' }, reason: 'SameNode', text: /already runs on node a/ },
  ];
  for (const r of refusals) {
    it(`pre-flight refuses: ${r.title} (Failed, nothing touched)`, async () => {
      const h = await setup({ nodes: r.nodes, ve: r.ve });
      await h.create(r.spec);
      const m = (await h.drive())!;
      assert.equal(m.status?.phase, 'Failed');
      assert.equal(m.status?.reason, r.reason, m.status?.message);
      assert.match(m.status?.message ?? '', r.text);
      const ve = (await h.ves.get('web1', 'default'))!;
      assert.equal(ve.metadata.annotations?.[MIGRATION_ANNOTATION], undefined);
      assert.equal(h.api.objects(SECRET_REF).length, 0);
      // Terminal clean-up dropped the finalizer.
      assert.equal(m.metadata.finalizers, undefined);
      assert.equal(ve.metadata.labels?.[NODE_LABEL], 'a');
    });
  }

  it('allowDowntimeOverrun goes ahead despite the estimate; offline mode ignores it and CRIU', async () => {
    const h = await setup({ ve: { memHeld: 2_000_000_000, userns: true }, nodes: [aNode('a'), aNode('b', { criu: false })] });
    await h.create({ mode: 'offline' });
    assert.equal((await h.drive())!.status?.phase, 'PreparingTarget');
  });

  it('dryRun runs every check, ends Succeeded (DryRun) and writes nothing but the migration', async () => {
    const h = await setup();
    await h.create({ dryRun: true });
    const start = h.api.writes.length;
    const m = (await h.drive())!;
    assert.equal(m.status?.phase, 'Succeeded');
    assert.equal(m.status?.reason, 'DryRun');
    assert.match(m.status?.message ?? '', /CRIU usable on both nodes.*estimated downtime 800 ms within 5000 ms/);
    assert.deepEqual(h.api.writes.slice(start).filter((w) => !w.includes('vemigrations')), []);
    const ve = (await h.ves.get('web1', 'default'))!;
    assert.equal(ve.metadata.labels?.[NODE_LABEL], 'a');
    assert.equal(ve.metadata.annotations, undefined);
  });

  it('Succeeded (written by the source agent) moves label, status.nodeName and the pin; removes annotation and Secret; drops the finalizer', async () => {
    const h = await setup({ ve: { pinned: 'a' } });
    await h.create();
    await h.drive();
    await h.agentWrite('TargetReady', { transfer: { address: '127.0.0.1', port: 1 } });
    await h.agentWrite('Checkpointing');
    await h.agentWrite('Transferring');
    await h.agentWrite('Restoring');
    await h.agentWrite('Succeeded', { downtimeMs: 420, method: 'stop-and-copy', bytesTransferred: 1234 });
    const m = (await h.drive())!;
    assert.equal(m.metadata.finalizers, undefined);
    const ve = (await h.ves.get('web1', 'default'))!;
    assert.equal(ve.metadata.labels?.[NODE_LABEL], 'b');
    assert.equal(ve.status?.nodeName, 'b');
    assert.equal(ve.spec.nodeName, 'b');
    assert.equal(ve.metadata.annotations?.[MIGRATION_ANNOTATION], undefined);
    assert.equal(await h.secrets.get('m1-credential', 'default'), undefined);
    const ev = h.events.events.find((e) => e.reason === 'Migrated');
    assert.ok(ev, JSON.stringify(h.events.events));
    assert.match(ev.message, /from node a to node b .*downtime 420 ms, stop-and-copy, 1234 bytes/);
  });

  it('a VE without spec.nodeName keeps it unset after moving', async () => {
    const h = await setup();
    await h.create();
    await h.drive();
    for (const p of ['TargetReady', 'Checkpointing', 'Transferring', 'Restoring', 'Succeeded'] as const) await h.agentWrite(p);
    await h.drive();
    const ve = (await h.ves.get('web1', 'default'))!;
    assert.equal(ve.spec.nodeName, undefined);
    assert.equal(ve.metadata.labels?.[NODE_LABEL], 'b');
  });

  it('Failed by an agent releases the VE on its source with a MigrationFailed event', async () => {
    const h = await setup();
    await h.create();
    await h.drive();
    await h.agentWrite('TargetReady');
    await h.agentWrite('Failed', { reason: 'CheckpointFailed', criuLog: 'Error (criu/cr-dump.c:1): boom' });
    await h.drive();
    const ve = (await h.ves.get('web1', 'default'))!;
    assert.equal(ve.metadata.labels?.[NODE_LABEL], 'a');
    assert.equal(ve.metadata.annotations?.[MIGRATION_ANNOTATION], undefined);
    assert.equal(h.api.objects(SECRET_REF).length, 0);
    assert.ok(h.events.events.some((e) => e.reason === 'MigrationFailed' && /CheckpointFailed/.test(e.message)));
  });

  it('times out before Restoring, but not during Restoring', async () => {
    const h = await setup();
    await h.create({ timeoutSeconds: 60 });
    await h.drive();
    await h.agentWrite('TargetReady');
    const r = await h.ctl.reconcile('default/m1');
    // It asks to be woken just after the deadline.
    assert.ok(r.requeueAfterMs !== undefined && r.requeueAfterMs <= 60_050 && r.requeueAfterMs > 0, String(r.requeueAfterMs));
    h.advance(61_000);
    const m = (await h.drive())!;
    assert.equal(m.status?.phase, 'Failed');
    assert.equal(m.status?.reason, 'Timeout');
    assert.equal((await h.ves.get('web1', 'default'))!.metadata.annotations?.[MIGRATION_ANNOTATION], undefined);

    const h2 = await setup();
    await h2.create({ timeoutSeconds: 60 });
    await h2.drive();
    for (const p of ['TargetReady', 'Checkpointing', 'Transferring', 'Restoring'] as const) await h2.agentWrite(p);
    h2.advance(120_000);
    const m2 = (await h2.drive())!;
    assert.equal(m2.status?.phase, 'Restoring');
    assert.equal((await h2.ves.get('web1', 'default'))!.metadata.annotations?.[MIGRATION_ANNOTATION], 'm1');
  });

  it('deleting a migration before Restoring aborts it, cleans up and lets it go', async () => {
    const h = await setup();
    await h.create();
    await h.drive();
    await h.agentWrite('TargetReady');
    await h.migrations.delete('m1', 'default');
    assert.ok((await h.migrations.get('m1', 'default'))?.metadata.deletionTimestamp);
    await h.ctl.reconcile('default/m1');
    const failed = (await h.migrations.get('m1', 'default'))!;
    assert.equal(failed.status?.phase, 'Failed');
    assert.equal(failed.status?.reason, 'Aborted');
    await h.ctl.reconcile('default/m1');
    assert.equal(await h.migrations.get('m1', 'default'), undefined);
    assert.equal(h.api.objects(SECRET_REF).length, 0);
    assert.equal((await h.ves.get('web1', 'default'))!.metadata.annotations?.[MIGRATION_ANNOTATION], undefined);
  });

  it('deleting during Restoring waits for the agents to end it', async () => {
    const h = await setup();
    await h.create();
    await h.drive();
    for (const p of ['TargetReady', 'Checkpointing', 'Transferring', 'Restoring'] as const) await h.agentWrite(p);
    await h.migrations.delete('m1', 'default');
    await h.ctl.reconcile('default/m1');
    assert.equal((await h.migrations.get('m1', 'default'))!.status?.phase, 'Restoring');
    await h.agentWrite('Succeeded', { downtimeMs: 1 });
    await h.ctl.reconcile('default/m1');
    assert.equal(await h.migrations.get('m1', 'default'), undefined);
    assert.equal((await h.ves.get('web1', 'default'))!.metadata.labels?.[NODE_LABEL], 'b');
  });

  it('a second migration of an annotated VE fails AlreadyMigrating', async () => {
    const h = await setup({ nodes: [aNode('a'), aNode('b'), aNode('c')] });
    await h.create();
    await h.drive();
    await h.create({ targetNode: 'c' }, 'm2');
    const m2 = (await h.drive('m2'))!;
    assert.equal(m2.status?.reason, 'AlreadyMigrating');
    assert.equal((await h.ves.get('web1', 'default'))!.metadata.annotations?.[MIGRATION_ANNOTATION], 'm1');
  });
});

describe('pinned move', () => {
  it('spec.nodeName of a running VE naming another node creates one live migration per generation', async () => {
    const h = await setup();
    const mover = new PinnedMove({ ves: h.ves, migrations: h.migrations, events: h.events, log: silentLogger, randomSuffix: () => 'x1' });
    await mover.reconcile('default/web1');
    assert.equal(h.api.objects(vemRef).length, 0, 'no pin, no migration');
    await h.ves.mergePatch('web1', 'default', { spec: { nodeName: 'b' } });
    await mover.reconcile('default/web1');
    await mover.reconcile('default/web1');
    const all = h.api.objects(vemRef) as VEMigration[];
    assert.deepEqual(all.map((m) => [m.metadata.name, m.spec.targetNode, m.spec.mode]), [['web1-to-b-x1', 'b', 'live']]);
    // The scheduler does not rebind the bound VE to the new node (that would cold-restart it).
    const scheduler = new Scheduler({ client: h.ves, nodes: () => h.api.objects(nodeRef) as VENode[], ves: () => h.api.objects(veRef) as VirtualEnvironment[], log: silentLogger, now: h.now });
    await scheduler.reconcile('default/web1');
    assert.equal((await h.ves.get('web1', 'default'))!.metadata.labels?.[NODE_LABEL], 'a');
    // A failed attempt is not retried for the same generation.
    await h.migrations.jsonPatchStatus('web1-to-b-x1', 'default', [{ op: 'add', path: '/status', value: { phase: 'Failed' } }]);
    await mover.reconcile('default/web1');
    assert.equal(h.api.objects(vemRef).length, 1);
  });
});

describe('controller wiring', () => {
  it('the Controller runs migrations from its informers and turns a pin change into a migration', async () => {
    const h = await setup();
    const { Controller } = await import('../../../src/controller/controller.js');
    const c = new Controller({ client: h.ves, nodes: h.nodes, migrations: h.migrations, secrets: h.secrets, log: silentLogger, now: h.now });
    await c.start();
    try {
      const eventually = async (what: string, check: () => Promise<boolean>) => {
        for (let i = 0; i < 200; i++) {
          if (await check()) return;
          await new Promise((r) => setTimeout(r, 10));
        }
        assert.fail(`timed out waiting for ${what}`);
      };
      await h.ves.mergePatch('web1', 'default', { spec: { nodeName: 'b' } });
      await eventually('a migration in PreparingTarget', async () => (h.api.objects(vemRef) as VEMigration[]).some((m) => m.status?.phase === 'PreparingTarget'));
      const [m] = h.api.objects(vemRef) as VEMigration[];
      assert.equal(m!.spec.targetNode, 'b');
      assert.equal((await h.ves.get('web1', 'default'))!.metadata.annotations?.[MIGRATION_ANNOTATION], m!.metadata.name);
    } finally {
      await c.stop();
    }
  });
});
