// Resources in VE status on fakes (FakeApi, FakeRuntime, a fake clock): appliedResources,
// pendingResources and ResourcesApplied after live and restart-only changes; spec → limits for
// the newer fields; beancounter rows; the refresh pass publishing only changes, rate-limited.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { NODE_LABEL, VE_RESOURCE, type VirtualEnvironment } from '../../../src/api/types.js';
import { silentLogger } from '../../../src/core/logger.js';
import { BeancounterRefresher, beancountersFrom } from '../../../src/node-agent/beancounters.js';
import { BeancounterMetrics } from '../../../src/node-agent/metrics.js';
import { resourcesReport } from '../../../src/node-agent/resources-status.js';
import { limitsFromSpec } from '../../../src/node-agent/ve-config.js';
import { VEReconciler } from '../../../src/node-agent/ve-reconciler.js';
import { RestartBackoff } from '../../../src/node-agent/lifecycle.js';
import type { VEUsage } from '../../../src/runtime/index.js';
import { FakeApi } from '../../helpers/fake-resource-client.js';
import { FakeRuntime } from '../../helpers/fake-runtime.js';

const ref = { ...VE_RESOURCE, namespaced: true };
const signal = new AbortController().signal;

function setup() {
  const api = new FakeApi();
  const client = api.client<VirtualEnvironment>(ref);
  const runtime = new FakeRuntime();
  const reconciler = new VEReconciler({ client, runtime, nodeName: 'n1', subnet: '10.213.7.0/24', knownVEs: () => api.objects(ref) as VirtualEnvironment[], stopTimeoutMs: 100, resyncMs: 30_000, log: silentLogger,
    // A killed init comes back at once here; the back-off itself is tested in lifecycle.test.ts.
    backoff: new RestartBackoff(undefined, { initialMs: 0, maxMs: 0, resetAfterMs: 600_000 }) });
  return { api, client, runtime, reconciler };
}

function aVE(name: string, resources: VirtualEnvironment['spec']['resources']): VirtualEnvironment {
  return { apiVersion: 'kubevz.io/v1alpha1', kind: 'VirtualEnvironment', metadata: { name, namespace: 'default', labels: { [NODE_LABEL]: 'n1' } }, spec: { template: 'busybox', resources } };
}

test('spec → limits: guarantee, cpuset, openFiles, disk I/O; bad values name the field', () => {
  const ve = aVE('x', { memory: { limit: '1Gi', guarantee: '256Mi' }, cpu: { cpuset: '1,0' }, openFiles: 4096, disk: { ioWeight: 500, readBps: '10Mi', writeBps: 1000000, readIops: 100, writeIops: 50 } });
  assert.deepEqual(limitsFromSpec(ve), { memoryBytes: 1 << 30, memoryGuaranteeBytes: 256 << 20, cpuset: '0-1', openFiles: 4096, ioWeight: 500, readBps: 10 << 20, writeBps: 1000000, readIops: 100, writeIops: 50 });
  assert.throws(() => limitsFromSpec(aVE('x', { disk: { writeBps: 'fast' } })), (err: Error & { code?: string }) => err.code === 'Terminal' && /spec\.resources\.disk\.writeBps: invalid value "fast"/.test(err.message));
  assert.throws(() => limitsFromSpec(aVE('x', { cpu: { cpuset: '3-1' } })), /spec\.resources\.cpu\.cpuset: .*runs backwards/);
  assert.throws(() => limitsFromSpec(aVE('x', { cpu: { limit: '150 percent' } })), /spec\.resources\.cpu\.limit: invalid value "150 percent"/);
});

test('status shows applied resources; a live change applies, an openFiles change waits for a restart', async () => {
  const { client, runtime, reconciler } = setup();
  const ve = await client.create(aVE('a', { memory: { limit: '256Mi' }, cpu: { limit: '50%', units: 500 }, processes: 50, openFiles: 1024 }));
  await reconciler.reconcile('default/a', signal);
  let got = (await client.get('a', 'default'))!;
  assert.deepEqual(got.status?.appliedResources, {
    cpu: { units: 500, limit: '50%', cpuset: 'all' },
    memory: { limit: '256Mi', swap: 0, guarantee: 'none' },
    processes: 50,
    openFiles: 1024,
    disk: { ioWeight: 100, readBps: 'unlimited', writeBps: 'unlimited', readIops: 'unlimited', writeIops: 'unlimited' },
  });
  assert.deepEqual(got.status?.pendingResources, []);
  assert.equal(got.status?.conditions?.find((c) => c.type === 'ResourcesApplied')?.status, 'True');

  await client.mergePatch('a', 'default', { spec: { resources: { processes: 80, openFiles: 4096 } } });
  await reconciler.reconcile('default/a', signal);
  got = (await client.get('a', 'default'))!;
  assert.equal((got.status?.appliedResources as { processes: number }).processes, 80, 'processes changed live');
  assert.equal(got.status?.pendingResources?.length, 1);
  assert.equal(got.status?.pendingResources?.[0]?.field, 'spec.resources.openFiles');
  const pending: { field: string; reason: string }[] = got.status?.pendingResources ?? [];
  assert.match(pending[0]?.reason ?? '', /^RestartRequired: .*from 1024 to 4096/);
  const cond = got.status?.conditions?.find((c) => c.type === 'ResourcesApplied');
  assert.equal(cond?.status, 'False');
  assert.equal(String(cond?.reason), 'RestartRequired');
  const pid = got.status?.initPid;

  runtime.kill(ve.metadata.uid!);
  await reconciler.reconcile('default/a', signal);
  got = (await client.get('a', 'default'))!;
  assert.notEqual(got.status?.initPid, pid, 'restarted');
  assert.deepEqual(got.status?.pendingResources, [], 'applied by the restart');
  assert.equal(got.status?.conditions?.find((c) => c.type === 'ResourcesApplied')?.reason, 'Applied');
});

