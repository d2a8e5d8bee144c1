// Migration between two node agents in one process: FakeApi, two fake runtimes with real disk
// files, the real data channel on loopback. The controller's part (annotation, Secret, phase
// PreparingTarget, the rebind after the end) is played by the test.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { MIGRATION_ANNOTATION, NODE_LABEL, VE_RESOURCE, VEM_RESOURCE, VENODE_RESOURCE, type KubeObject, type VEMigration, type VENode, type VirtualEnvironment } from '../../../src/api/types.js';
import { KvzError } from '../../../src/core/errors.js';
import { silentLogger } from '../../../src/core/logger.js';
import { NodeAgent } from '../../../src/node-agent/agent.js';
import { MigrationChannelClient, MigrationChannelServer } from '../../../src/node-agent/migration-channel.js';
import type { HostProbe } from '../../../src/node-agent/node-registration.js';
import { writeMarker } from '../../../src/node-agent/migration-status.js';
import { FakeApi } from '../../helpers/fake-resource-client.js';
import { MigratingFakeRuntime } from './migration-fakes.js';
import { until } from '../../helpers/until.js';

const veRef = { ...VE_RESOURCE, namespaced: true };
const vemRef = { ...VEM_RESOURCE, namespaced: true };
const secretRef = { group: '', version: 'v1', plural: 'secrets', kind: 'Secret', namespaced: true };
const TOKEN = 'tok-' + randomBytes(8).toString('hex');
const probe: HostProbe = {
  capacity: () => ({ cpuMilli: 4000, memoryBytes: 8 * 2 ** 30, diskBytes: 100 * 2 ** 30 }),
  features: async () => ({ cgroupVersion: 'v2', criu: true, criuVersion: '4.2.1', userNamespaces: true }),
  info: () => ({ kernelVersion: '6.1.0-test', hostname: 'test' }),
};


