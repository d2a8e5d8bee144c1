// Store + registry semantics: conflicts, generation and status-subresource rules, finalizers,
// no-op updates, patches, restart monotonicity.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Registry } from '../../../src/apiserver/registry.js';
import { type ResourceDef, ResourceTable } from '../../../src/apiserver/resources.js';
import { ApiError } from '../../../src/apiserver/status-errors.js';
import { Store } from '../../../src/apiserver/store.js';
import { aVE, openTestRegistry, readyStatus, type TestRegistry } from './helpers.js';

function apiErr(code: number, reason?: string) {
  return (err: unknown) => {
    assert.ok(err instanceof ApiError, `expected ApiError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    if (reason) assert.equal(err.reason, reason);
    return true;
  };
}

describe('registry', () => {
  let store: Store;
  let reg: Registry;
  let ve: ResourceDef;
  const V = 'v1alpha1';

  let fixture: TestRegistry;
  before(() => {
    fixture = openTestRegistry('kvz-registry-');
    ({ store, reg, ve } = fixture);
  });
  after(() => fixture.close());

  it('creates with bookkeeping, defaults, and drops status on create', () => {
    const o = reg.create(ve, V, 'default', { ...aVE('c1'), ...readyStatus() });
    assert.equal(o.metadata.generation, 1);
    assert.match(String(o.metadata.uid), /^[0-9a-f-]{36}$/);
    assert.match(String(o.metadata.creationTimestamp), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    assert.equal(o.metadata.namespace, 'default');
    assert.equal(o.metadata.resourceVersion, String(store.currentRev()));
    assert.equal(o.status, undefined);
    assert.deepEqual(o.spec, { template: 'busybox', powerState: 'Running', onBoot: true, restartPolicy: 'Always', stopTimeoutSeconds: 10 });
  });

  it('refuses a duplicate (409 AlreadyExists), a namespace mismatch (400) and a bad name (422)', () => {
    assert.throws(() => reg.create(ve, V, 'default', aVE('c1')), apiErr(409, 'AlreadyExists'));
    assert.throws(() => reg.create(ve, V, 'default', { ...aVE('c2'), metadata: { name: 'c2', namespace: 'other' } }), apiErr(400));
    assert.throws(() => reg.create(ve, V, 'default', aVE('Bad_Name')), apiErr(422, 'Invalid'));
  });

  it('generateName gets a 5-character suffix', () => {
    const o = reg.create(ve, V, 'default', { ...aVE(''), metadata: { generateName: 'gen-' } });
    assert.match(String(o.metadata.name), /^gen-[a-z0-9]{5}$/);
  });

  it('reports every failing field with 422', () => {
    assert.throws(
      () => reg.create(ve, V, 'default', { ...aVE('bad'), spec: { powerState: 'Maybe', resources: { cpu: { units: 1 } } } }),
      (err: unknown) => {
        assert.ok(err instanceof ApiError);
        assert.equal(err.code, 422);
        const fields = err.details?.causes?.map((c) => c.field).sort();
        assert.deepEqual(fields, ['spec.powerState', 'spec.resources.cpu.units', 'spec.template']);
        assert.match(err.message, /^virtualenvironments\.kubevz\.io "bad" is invalid: \[spec\.template: Required value, /);
        assert.equal(err.details?.causes?.find((c) => c.field === 'spec.template')?.reason, 'FieldValueRequired');
        return true;
      },
    );
  });

  it('PUT needs resourceVersion (422) and a current one (409); spec changes bump generation', () => {
    const cur = reg.get(ve, 'default', 'c1');
    assert.throws(() => reg.update(ve, V, 'default', 'c1', { ...cur, metadata: { ...cur.metadata, resourceVersion: undefined } }), (err: unknown) => {
      assert.ok(err instanceof ApiError && err.code === 422);
      assert.match(err.message, /metadata\.resourceVersion: Invalid value: 0x0: must be specified for an update/);
      return true;
    });
    assert.throws(() => reg.update(ve, V, 'default', 'c1', { ...cur, metadata: { ...cur.metadata, resourceVersion: '12345' } }), apiErr(409, 'Conflict'));
    const next = reg.update(ve, V, 'default', 'c1', { ...cur, spec: { ...(cur.spec as object), hostname: 'h1' } });
    assert.equal(next.metadata.generation, 2);
    assert.ok(Number(next.metadata.resourceVersion) > Number(cur.metadata.resourceVersion));
  });

  it('metadata-only edits keep generation; a no-op update makes no new revision', () => {
    const cur = reg.get(ve, 'default', 'c1');
    const labelled = reg.update(ve, V, 'default', 'c1', { ...cur, metadata: { ...cur.metadata, labels: { a: 'b' } } });
    assert.equal(labelled.metadata.generation, cur.metadata.generation);
    const rev = store.currentRev();
    const same = reg.update(ve, V, 'default', 'c1', labelled);
    assert.equal(store.currentRev(), rev);
    assert.equal(same.metadata.resourceVersion, labelled.metadata.resourceVersion);
    const p = reg.patch(ve, V, 'default', 'c1', 'merge', { metadata: { labels: { a: 'b' } } });
    assert.equal(p.object.metadata.resourceVersion, labelled.metadata.resourceVersion);
  });

  it('main endpoint ignores status; /status takes only status and never bumps generation', () => {
    const cur = reg.get(ve, 'default', 'c1');
    const viaMain = reg.patch(ve, V, 'default', 'c1', 'merge', readyStatus()).object;
    assert.equal(viaMain.status, undefined);
    const viaStatus = reg.patch(ve, V, 'default', 'c1', 'merge', { ...readyStatus(), spec: { hostname: 'ignored' }, metadata: { labels: { x: 'y' } } }, { subresource: 'status' }).object;
    assert.equal((viaStatus.status as { phase: string }).phase, 'Running');
    assert.equal((viaStatus.spec as { hostname: string }).hostname, 'h1');
    assert.equal((viaStatus.metadata.labels as Record<string, string>).x, undefined);
    assert.equal(viaStatus.metadata.generation, cur.metadata.generation);
    // And a later spec edit keeps the status.
    const edited = reg.patch(ve, V, 'default', 'c1', 'merge', { spec: { hostname: 'h2' } }).object;
    assert.equal((edited.status as { phase: string }).phase, 'Running');
    assert.equal(edited.metadata.generation, Number(cur.metadata.generation) + 1);
  });

  it('status is validated too', () => {
    assert.throws(() => reg.patch(ve, V, 'default', 'c1', 'merge', { status: { phase: 'Nope' } }, { subresource: 'status' }), apiErr(422));
  });

  it('JSON patch: test guards, failed test is 422, a malformed patch is 400', () => {
    const cur = reg.get(ve, 'default', 'c1');
    const out = reg.patch(ve, V, 'default', 'c1', 'json', [
      { op: 'test', path: '/spec/hostname', value: 'h2' },
      { op: 'replace', path: '/spec/hostname', value: 'h3' },
      { op: 'add', path: '/metadata/labels/new', value: 'v' },
    ]).object;
    assert.equal((out.spec as { hostname: string }).hostname, 'h3');
    assert.equal((out.metadata.labels as Record<string, string>).new, 'v');
    assert.ok(Number(out.metadata.generation) > Number(cur.metadata.generation));
    assert.throws(() => reg.patch(ve, V, 'default', 'c1', 'json', [{ op: 'test', path: '/spec/hostname', value: 'zz' }]), apiErr(422));
    assert.throws(() => reg.patch(ve, V, 'default', 'c1', 'json', { op: 'add' }), apiErr(400));
  });

  it('a patch carrying a stale resourceVersion conflicts', () => {
    assert.throws(() => reg.patch(ve, V, 'default', 'c1', 'merge', { metadata: { resourceVersion: '12345' }, spec: { hostname: 'x' } }), apiErr(409, 'Conflict'));
  });

  it('apply patch upserts (needs fieldManager)', () => {
    assert.throws(() => reg.patch(ve, V, 'default', 'ssa', 'apply', aVE('ssa')), apiErr(422));
    const c = reg.patch(ve, V, 'default', 'ssa', 'apply', aVE('ssa'), { fieldManager: 'kubectl' });
    assert.equal(c.created, true);
    const u = reg.patch(ve, V, 'default', 'ssa', 'apply', aVE('ssa', { hostname: 'h' }), { fieldManager: 'kubectl' });
    assert.equal(u.created, false);
    assert.equal(u.object.metadata.generation, 2);
  });

  it('finalizers: delete marks deletionTimestamp and bumps generation; emptying finalizers deletes', () => {
    reg.create(ve, V, 'default', { ...aVE('f1'), metadata: { name: 'f1', finalizers: ['kubevz.io/host-cleanup'] } });
    const marked = reg.delete(ve, 'default', 'f1');
    assert.equal(marked.gone, false);
    assert.ok(marked.object.metadata.deletionTimestamp);
    assert.equal(marked.object.metadata.generation, 2);
    // Idempotent second delete; no new finalizers while deleting; deletionTimestamp cannot be cleared.
    const again = reg.delete(ve, 'default', 'f1');
    assert.equal(again.object.metadata.resourceVersion, marked.object.metadata.resourceVersion);
    assert.throws(() => reg.patch(ve, V, 'default', 'f1', 'merge', { metadata: { finalizers: ['kubevz.io/host-cleanup', 'other'] } }), apiErr(422));
    const kept = reg.patch(ve, V, 'default', 'f1', 'merge', { metadata: { deletionTimestamp: null, labels: { l: '1' } } }).object;
    assert.equal(kept.metadata.deletionTimestamp, marked.object.metadata.deletionTimestamp);
    const before = store.currentRev();
    reg.patch(ve, V, 'default', 'f1', 'merge', { metadata: { finalizers: null } });
    assert.equal(store.currentRev(), before + 1);
    assert.throws(() => reg.get(ve, 'default', 'f1'), apiErr(404, 'NotFound'));
  });

  it('delete without finalizers removes at once; preconditions are checked', () => {
    const o = reg.create(ve, V, 'default', aVE('d1'));
    assert.throws(() => reg.delete(ve, 'default', 'd1', { preconditions: { uid: 'nope' } }), apiErr(409));
    assert.equal(reg.delete(ve, 'default', 'd1', { preconditions: { uid: String(o.metadata.uid) } }).gone, true);
    assert.throws(() => reg.delete(ve, 'default', 'd1'), apiErr(404));
  });

  it('lists sorted with selectors, and pages with limit/continue', () => {
    reg.create(ve, V, 'ns2', { ...aVE('l1'), metadata: { name: 'l1', labels: { tier: 'a' } } });
    reg.create(ve, V, 'ns2', { ...aVE('l2'), metadata: { name: 'l2', labels: { tier: 'b' } } });
    reg.create(ve, V, 'ns2', { ...aVE('l3'), metadata: { name: 'l3' } });
    assert.deepEqual(reg.list(ve, 'ns2').items.map((o) => o.metadata.name), ['l1', 'l2', 'l3']);
    assert.deepEqual(reg.list(ve, 'ns2', { labelSelector: 'tier in (a,b),tier!=b' }).items.map((o) => o.metadata.name), ['l1']);
    assert.deepEqual(reg.list(ve, 'ns2', { labelSelector: '!tier' }).items.map((o) => o.metadata.name), ['l3']);
    assert.deepEqual(reg.list(ve, undefined, { fieldSelector: 'metadata.name=l2' }).items.map((o) => o.metadata.namespace), ['ns2']);
    const p1 = reg.list(ve, 'ns2', { limit: 2 });
    assert.equal(p1.items.length, 2);
    assert.ok(p1.continueToken);
    const p2 = reg.list(ve, 'ns2', { limit: 2, continueToken: p1.continueToken });
    assert.deepEqual(p2.items.map((o) => o.metadata.name), ['l3']);
    assert.equal(p2.continueToken, undefined);
  });

  it('prunes core events older than the TTL', () => {
    const events = new ResourceTable().lookup('', 'v1', 'events') as ResourceDef;
    const old = new Date(Date.now() - 2 * 3600_000).toISOString();
    reg.create(events, 'v1', 'default', { metadata: { name: 'old.1' }, involvedObject: { name: 'x' }, lastTimestamp: old });
    reg.create(events, 'v1', 'default', { metadata: { name: 'new.1' }, involvedObject: { name: 'x' }, lastTimestamp: new Date().toISOString() });
    assert.equal(reg.pruneEvents(3600_000), 1);
    assert.deepEqual(reg.list(events, 'default').items.map((e) => e.metadata.name), ['new.1']);
  });

  it('revisions stay monotonic after compaction and reopening', () => {
    const rev = store.currentRev();
    store.compact(1);
    assert.equal(store.compactRev(), rev - 1);
    fixture.reopen();
    ({ store, reg } = fixture);
    assert.equal(store.currentRev(), rev);
    assert.equal(store.compactRev(), rev - 1);
    const o = reg.create(ve, V, 'default', aVE('after-restart'));
    assert.equal(o.metadata.resourceVersion, String(rev + 1));
  });
});
