// JSONPath subset and Table building (kube-api-notes §2.4).

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { jsonPath, printResults } from '../../../src/apiserver/jsonpath.js';
import { buildTable, humanDuration } from '../../../src/apiserver/table.js';

const ve = {
  apiVersion: 'kubevz.io/v1alpha1',
  kind: 'VirtualEnvironment',
  metadata: { name: 'web1', namespace: 'default', resourceVersion: '7', creationTimestamp: '2026-01-01T00:00:00Z', labels: { a: 'b' } },
  spec: { template: 'busybox', resources: { cpu: { units: 1000 } } },
  status: {
    phase: 'Running',
    addresses: ['10.0.0.2', '10.0.0.3'],
    conditions: [
      { type: 'Scheduled', status: 'True' },
      { type: 'Ready', status: 'False' },
    ],
  },
};

describe('jsonpath', () => {
  it('keys, indexes, wildcards, slices, recursive descent, quoted keys', () => {
    assert.deepEqual(jsonPath(ve, '.status.phase'), ['Running']);
    assert.deepEqual(jsonPath(ve, '{.status.addresses[0]}'), ['10.0.0.2']);
    assert.deepEqual(jsonPath(ve, '.status.addresses[-1]'), ['10.0.0.3']);
    assert.deepEqual(jsonPath(ve, '.status.addresses[*]'), ['10.0.0.2', '10.0.0.3']);
    assert.deepEqual(jsonPath(ve, '.status.addresses[0:1]'), ['10.0.0.2']);
    assert.deepEqual(jsonPath(ve, '.status.conditions[*].type'), ['Scheduled', 'Ready']);
    assert.deepEqual(jsonPath(ve, '..units'), [1000]);
    assert.deepEqual(jsonPath(ve, ".metadata.labels['a']"), ['b']);
    assert.deepEqual(jsonPath(ve, '.spec.missing.deeper'), []);
    assert.deepEqual(jsonPath(ve, '.status.addresses[5]'), []);
  });
  it('filters', () => {
    assert.deepEqual(jsonPath(ve, '.status.conditions[?(@.type=="Ready")].status'), ['False']);
    assert.deepEqual(jsonPath(ve, ".status.conditions[?(@.type!='Ready')].type"), ['Scheduled']);
    assert.deepEqual(jsonPath(ve, '.status.conditions[?(@.nope)].type'), []);
    assert.deepEqual(jsonPath({ l: [{ n: 1 }, { n: 5 }] }, '.l[?(@.n > 2)].n'), [5]);
  });
  it('prints like kubectl', () => {
    assert.equal(printResults(['a', 'b']), 'a b');
    assert.equal(printResults([{ x: 1 }]), '{"x":1}');
  });
});

describe('humanDuration', () => {
  const s = 1000;
  const cases: [number, string][] = [
    [-5 * s, '<invalid>'], [-1 * s, '0s'], [0, '0s'], [59 * s, '59s'], [119 * s, '119s'], [120 * s, '2m'], [200 * s, '3m20s'],
    [25 * 60 * s, '25m'], [179 * 60 * s, '179m'], [3 * 3600 * s, '3h'], [(5 * 60 + 3) * 60 * s, '5h3m'], [20 * 3600 * s, '20h'],
    [(3 * 24 + 4) * 3600 * s, '3d4h'], [3 * 24 * 3600 * s, '3d'], [40 * 24 * 3600 * s, '40d'], [(2 * 365 + 10) * 24 * 3600 * s, '2y10d'],
    [9 * 365 * 24 * 3600 * s, '9y'],
  ];
  for (const [ms, want] of cases) it(`${ms}ms → ${want}`, () => assert.equal(humanDuration(ms), want));
});

describe('buildTable', () => {
  const columns = [
    { name: 'Phase', type: 'string', jsonPath: '.status.phase' },
    { name: 'IP', type: 'string', jsonPath: '.status.addresses[0]' },
    { name: 'Ready', type: 'string', jsonPath: '.status.conditions[?(@.type=="Ready")].status' },
    { name: 'Node', type: 'string', jsonPath: '.status.nodeName', priority: 1 },
    { name: 'Units', type: 'integer', jsonPath: '.spec.resources.cpu.units' },
    { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
  ];
  const now = Date.parse('2026-01-01T00:05:00Z');

  it('Name first, printer columns, cells, PartialObjectMetadata, resourceVersion', () => {
    const t = buildTable([ve], { columns, resourceVersion: '42', now }) as any; // eslint-disable-line @typescript-eslint/no-explicit-any
    assert.equal(t.kind, 'Table');
    assert.equal(t.apiVersion, 'meta.k8s.io/v1');
    assert.equal(t.metadata.resourceVersion, '42');
    assert.deepEqual(t.columnDefinitions.map((c: { name: string }) => c.name), ['Name', 'Phase', 'IP', 'Ready', 'Node', 'Units', 'Age']);
    assert.equal(t.columnDefinitions[0].format, 'name');
    assert.equal(t.columnDefinitions[4].priority, 1);
    assert.match(t.columnDefinitions[1].description, /JSONPath format\): \.status\.phase/);
    assert.deepEqual(t.rows[0].cells, ['web1', 'Running', '10.0.0.2', 'False', null, 1000, '5m']);
    assert.deepEqual(t.rows[0].object, { kind: 'PartialObjectMetadata', apiVersion: 'meta.k8s.io/v1', metadata: ve.metadata });
  });

  it('defaults to an Age column; includeObject None/Object; noHeaders', () => {
    const t = buildTable([ve], { columns: [], resourceVersion: '1', now, includeObject: 'None', noHeaders: true }) as any; // eslint-disable-line @typescript-eslint/no-explicit-any
    assert.equal(t.columnDefinitions, null);
    assert.deepEqual(t.rows[0].cells, ['web1', '5m']);
    assert.equal(t.rows[0].object, undefined);
    const full = buildTable([ve], { columns: [], resourceVersion: '1', now, includeObject: 'Object' }) as any; // eslint-disable-line @typescript-eslint/no-explicit-any
    assert.equal(full.rows[0].object.spec.template, 'busybox');
    assert.deepEqual(full.columnDefinitions.map((c: { name: string }) => c.name), ['Name', 'Age']);
  });
});
