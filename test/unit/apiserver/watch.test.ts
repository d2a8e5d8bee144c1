// Watch semantics over real HTTPS: headers flushed at once, synthetic ADDED for RV 0/unset,
// replay from an RV, DELETED events, selector transitions, heartbeats, timeoutSeconds,
// bookmarks only on request, Table events, and ERROR 410 after compaction.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadCrds } from '../../../src/api/index.js';
import { silentLogger } from '../../../src/core/logger.js';
import { Registry } from '../../../src/apiserver/registry.js';
import { type ResourceDef, ResourceTable } from '../../../src/apiserver/resources.js';
import { Store } from '../../../src/apiserver/store.js';
import { WatchHub, type WatchEventType } from '../../../src/apiserver/watch-hub.js';
import { aVE, call, startTestServer, type TestServer, VE_PATH, watch } from './helpers.js';

const TABLE = 'application/json;as=Table;v=v1;g=meta.k8s.io,application/json';

describe('watch over HTTP', () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer({ heartbeatMs: 100 });
  });
  after(async () => {
    await s.dispose();
  });

  it('flushes headers before any event and sends heartbeats', async () => {
    const t0 = Date.now();
    const w = await watch(s, `${VE_PATH}?watch=true&labelSelector=none%3Dnone`);
    assert.ok(Date.now() - t0 < 2000);
    await new Promise((r) => setTimeout(r, 350));
    assert.ok(w.raw.filter((c) => c === '\n').length >= 2, `heartbeats: ${JSON.stringify(w.raw)}`);
    assert.equal(w.events.length, 0);
    w.close();
  });

  it('RV unset: synthetic ADDED, then live MODIFIED and DELETED; RV replay', async () => {
    const created = (await call(s, VE_PATH, { method: 'POST', body: aVE('w1') })).json();
    const w = await watch(s, `${VE_PATH}?watch=true`);
    await w.waitFor(1);
    assert.equal(w.events[0]?.type, 'ADDED');
    assert.equal(w.events[0]?.object.metadata.name, 'w1');
    await call(s, `${VE_PATH}/w1`, { method: 'PATCH', body: { spec: { hostname: 'h' } }, contentType: 'application/merge-patch+json' });
    const del = await call(s, `${VE_PATH}/w1`, { method: 'DELETE' });
    assert.equal(del.json().status, 'Success');
    await w.waitFor(3);
    assert.deepEqual(w.events.map((e) => e.type), ['ADDED', 'MODIFIED', 'DELETED']);
    const delRv = Number(w.events[2]?.object.metadata.resourceVersion);
    assert.ok(delRv > Number(w.events[1]?.object.metadata.resourceVersion));
    w.close();

    // Replay everything after the create.
    const r = await watch(s, `${VE_PATH}?watch=true&resourceVersion=${created.metadata.resourceVersion}`);
    await r.waitFor(2);
    assert.deepEqual(r.events.map((e) => e.type), ['MODIFIED', 'DELETED']);
    r.close();
  });

  it('field selector on metadata.name, and selector transitions become ADDED/DELETED', async () => {
    await call(s, VE_PATH, { method: 'POST', body: aVE('w2') });
    await call(s, VE_PATH, { method: 'POST', body: aVE('w3') });
    const byName = await watch(s, `${VE_PATH}?watch=true&fieldSelector=metadata.name%3Dw2&resourceVersion=0`);
    await byName.waitFor(1);
    const lab = await watch(s, `${VE_PATH}?watch=true&labelSelector=sel%3Dyes`);
    await call(s, `${VE_PATH}/w3`, { method: 'PATCH', body: { metadata: { labels: { sel: 'yes' } } }, contentType: 'application/merge-patch+json' });
    await call(s, `${VE_PATH}/w3`, { method: 'PATCH', body: { metadata: { labels: { sel: 'no' } } }, contentType: 'application/merge-patch+json' });
    await lab.waitFor(2);
    assert.deepEqual(lab.events.map((e) => e.type), ['ADDED', 'DELETED']);
    assert.deepEqual(byName.events.map((e) => e.object.metadata.name), ['w2']);
    byName.close();
    lab.close();
  });

  it('honours timeoutSeconds and ends the stream', async () => {
    const w = await watch(s, `${VE_PATH}?watch=true&timeoutSeconds=1`);
    const t0 = Date.now();
    await w.ended;
    assert.ok(Date.now() - t0 < 3000);
  });

  it('bookmarks only when requested; sendInitialEvents marks the end of the initial state', async () => {
    const plain = await watch(s, `${VE_PATH}?watch=true`);
    const wanted = await watch(s, `${VE_PATH}?watch=true&allowWatchBookmarks=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan`);
    await wanted.waitFor(3);
    const bm = wanted.events.find((e) => e.type === 'BOOKMARK');
    assert.equal(bm?.object.metadata.annotations['k8s.io/initial-events-end'], 'true');
    assert.ok(!plain.events.some((e) => e.type === 'BOOKMARK'));
    plain.close();
    wanted.close();
  });

  it('Table watches send one-row Tables with headers on the first event only', async () => {
    const w = await watch(s, `${VE_PATH}?watch=true`, TABLE);
    await w.waitFor(2);
    const [a, b] = w.events;
    assert.equal(a?.object.kind, 'Table');
    assert.equal(a?.object.columnDefinitions[0].name, 'Name');
    assert.equal(a?.object.rows.length, 1);
    assert.equal(b?.object.columnDefinitions, null);
    assert.equal(a?.object.rows[0].object.kind, 'PartialObjectMetadata');
    w.close();
  });

  it('an invalid resourceVersion ends with an in-stream error', async () => {
    const w = await watch(s, `${VE_PATH}?watch=true&resourceVersion=abc`);
    await w.ended;
    assert.equal(w.events[0]?.type, 'ERROR');
  });
});

