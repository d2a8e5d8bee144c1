import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { threeWayMergePatch, twoWayMergePatch } from '../../../src/sources/merge-patch.js';

describe('threeWayMergePatch', () => {
  it('sets changed fields, removes fields dropped since the last apply, keeps fields others set', () => {
    const original = { spec: { template: 'a', hostname: 'h', resources: { processes: 10 } } };
    const modified = { spec: { template: 'b', resources: {} } };
    const current = { spec: { template: 'a', hostname: 'h', powerState: 'Running', resources: { processes: 10 } }, status: { phase: 'Running' } };
    assert.deepEqual(threeWayMergePatch(original, modified, current), { spec: { template: 'b', hostname: null, resources: { processes: null } } });
  });

  it('replaces lists whole and is empty when nothing changed', () => {
    assert.deepEqual(threeWayMergePatch({ a: [1, 2] }, { a: [1] }, { a: [1, 2] }), { a: [1] });
    assert.deepEqual(threeWayMergePatch({ a: { b: 1 } }, { a: { b: 1 } }, { a: { b: 1, c: 2 } }), {});
  });

  it('without a last-applied configuration removes nothing', () => {
    assert.deepEqual(threeWayMergePatch(undefined, { spec: { a: 1 } }, { spec: { a: 2, b: 3 } }), { spec: { a: 1 } });
  });

  it('twoWayMergePatch turns one object into the other', () => {
    assert.deepEqual(twoWayMergePatch({ a: 1, b: { c: 1, d: 2 } }, { b: { c: 2 }, e: 3 }), { b: { c: 2, d: null }, e: 3, a: null });
  });
});
