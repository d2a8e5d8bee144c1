// Label/field selectors, RFC 7386 merge patch and RFC 6902 JSON patch.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { jsonPatch, mergePatch } from '../../../src/apiserver/patch.js';
import { parseFieldSelector, parseLabelSelector, pinnedName } from '../../../src/apiserver/selectors.js';
import { ApiError } from '../../../src/apiserver/status-errors.js';

const obj = (labels: Record<string, string>, extra: Record<string, unknown> = {}) => ({ metadata: { name: 'n1', namespace: 'default', labels }, ...extra });

describe('label selectors', () => {
  const cases: [string, Record<string, string>, boolean][] = [
    ['', {}, true],
    ['a=b', { a: 'b' }, true],
    ['a==b', { a: 'c' }, false],
    ['a!=b', {}, true],
    ['a!=b', { a: 'b' }, false],
    ['a in (x, y)', { a: 'y' }, true],
    ['a notin (x,y)', { a: 'y' }, false],
    ['a notin (x,y)', {}, true],
    ['a', { a: '' }, true],
    ['!a', { a: '' }, false],
    ['kubevz.io/node=n1,tier in (web)', { 'kubevz.io/node': 'n1', tier: 'web' }, true],
    ['kubevz.io/node=n1,tier in (web)', { 'kubevz.io/node': 'n1' }, false],
  ];
  for (const [sel, labels, want] of cases) {
    it(`${JSON.stringify(sel)} on ${JSON.stringify(labels)} → ${want}`, () => assert.equal(parseLabelSelector(sel)(obj(labels)), want));
  }
  it('rejects garbage with 400', () => assert.throws(() => parseLabelSelector('a=(b'), (e: unknown) => e instanceof ApiError && e.code === 400));
});

describe('field selectors', () => {
  it('matches dotted paths, == and !=, and finds a pinned name', () => {
    const ev = obj({}, { involvedObject: { kind: 'VirtualEnvironment', name: 'web1', uid: 'u1' } });
    assert.equal(parseFieldSelector('metadata.name=n1,metadata.namespace==default')(ev), true);
    assert.equal(parseFieldSelector('involvedObject.name=web1,involvedObject.kind=VirtualEnvironment,involvedObject.uid=u1')(ev), true);
    assert.equal(parseFieldSelector('involvedObject.name!=web1')(ev), false);
    assert.equal(parseFieldSelector('involvedObject.fieldPath=')(ev), true);
    assert.equal(pinnedName('metadata.namespace=x,metadata.name=demo'), 'demo');
    assert.equal(pinnedName('metadata.name!=demo'), undefined);
  });
});

describe('merge patch (RFC 7386)', () => {
  it('merges objects, null deletes, arrays replace', () => {
    const target = { a: { b: 1, c: 2 }, l: [1, 2], keep: true };
    assert.deepEqual(mergePatch(target, { a: { b: null, d: 3 }, l: [3] }), { a: { c: 2, d: 3 }, l: [3], keep: true });
    assert.deepEqual(target, { a: { b: 1, c: 2 }, l: [1, 2], keep: true }, 'input unchanged');
    assert.deepEqual(mergePatch({ a: 1 }, { metadata: { labels: null } }), { a: 1, metadata: {} });
  });
});

describe('JSON patch (RFC 6902)', () => {
  const doc = { metadata: { finalizers: ['a', 'b'] }, spec: { x: 1 } };
  it('add/remove/replace/move/copy/test', () => {
    const out = jsonPatch(doc, [
      { op: 'test', path: '/metadata/finalizers/1', value: 'b' },
      { op: 'remove', path: '/metadata/finalizers/1' },
      { op: 'add', path: '/metadata/finalizers/-', value: 'c' },
      { op: 'replace', path: '/spec/x', value: 2 },
      { op: 'copy', from: '/spec/x', path: '/spec/y' },
      { op: 'move', from: '/spec/y', path: '/spec/z' },
      { op: 'add', path: '/spec/a~1b', value: 'slash' },
    ]);
    assert.deepEqual(out, { metadata: { finalizers: ['a', 'c'] }, spec: { x: 2, z: 2, 'a/b': 'slash' } });
    assert.deepEqual(doc.metadata.finalizers, ['a', 'b'], 'input unchanged');
  });
  it('failed test and missing paths are 422; non-array patch is 400', () => {
    const code = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        return (e as ApiError).code;
      }
      return 0;
    };
    assert.equal(code(() => jsonPatch(doc, [{ op: 'test', path: '/spec/x', value: 9 }])), 422);
    assert.equal(code(() => jsonPatch(doc, [{ op: 'remove', path: '/spec/nope' }])), 422);
    assert.equal(code(() => jsonPatch(doc, [{ op: 'replace', path: '/nope/x', value: 1 }])), 422);
    assert.equal(code(() => jsonPatch(doc, { op: 'add' })), 400);
  });
});