function world(t: { after(fn: () => Promise<void> | void): void }) {
  const dir = mkdtempSync(join(tmpdir(), 'kvz-mig-'));
  const api = new FakeApi();
  const ves = api.client<VirtualEnvironment>(veRef);
  const migs = api.client<VEMigration>(vemRef);
  const secrets = api.client<KubeObject>(secretRef);
  const agents: NodeAgent[] = [];
  const runtimes: Record<string, MigratingFakeRuntime> = {};
  const bootId = join(dir, 'boot_id');
  writeFileSync(bootId, 'boot-1\n');
  const nodes = api.client<VENode>({ ...VENODE_RESOURCE, namespaced: false });
  const agent = async (node: string, listen = '127.0.0.1:0') => {
    runtimes[node] ??= new MigratingFakeRuntime(join(dir, node, 'disks'));
    const stateDir = join(dir, node, 'state');
    mkdirSync(stateDir, { recursive: true });
    const a = new NodeAgent({
      nodeName: node, client: ves, runtime: runtimes[node]!, subnet: '10.213.9.0/24', stateDir, bootIdPath: bootId, log: silentLogger,
      stopTimeoutMs: 100, resyncMs: 200, orphanScanMs: 60_000, beancounters: { intervalMs: 60_000 },
      migrations: { client: migs, secrets, listen },
      registration: { nodes, probe, heartbeatMs: 60_000 },
    });
    await a.start();
    agents.push(a);
    return { agent: a, runtime: runtimes[node]!, stateDir };
  };
  t.after(async () => {
    for (const a of agents) await a.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  return { api, ves, migs, secrets, nodes, agent, dir };
}

async function aRunningVE(w: ReturnType<typeof world>, src: MigratingFakeRuntime): Promise<VirtualEnvironment> {
  const ve = await w.ves.create({
    apiVersion: 'kubevz.io/v1alpha1', kind: 'VirtualEnvironment',
    metadata: { name: 'web', namespace: 'default', labels: { [NODE_LABEL]: 'n1' } },
    spec: { template: 'busybox', network: { addresses: ['10.213.9.30/24'] }, resources: { disk: { space: '3Mi' } }, security: { userNamespace: false } },
  });
  await until('VE running on n1', async () => (await src.inspect(ve.metadata.uid!)).state === 'running');
  // The VE's disk: 3 MiB with data in two blocks (the third stays a hole).
  const disk = Buffer.alloc(3 << 20);
  disk.fill(0xab, 0, 1 << 20);
  disk.fill(0xcd, (1 << 20) + 5, (1 << 20) + 4096);
  writeFileSync(src.diskImagePath(ve.metadata.uid!), disk);
  return ve;
}

/** What the controller does up to PreparingTarget. */
async function startMigration(w: ReturnType<typeof world>, ve: VirtualEnvironment, mode: 'live' | 'offline' = 'live'): Promise<VEMigration> {
  await w.secrets.create({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'mig1-cred', namespace: 'default' }, data: { token: Buffer.from(TOKEN).toString('base64') } } as KubeObject);
  await w.ves.mergePatch(ve.metadata.name!, 'default', { metadata: { annotations: { [MIGRATION_ANNOTATION]: 'mig1' } } });
  await w.migs.create({ apiVersion: 'kubevz.io/v1alpha1', kind: 'VEMigration', metadata: { name: 'mig1', namespace: 'default' }, spec: { ve: 'web', targetNode: 'n2', mode, timeoutSeconds: 60 } });
  return w.migs.patchStatus('mig1', 'default', {
    phase: 'PreparingTarget', sourceNode: 'n1', targetNode: 'n2', veUid: ve.metadata.uid, credentialSecret: 'mig1-cred', startTime: new Date().toISOString(),
    transitions: [{ phase: 'PreparingTarget', time: new Date().toISOString() }],
  });
}

const ended = (w: ReturnType<typeof world>) => until('migration ended', async () => {
  const m = await w.migs.get('mig1', 'default');
  return m?.status?.phase === 'Succeeded' || m?.status?.phase === 'Failed' ? m : undefined;
});

test('a live migration between two agents over the channel ends Succeeded; the target runs the VE', async (t) => {
  const w = world(t);
  const a = await w.agent('n1');
  const b = await w.agent('n2');
  const ve = await aRunningVE(w, a.runtime);
  const uid = ve.metadata.uid!;
  const pid = (await a.runtime.inspect(uid)).pid;
  await startMigration(w, ve);
  const m = await ended(w);
  assert.equal(m.status?.phase, 'Succeeded', m.status?.message);
  assert.equal(m.status?.method, 'stop-and-copy');
  // Block 0 whole, of block 1 only the 64 KiB sub-block with data (the rest is zero on the target), the images.
  const moved = m.status?.bytesTransferred ?? 0;
  assert.ok(moved >= (1 << 20) + (64 << 10) + 300_000 && moved < (1 << 20) + (128 << 10) + 310_000, `disk blocks and images were moved (${moved} B)`);
  assert.equal(typeof m.status?.downtimeMs, 'number');
  assert.deepEqual(m.status?.transitions?.map((x) => x.phase), ['PreparingTarget', 'TargetReady', 'Checkpointing', 'Transferring', 'Restoring', 'Succeeded']);
  for (const k of ['prepareTarget', 'diskPrecopy', 'checkpoint', 'diskRelease', 'diskDelta', 'images', 'transfer', 'restore', 'total']) assert.equal(typeof m.status?.timings?.[k], 'number', k);
  const there = await b.runtime.inspect(uid);
  assert.equal(there.state, 'running');
  assert.equal(there.pid, pid, 'the same processes run on the target');
  assert.deepEqual(readFileSync(b.runtime.diskImagePath(uid)), readFileSync(a.runtime.diskImagePath(uid)), 'the disk arrived intact');
  // The source froze the dumped VE's disk instead of unmounting it, and thawed and released it after the success.
  const src = a.runtime.calls.filter((c) => /^(freezeDisk|thawDisk|releaseDisk) /.test(c)).map((c) => c.split(' ')[0]);
  assert.deepEqual(src, ['freezeDisk', 'thawDisk', 'releaseDisk']);
  assert.equal(a.runtime.frozen.size, 0, 'nothing left frozen on the source');
  // The target mounted the complete disk and wired the netns before the restore, while the data streamed.
  assert.deepEqual(b.runtime.mountedDisk.get(uid), readFileSync(a.runtime.diskImagePath(uid)), 'mounted only once the last block was in');
  const tgt = b.runtime.calls.map((c) => c.split(' ')[0]);
  assert.ok(tgt.indexOf('mountIncomingDisk') >= 0 && tgt.indexOf('mountIncomingDisk') < tgt.indexOf('restore'), `target calls: ${tgt.join(', ')}`);
  assert.ok(tgt.indexOf('prepareRestoreNetwork') >= 0 && tgt.indexOf('prepareRestoreNetwork') < tgt.indexOf('restore'), `target calls: ${tgt.join(', ')}`);
  assert.equal((await a.runtime.inspect(uid)).state, 'absent', 'nothing runs on the source');

  // The controller rebinds: the source's copy goes, the target adopts the VE without restarting it.
  await w.ves.mergePatch('web', 'default', { metadata: { labels: { [NODE_LABEL]: 'n2' }, annotations: { [MIGRATION_ANNOTATION]: null } } });
  await until('source copy removed', async () => !a.runtime.ves.has(uid));
  const adopted = await until('VE Running on n2', async () => {
    const v = await w.ves.get('web', 'default');
    return v?.status?.nodeName === 'n2' && v.status.phase === 'Running' ? v : undefined;
  });
  assert.equal(adopted.status?.initPid, pid);
});

test('a restore failure on the target ends Failed with the VE running on the source again', async (t) => {
  const w = world(t);
  const a = await w.agent('n1');
  const b = await w.agent('n2');
  const ve = await aRunningVE(w, a.runtime);
  const uid = ve.metadata.uid!;
  const pid = (await a.runtime.inspect(uid)).pid;
  b.runtime.failNextRestore = new KvzError('CommandFailed', 'runc restore failed', { details: { criuLog: 'Error (criu/cr-restore.c:42): restore failed for the test' } });
  await startMigration(w, ve);
  const m = await ended(w);
  assert.equal(m.status?.phase, 'Failed');
  assert.match(m.status?.criuLog ?? '', /restore failed for the test/);
  const home = await a.runtime.inspect(uid);
  assert.equal(home.state, 'running');
  assert.equal(home.pid, pid, 'restored from the dump on the source, not booted afresh');
  assert.equal(a.runtime.frozen.size, 0, 'the source thawed the disk before restoring onto it');
  await until('target dropped its copy', async () => !b.runtime.incoming.has(uid) && !b.runtime.ves.has(uid));
  assert.equal(existsSync(b.runtime.diskImagePath(uid)), false);
});

/** Target n2's agent dies in its restore, after the VE came up there: the source gets no answer. */
async function targetDiesInRestore(w: ReturnType<typeof world>) {
  const a = await w.agent('n1');
  const b = await w.agent('n2');
  const ve = await aRunningVE(w, a.runtime);
  const uid = ve.metadata.uid!;
  const pid = (await a.runtime.inspect(uid)).pid;
  let died = false;
  b.runtime.afterRestore = async () => {
    b.runtime.afterRestore = undefined;
    await b.agent.stop();
    died = true;
  };
  await startMigration(w, ve);
  await until('the target agent died in its restore', async () => died);
  const port = (await w.migs.get('mig1', 'default'))!.status!.transfer!.port;
  // The source keeps asking: no rollback, no second copy, the migration not ended.
  await new Promise((r) => setTimeout(r, 1200));
  assert.equal((await w.migs.get('mig1', 'default'))?.status?.phase, 'Restoring');
  assert.equal((await a.runtime.inspect(uid)).state, 'absent', 'the source did not bring the VE back while the target might run it');
  assert.equal((await b.runtime.inspect(uid)).state, 'running');
  return { a, b, uid, pid, port };
}

test('a target agent dying after its restore ran: the source waits for its answer, then Succeeded with one copy', async (t) => {
  const w = world(t);
  const { a, b, uid, pid, port } = await targetDiesInRestore(w);
  await w.agent('n2', `127.0.0.1:${port}`);
  const m = await ended(w);
  assert.equal(m.status?.phase, 'Succeeded', m.status?.message);
  assert.equal((await b.runtime.inspect(uid)).pid, pid, 'the restored VE runs on the target');
  assert.equal((await a.runtime.inspect(uid)).state, 'absent', 'and only there');
});

test('a target that never answers after the restore: deleting its VENode makes the source take the VE back', async (t) => {
  const w = world(t);
  const { a, uid, pid } = await targetDiesInRestore(w);
  await w.nodes.delete('n2');
  const m = await ended(w);
  assert.equal(m.status?.phase, 'Failed');
  assert.equal(m.status?.reason, 'TargetNodeGone', m.status?.message);
  const home = await a.runtime.inspect(uid);
  assert.equal(home.state, 'running');
  assert.equal(home.pid, pid, 'restored from its dump on the source');
});

test('the channel\'s state answer is final: it waits for a restore in progress, and no restore starts after it', async (t) => {
  const w = world(t);
  let finish!: () => void;
  let running = false;
  const handler = {
    digests: async () => [], writeBlocks: async () => {}, imageDir: () => join(w.dir, 'img'), abort: async () => {},
    restore: () => new Promise<{ ms: number }>((resolve) => { finish = () => { running = true; resolve({ ms: 1 }); }; }),
    running: async () => running,
  };
  const server = new MigrationChannelServer({ nodeName: 'n2', migrations: w.migs, secrets: w.secrets, handler, log: silentLogger });
  const { port } = await server.listen('127.0.0.1:0');
  t.after(() => server.close());
  await w.secrets.create({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'c', namespace: 'default' }, data: { token: Buffer.from(TOKEN).toString('base64') } } as KubeObject);
  for (const name of ['m', 'm2']) {
    await w.migs.create({ apiVersion: 'kubevz.io/v1alpha1', kind: 'VEMigration', metadata: { name, namespace: 'default' }, spec: { ve: 'web' } });
    await w.migs.patchStatus(name, 'default', { credentialSecret: 'c', veUid: 'u1', sourceNode: 'n1', phase: 'Transferring', targetNode: 'n2' });
  }
  const client = (name: string) => new MigrationChannelClient('127.0.0.1', port, 'default', name, TOKEN);
  const files = (name: string) => client(name).putCheckpoint([{ name: 'inventory.img', size: 2, open: async function* () { yield Buffer.from('{}'); } }]);
  await files('m');
  await files('m2');
  for (const name of ['m', 'm2']) await w.migs.patchStatus(name, 'default', { phase: 'Restoring' });
  const restore = client('m').restore();
  await until('the restore began', async () => finish !== undefined);
  const state = client('m').state();
  await new Promise((r) => setTimeout(r, 100));
  finish();
  assert.deepEqual(await state, { running: true }, 'answered after the restore ended');
  assert.deepEqual(await restore, { ms: 1 });
  // Asked first, restored never: a late restore request is refused.
  assert.deepEqual(await client('m2').state(), { running: true });
  await assert.rejects(client('m2').restore(), (e: KvzError) => e.details?.status === 409 && /asked for the VE's state/.test(e.message));
});

test('after a source agent restart mid-transfer the VE is rolled back and the migration fails', async (t) => {
  const w = world(t);
  const first = await w.agent('n1');
  const ve = await aRunningVE(w, first.runtime);
  const uid = ve.metadata.uid!;
  const pid = (await first.runtime.inspect(uid)).pid;
  await first.agent.stop();
  // What a crashed source leaves: a dump, the marker, the migration in Transferring.
  await startMigration(w, ve);
  await w.migs.patchStatus('mig1', 'default', { phase: 'Transferring' });
  const imageDir = join(first.stateDir, 'migrations', 'outgoing', 'x', 'images');
  await first.runtime.migration.checkpoint(uid, { imageDir });
  await first.runtime.migration.freezeDisk!(uid); // crashed with the disk frozen: recovery must thaw it before restoring
  const config = (await first.runtime.inspect(uid)).config;
  await writeMarker(first.stateDir, { namespace: 'default', name: 'mig1', migrationUid: (await w.migs.get('mig1', 'default'))!.metadata.uid, veUid: uid, mode: 'live', dumped: true, imageDir, config });
  assert.equal((await first.runtime.inspect(uid)).state, 'absent');

  const again = await w.agent('n1');
  const m = await ended(w);
  assert.equal(m.status?.phase, 'Failed');
  assert.equal(m.status?.reason, 'SourceAgentRestarted');
  const home = await again.runtime.inspect(uid);
  assert.equal(home.state, 'running');
  assert.equal(home.pid, pid, 'restored from the images left behind');
  assert.equal(existsSync(join(first.stateDir, 'migrations', 'default_mig1.json')), false, 'marker removed');
});

test('the channel refuses a wrong token, a migration that is over, and one that targets another node', async (t) => {
  const w = world(t);
  const written: Array<{ unit: number; frames: Array<[number, number]> }> = [];
  const handler = {
    digests: async () => ['x'],
    writeBlocks: async (_m: VEMigration, blocks: AsyncIterable<{ index: number; data: Buffer }>, unit: number) => {
      const frames: Array<[number, number]> = [];
      for await (const b of blocks) frames.push([b.index, b.data.length]);
      written.push({ unit, frames });
    },
    imageDir: () => join(w.dir, 'img'),
    restore: async () => ({ ms: 1 }), abort: async () => {}, running: async () => false,
  };
  const server = new MigrationChannelServer({ nodeName: 'n2', migrations: w.migs, secrets: w.secrets, handler, log: silentLogger });
  const { port } = await server.listen('127.0.0.1:0');
  t.after(() => server.close());
  await w.secrets.create({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'c', namespace: 'default' }, data: { token: Buffer.from(TOKEN).toString('base64') } } as KubeObject);
  const mk = async (name: string, status: VEMigration['status']) => {
    await w.migs.create({ apiVersion: 'kubevz.io/v1alpha1', kind: 'VEMigration', metadata: { name, namespace: 'default' }, spec: { ve: 'web' } });
    await w.migs.patchStatus(name, 'default', { credentialSecret: 'c', veUid: 'u1', sourceNode: 'n1', ...status });
  };
  await mk('ok', { phase: 'TargetReady', targetNode: 'n2' });
  await mk('over', { phase: 'Failed', targetNode: 'n2' });
  await mk('elsewhere', { phase: 'TargetReady', targetNode: 'n3' });
  const status = (p: Promise<unknown>) => p.then(() => 200, (e: KvzError) => e.details?.status);
  const client = (name: string, token = TOKEN) => new MigrationChannelClient('127.0.0.1', port, 'default', name, token);
  assert.equal(await status(client('ok').digests()), 200);
  assert.equal(await status(client('ok', 'wrong-token-value').digests()), 401);
  assert.equal(await status(client('ok', '').digests()), 401);
  assert.equal(await status(client('over').digests()), 409);
  assert.equal(await status(client('elsewhere').digests()), 403);
  assert.equal(await status(client('missing').digests()), 404);
  // Restore needs Restoring and verified images.
  assert.equal(await status(client('ok').restore()), 409);
  // Disk frames land at index × the request's unit; a unit the receiver does not take is a 400.
  const frames = async function* () { yield { index: 5, data: Buffer.alloc(4096) }; };
  await client('ok').putBlocks(frames(), { unit: 4096 });
  await client('ok').putBlocks(frames());
  assert.deepEqual(written, [{ unit: 4096, frames: [[5, 4096]] }, { unit: 1 << 20, frames: [[5, 4096]] }]);
  assert.equal(await status(client('ok').putBlocks(frames(), { unit: 3000 })), 400);
});

