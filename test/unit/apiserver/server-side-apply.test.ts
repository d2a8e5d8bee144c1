// Server-side apply against the registry: managedFields per manager in FieldsV1, 409 conflicts
// with FieldManagerConflict causes, force moving ownership, removal of fields a manager stops
// applying (kept when shared), list-map/set/atomic list handling, and Update managers.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { FieldSet } from '../../../src/apiserver/field-set.js';
import { Registry } from '../../../src/apiserver/registry.js';
import type { ResourceDef } from '../../../src/apiserver/resources.js';
import { ApiError } from '../../../src/apiserver/status-errors.js';
import { type Obj } from '../../../src/apiserver/store.js';
import { aVE, openTestRegistry, type TestRegistry } from './helpers.js';

const V = 'v1alpha1';
type Entry = { manager: string; operation: string; apiVersion: string; time: string; fieldsType: string; fieldsV1: Record<string, unknown>; subresource?: string };
const entries = (o: Obj) => (o.metadata.managedFields ?? []) as Entry[];
const entry = (o: Obj, manager: string, operation = 'Apply') => entries(o).find((e) => e.manager === manager && e.operation === operation);

describe('server-side apply', () => {
  let reg: Registry;
  let ve: ResourceDef;
  const apply = (name: string, body: Record<string, unknown>, manager: string, force = false) =>
    reg.patch(ve, V, 'default', name, 'apply', body, { fieldManager: manager, manager, force }).object;

  let fixture: TestRegistry;
  before(() => {
    fixture = openTestRegistry('kvz-ssa-');
    ({ reg, ve } = fixture);
  });
  after(() => fixture.close());

  it('records an Apply entry in FieldsV1 with apiVersion and time', () => {
    const o = apply('a1', { ...aVE('a1', { hostname: 'h1' }), metadata: { name: 'a1', labels: { app: 'web' } } }, 'mgr-a');
    const e = entry(o, 'mgr-a');
    assert.ok(e, JSON.stringify(o.metadata.managedFields));
    assert.equal(e.apiVersion, 'kubevz.io/v1alpha1');
    assert.equal(e.fieldsType, 'FieldsV1');
    assert.match(e.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    assert.deepEqual(e.fieldsV1, { 'f:metadata': { 'f:labels': { 'f:app': {} } }, 'f:spec': { 'f:hostname': {}, 'f:template': {} } });
    // Defaults are nobody's: powerState was filled in by the schema, not applied.
    assert.equal((o.spec as Record<string, unknown>).powerState, 'Running');
  });

  it('a repeated identical apply writes nothing', () => {
    const a = apply('a2', aVE('a2', { hostname: 'h' }), 'mgr-a');
    const b = apply('a2', aVE('a2', { hostname: 'h' }), 'mgr-a');
    assert.equal(b.metadata.resourceVersion, a.metadata.resourceVersion);
  });

  it('conflicting change by a second manager → 409 with FieldManagerConflict causes; same value is shared', () => {
    apply('c1', aVE('c1', { hostname: 'one' }), 'mgr-a');
    let caught: unknown;
    try {
      apply('c1', aVE('c1', { hostname: 'two' }), 'mgr-b');
    } catch (err) {
      caught = err;
    }
    assert.ok(caught instanceof ApiError);
    assert.equal(caught.code, 409);
    assert.equal(caught.reason, 'Conflict');
    assert.equal(caught.message, 'Apply failed with 1 conflict: conflict with "mgr-a": .spec.hostname');
    assert.deepEqual(caught.details?.causes, [{ reason: 'FieldManagerConflict', message: 'conflict with "mgr-a": .spec.hostname', field: '.spec.hostname' }]);
    // Applying the same value is no conflict: both own it.
    const shared = apply('c1', aVE('c1', { hostname: 'one' }), 'mgr-b');
    assert.ok(entry(shared, 'mgr-a'));
    assert.ok(entry(shared, 'mgr-b'));
    // A field owned by both is kept when one stops applying it.
    const kept = apply('c1', aVE('c1'), 'mgr-a');
    assert.equal((kept.spec as Record<string, unknown>).hostname, 'one');
  });

  it('force=true moves ownership to the applier', () => {
    apply('f1', aVE('f1', { hostname: 'one' }), 'mgr-a');
    const o = apply('f1', aVE('f1', { hostname: 'two' }), 'mgr-b', true);
    assert.equal((o.spec as Record<string, unknown>).hostname, 'two');
    const a = FieldSet.fromFieldsV1(entry(o, 'mgr-a')?.fieldsV1);
    assert.equal(a.has(['f:spec', 'f:hostname']), false);
    assert.ok(FieldSet.fromFieldsV1(entry(o, 'mgr-b')?.fieldsV1).has(['f:spec', 'f:hostname']));
    // mgr-a no longer owns hostname, so dropping it from its config does not remove it.
    const again = apply('f1', aVE('f1'), 'mgr-a');
    assert.equal((again.spec as Record<string, unknown>).hostname, 'two');
  });

  it('fields a manager stops applying are removed (labels, nested maps), emptied maps too', () => {
    apply('r1', { ...aVE('r1', { hostname: 'h', nodeSelector: { zone: 'a' }, resources: { memory: { limit: '512Mi' } } }), metadata: { name: 'r1', labels: { a: '1', b: '2' } } }, 'mgr-a');
    const o = apply('r1', { ...aVE('r1'), metadata: { name: 'r1', labels: { a: '1' } } }, 'mgr-a');
    const spec = o.spec as Record<string, unknown>;
    assert.equal(spec.hostname, undefined);
    assert.equal(spec.nodeSelector, undefined);
    assert.equal(spec.resources, undefined);
    assert.deepEqual(o.metadata.labels, { a: '1' });
  });

  it('Update managers: fieldManager or User-Agent prefix; updates take ownership without conflict', () => {
    apply('u1', aVE('u1', { hostname: 'h' }), 'mgr-a');
    const cur = reg.get(ve, 'default', 'u1');
    const patched = reg.patch(ve, V, 'default', 'u1', 'merge', { spec: { hostname: 'edited' } }, { manager: 'kubectl' }).object;
    const up = entry(patched, 'kubectl', 'Update');
    assert.ok(up, JSON.stringify(patched.metadata.managedFields));
    assert.deepEqual(up.fieldsV1, { 'f:spec': { 'f:hostname': {} } });
    assert.equal(FieldSet.fromFieldsV1(entry(patched, 'mgr-a')?.fieldsV1).has(['f:spec', 'f:hostname']), false);
    assert.notEqual(patched.metadata.resourceVersion, cur.metadata.resourceVersion);
    // Now mgr-a re-applying its old value conflicts with the Update manager.
    assert.throws(() => apply('u1', aVE('u1', { hostname: 'h' }), 'mgr-a'), (err: unknown) => err instanceof ApiError && /conflict with "kubectl" using kubevz\.io\/v1alpha1: \.spec\.hostname/.test(err.message));
  });

  it('create records an Update entry for every field set, status writes a status-subresource entry', () => {
    const c = reg.create(ve, V, 'default', aVE('u2'), { manager: 'kubectl-client-side-apply' });
    const e = entry(c, 'kubectl-client-side-apply', 'Update');
    assert.ok(e);
    assert.ok(FieldSet.fromFieldsV1(e.fieldsV1).has(['f:spec', 'f:template']));
    const s = reg.update(ve, V, 'default', 'u2', { ...c, status: { phase: 'Running', conditions: [{ type: 'Ready', status: 'True', reason: 'R', message: '', lastTransitionTime: '2026-01-01T00:00:00Z' }] } }, { subresource: 'status', manager: 'agent' });
    const st = entries(s).find((x) => x.manager === 'agent');
    assert.equal(st?.subresource, 'status');
    assert.ok(FieldSet.fromFieldsV1(st?.fieldsV1).has(['f:status', 'f:conditions', 'k:{"type":"Ready"}', 'f:status']));
  });

  it('list-map items merge by key; a manager dropping its item removes only that item', () => {
    // conditions are a list-map keyed by type; apply two managers' conditions through /status.
    reg.create(ve, V, 'default', aVE('m1'), { manager: 'x' });
    const cond = (type: string) => ({ type, status: 'True', reason: 'R', message: '', lastTransitionTime: '2026-01-01T00:00:00Z' });
    const st = (name: string, c: unknown[], manager: string) =>
      reg.patch(ve, V, 'default', name, 'apply', { apiVersion: 'kubevz.io/v1alpha1', kind: 'VirtualEnvironment', metadata: { name }, status: { conditions: c } }, { fieldManager: manager, manager, subresource: 'status' }).object;
    st('m1', [cond('Ready'), cond('Scheduled')], 'agent');
    let o = st('m1', [cond('Migrated')], 'controller');
    const types = () => ((o.status as { conditions: { type: string }[] }).conditions ?? []).map((c) => c.type);
    assert.deepEqual(types(), ['Ready', 'Scheduled', 'Migrated']);
    o = st('m1', [cond('Ready')], 'agent');
    assert.deepEqual(types(), ['Ready', 'Migrated']);
  });

  it('metadata.finalizers is a set: managers own their own finalizers', () => {
    apply('s1', { ...aVE('s1'), metadata: { name: 's1', finalizers: ['a.io/x'] } }, 'mgr-a');
    let o = apply('s1', { ...aVE('s1'), metadata: { name: 's1', finalizers: ['b.io/y'] } }, 'mgr-b');
    assert.deepEqual(o.metadata.finalizers, ['a.io/x', 'b.io/y']);
    o = apply('s1', aVE('s1'), 'mgr-a');
    assert.deepEqual(o.metadata.finalizers, ['b.io/y']);
    reg.patch(ve, V, 'default', 's1', 'merge', { metadata: { finalizers: null } }, { manager: 'cleanup' });
  });

  it('atomic lists are replaced whole and owned as one field', () => {
    const addresses = (o: Obj) => (o.spec as { network?: { addresses?: string[] } }).network?.addresses;
    let o = apply('l1', aVE('l1', { network: { addresses: ['10.0.0.2/24', '10.0.0.3/24'] } }), 'mgr-a');
    assert.ok(FieldSet.fromFieldsV1(entry(o, 'mgr-a')?.fieldsV1).has(['f:spec', 'f:network', 'f:addresses']));
    o = apply('l1', aVE('l1', { network: { addresses: ['10.0.0.9/24'] } }), 'mgr-a');
    assert.deepEqual(addresses(o), ['10.0.0.9/24']);
  });

  it('client-supplied managedFields replace the stored ones (kubectl csa→ssa migration)', () => {
    const c = reg.create(ve, V, 'default', aVE('k1', { hostname: 'h' }), { manager: 'kubectl-client-side-apply' });
    const fields = entry(c, 'kubectl-client-side-apply', 'Update')?.fieldsV1;
    const patched = reg.patch(ve, V, 'default', 'k1', 'json', [
      { op: 'test', path: '/metadata/resourceVersion', value: c.metadata.resourceVersion },
      { op: 'replace', path: '/metadata/managedFields', value: [{ manager: 'kubectl', operation: 'Apply', apiVersion: 'kubevz.io/v1alpha1', time: '2026-01-01T00:00:00Z', fieldsType: 'FieldsV1', fieldsV1: fields }] },
    ], { manager: 'kubectl' }).object;
    assert.deepEqual(entries(patched).map((e) => `${e.manager}/${e.operation}`), ['kubectl/Apply']);
    // Now kubectl dropping hostname from its applied config removes it.
    const o = apply('k1', aVE('k1'), 'kubectl');
    assert.equal((o.spec as Record<string, unknown>).hostname, undefined);
  });
});