test('a live field the host does not hold is pending with NotApplied', () => {
  const r = resourcesReport({ ioWeight: 500, writeBps: 1 << 20 }, {});
  assert.deepEqual(r.pending.map((p) => p.field), ['spec.resources.disk.ioWeight', 'spec.resources.disk.writeBps']);
  assert.match(r.pending[0]!.reason, /^NotApplied: the host holds 100 \(the default\), not 500/);
  assert.equal(r.condition.reason, 'NotApplied');
  assert.match(resourcesReport({ openFiles: 50_000 }, { openFiles: 20_000 }, { nofileHard: 20_000 }).pending[0]!.reason, /^HostLimit: this node's hard RLIMIT_NOFILE is 20000/);
});

function usage(over: Partial<VEUsage> = {}): VEUsage {
  return {
    memory: { held: 10 << 20, maxheld: 20 << 20, limit: 64 << 20, failcnt: 3, oomKills: 1 },
    swap: { held: 0, maxheld: 4096, limit: 0, failcnt: 2 },
    processes: { held: 5, limit: 20, failcnt: 7 },
    cpu: { usageUs: 1_000_000, periods: 10, throttledPeriods: 4, throttledUs: 100 },
    io: { readBytes: 0, writeBytes: 0, readOps: 0, writeOps: 0 },
    openFiles: 12,
    sockets: { tcp: 2, other: 3 },
    network: { rxBytes: 100, txBytes: 200 },
    ...over,
  };
}

test('beancounter rows in OpenVZ units', () => {
  const rows = beancountersFrom(usage(), { limits: { memoryGuaranteeBytes: 8 << 20, openFiles: 1024, cpuShares: 3000, cpuQuotaUs: 50_000, cpuPeriodUs: 100_000 }, disk: { sizeBytes: 2 * 2 ** 30, inodes: 131072, mounted: true, usedBytes: 1 << 20, inodesUsed: 40 }, cpu: { millicores: 480, maxMillicores: 500 } });
  const by = Object.fromEntries(rows.map((r) => [r.resource, r]));
  assert.deepEqual(by.physpages, { resource: 'physpages', held: 2560, maxheld: 5120, barrier: 2048, limit: 16384, failcnt: 3 });
  assert.deepEqual(by.swappages, { resource: 'swappages', held: 0, maxheld: 1, barrier: 0, limit: 0, failcnt: 2 });
  assert.equal(by.oomguarpages?.failcnt, 1, 'OOM kills');
  assert.deepEqual(by.numproc, { resource: 'numproc', held: 5, maxheld: 5, barrier: 20, limit: 20, failcnt: 7 });
  assert.deepEqual(by.cpu, { resource: 'cpu', held: 480, maxheld: 500, barrier: 3000, limit: 500, failcnt: 4 });
  assert.deepEqual(by.numtcpsock, { resource: 'numtcpsock', held: 2, maxheld: 2, barrier: 'unlimited', limit: 'unlimited', failcnt: 0 });
  assert.deepEqual(by.diskspace, { resource: 'diskspace', held: 1024, maxheld: 1024, barrier: 2097152, limit: 2097152, failcnt: 0 });
  assert.equal(by.numfile?.held, 12);
  assert.equal(by.nettxbytes?.held, 200);
});

test('one refresh pass for all VEs: status only on change, at most every minPublishMs per VE; metrics follow', async () => {
  const { api, client, runtime, reconciler } = setup();
  for (const n of ['a', 'b']) {
    await client.create(aVE(n, { processes: 20 }));
    await reconciler.reconcile(`default/${n}`, signal);
  }
  let now = 0;
  const metrics = new BeancounterMetrics();
  let writes = 0;
  const counting = { ...client, patchStatus: (...a: Parameters<typeof client.patchStatus>) => (writes++, client.patchStatus(...a)) } as typeof client;
  const r = new BeancounterRefresher({ runtime, client: counting, ves: () => api.objects(ref) as VirtualEnvironment[], log: silentLogger, metrics, minPublishMs: 5000, now: () => now });
  assert.deepEqual(await r.refresh(), { read: 2, published: 2, failed: 0 });
  const a = (await client.get('a', 'default'))!;
  assert.equal(a.status?.beancounters?.find((b) => b.resource === 'numproc')?.limit, 20);

  now = 1000;
  const uid = a.metadata.uid!;
  runtime.usage.set(uid, usage({ processes: { held: 9, limit: 20, failcnt: 1 } }));
  assert.equal((await r.refresh()).published, 0, 'a changed but was published 1 s ago; b did not change');
  now = 6000;
  assert.equal((await r.refresh()).published, 1, 'a publishes once the interval passed; b is unchanged');
  assert.equal((await client.get('a', 'default'))!.status?.beancounters?.find((b) => b.resource === 'numproc')?.held, 9);
  now = 20_000;
  assert.equal((await r.refresh()).published, 0, 'nothing changed: nothing written');
  assert.equal(writes, 3);
  const text = await metrics.registry.metrics();
  assert.match(text, /kubevz_beancounter_failcnt\{namespace="default",name="a",resource="numproc"\} 1/);
  assert.match(text, /kubevz_beancounter_held\{namespace="default",name="b",resource="numproc"\} 1/);
});

test('a VE whose cgroup vanished mid-pass is skipped, the others are read; disk figures are re-read every diskIntervalMs', async () => {
  const { api, client, runtime, reconciler } = setup();
  for (const n of ['c', 'd']) {
    await client.create(aVE(n, { processes: 20 }));
    await reconciler.reconcile(`default/${n}`, signal);
  }
  const gone = (await client.get('c', 'default'))!.metadata.uid!;
  let diskReads = 0;
  let now = 0;
  const flaky = Object.create(runtime) as typeof runtime;
  flaky.readUsage = async (uid: string) => {
    if (uid === gone) throw Object.assign(new Error('failed to read memory.usage_in_bytes: ENOENT'), { code: 'NotFound' });
    return runtime.readUsage(uid);
  };
  flaky.diskUsage = async (uid: string) => {
    if (uid !== gone) diskReads++;
    return { sizeBytes: 1 << 30, inodes: 1000, mounted: true, usedBytes: diskReads << 20, inodesUsed: 5 };
  };
  const metrics = new BeancounterMetrics();
  const r = new BeancounterRefresher({ runtime: flaky, client, ves: () => api.objects(ref) as VirtualEnvironment[], log: silentLogger, metrics, minPublishMs: 0, diskIntervalMs: 10_000, now: () => now });
  assert.deepEqual(await r.refresh(), { read: 1, published: 1, failed: 1 });
  const reads = diskReads;
  now = 2000;
  await r.refresh();
  assert.equal(diskReads, reads, 'disk not read again within 10 s');
  const d = () => client.get('d', 'default').then((v) => v!.status?.beancounters?.find((b) => b.resource === 'diskspace')?.held);
  assert.equal(await d(), 1024 * reads, 'the kept disk reading is still shown');
  now = 10_000;
  await r.refresh();
  assert.ok(diskReads > reads, 'read again after 10 s');
  assert.equal(await d(), 1024 * diskReads);
});

test('metrics: a changed value is exported, an unlimited one and a vanished row drop their series', async () => {
  const m = new BeancounterMetrics();
  const ve = { namespace: 'default', name: 'm' };
  const row = (resource: string, held: number, limit: number | string) => ({ resource, held, maxheld: held, barrier: 0, limit, failcnt: 0 });
  m.set(ve, [row('numproc', 3, 20), row('numfile', 8, 100)]);
  m.set(ve, [row('numproc', 3, 20), row('numfile', 8, 100)]);
  m.set(ve, [row('numproc', 4, 'unlimited')]);
  const text = await m.registry.metrics();
  assert.match(text, /kubevz_beancounter_held\{namespace="default",name="m",resource="numproc"\} 4/);
  assert.doesNotMatch(text, /kubevz_beancounter_limit\{[^}]*resource="numproc"\}/, 'unlimited: no limit series');
  assert.doesNotMatch(text, /resource="numfile"/, 'the row went away: so did its series');
  m.set(ve, [row('numproc', 4, 30)]);
  assert.match(await m.registry.metrics(), /kubevz_beancounter_limit\{namespace="default",name="m",resource="numproc"\} 30/, 'a limit set again is exported again');
  m.retain([]);
  assert.doesNotMatch(await m.registry.metrics(), /name="m"/);
});