describe('watch hub and compaction', () => {
  let dir: string;
  let store: Store;
  let reg: Registry;
  let hub: WatchHub;
  let ve: ResourceDef;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'kvz-watch-'));
    store = new Store(join(dir, 'db.sqlite'));
    const resources = new ResourceTable();
    for (const crd of loadCrds()) resources.addCrd(crd);
    ve = resources.lookup('kubevz.io', 'v1alpha1', 'virtualenvironments') as ResourceDef;
    reg = new Registry({ store, resources, log: silentLogger });
    hub = new WatchHub(store);
  });
  after(() => {
    hub.close();
    store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  function collect(rv: string, namespace?: string) {
    const events: { type: WatchEventType; object: Record<string, unknown> }[] = [];
    let ended = false;
    const h = hub.watch({ def: ve, ...(namespace ? { namespace } : {}), match: () => true, resourceVersion: rv }, { event: (type, object) => events.push({ type, object }), end: () => (ended = true) });
    return { events, ended: () => ended, stop: () => h.stop() };
  }

  it('410 Expired in-stream once history is compacted, replay when still retained', () => {
    const first = reg.create(ve, 'v1alpha1', 'default', aVE('c1'));
    for (let i = 0; i < 5; i++) reg.patch(ve, 'v1alpha1', 'default', 'c1', 'merge', { spec: { hostname: `h${i}` } });
    store.compact(2);
    const old = collect(String(first.metadata.resourceVersion));
    assert.equal(old.events.length, 1);
    assert.equal(old.events[0]?.type, 'ERROR');
    assert.equal((old.events[0]?.object as { code: number }).code, 410);
    assert.equal((old.events[0]?.object as { reason: string }).reason, 'Expired');
    assert.equal(old.ended(), true);
    const recent = collect(String(store.compactRev()));
    assert.deepEqual(recent.events.map((e) => e.type), ['MODIFIED', 'MODIFIED']);
    recent.stop();
  });

  it('namespace scope and DELETED carrying the last state', () => {
    const w = collect('', 'other');
    reg.create(ve, 'v1alpha1', 'default', aVE('x1'));
    reg.create(ve, 'v1alpha1', 'other', aVE('x2'));
    reg.delete(ve, 'other', 'x2');
    assert.deepEqual(w.events.map((e) => `${e.type}:${(e.object.metadata as { name: string }).name}`), ['ADDED:x2', 'DELETED:x2']);
    w.stop();
  });
});