test('the channel lands small and large image files byte for byte (large ones written in batches)', async (t) => {
  const w = world(t);
  const img = join(w.dir, 'in');
  const handler = {
    digests: async () => [], writeBlocks: async () => {}, imageDir: () => img,
    restore: async () => ({ ms: 1 }), abort: async () => {}, running: async () => false,
  };
  const server = new MigrationChannelServer({ nodeName: 'n2', migrations: w.migs, secrets: w.secrets, handler, log: silentLogger });
  const { port } = await server.listen('127.0.0.1:0');
  t.after(() => server.close());
  await w.secrets.create({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'c', namespace: 'default' }, data: { token: Buffer.from(TOKEN).toString('base64') } } as KubeObject);
  await w.migs.create({ apiVersion: 'kubevz.io/v1alpha1', kind: 'VEMigration', metadata: { name: 'm', namespace: 'default' }, spec: { ve: 'web' } });
  await w.migs.patchStatus('m', 'default', { credentialSecret: 'c', veUid: 'u1', sourceNode: 'n1', phase: 'Transferring', targetNode: 'n2' });
  // Not a multiple of the batch or of a socket chunk, so the last partial batch counts too.
  const files = { 'core-1.img': randomBytes(3000), 'pages-1.img': randomBytes((9 << 20) + 12345) };
  const chunked = (b: Buffer) => async function* () { for (let o = 0; o < b.length; o += 1 << 20) yield b.subarray(o, o + (1 << 20)); };
  const sent = await new MigrationChannelClient('127.0.0.1', port, 'default', 'm', TOKEN).putCheckpoint(
    Object.entries(files).map(([name, data]) => ({ name, size: data.length, open: chunked(data) })),
  );
  assert.equal(sent, files['core-1.img'].length + files['pages-1.img'].length);
  for (const [name, data] of Object.entries(files)) assert.ok(readFileSync(join(img, name)).equals(data), `${name} arrived intact`);
});
