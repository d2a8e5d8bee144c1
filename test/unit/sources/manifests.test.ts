import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatProblem, parseManifests } from '../../../src/sources/manifests.js';

const VE = (name: string, extra = '') => `apiVersion: kubevz.io/v1alpha1\nkind: VirtualEnvironment\nmetadata:\n  name: ${name}\nspec:\n  template: busybox\n${extra}`;

describe('parseManifests', () => {
  it('reads every document, skipping empty ones but keeping their index', () => {
    const text = `${VE('a')}---\n# only a comment\n---\n${VE('b')}---\n`;
    const { docs, problems } = parseManifests(text, '/m/ves.yaml');
    assert.deepEqual(problems, []);
    assert.deepEqual(docs.map((d) => [d.index, d.object.metadata?.name, d.line]), [[0, 'a', 1], [2, 'b', 10]]);
    assert.equal(docs[1]?.lineOf?.('spec.template'), 15);
  });

  it('names file, document index, line and field for a missing name', () => {
    const text = `${VE('a')}---\napiVersion: kubevz.io/v1alpha1\nkind: VirtualEnvironment\nmetadata:\n  labels: {x: y}\nspec: {template: busybox}\n`;
    const { docs, problems } = parseManifests(text, '/m/ves.yaml');
    assert.equal(docs.length, 1);
    assert.equal(problems.length, 1);
    const p = problems[0]!;
    assert.deepEqual({ file: p.file, index: p.index, field: p.field }, { file: '/m/ves.yaml', index: 1, field: 'metadata.name' });
    assert.equal(formatProblem(p), '/m/ves.yaml: document 1 (line 11): metadata.name: Required value');
  });

  it('reports missing apiVersion and kind with the field', () => {
    const a = parseManifests('kind: VirtualEnvironment\nmetadata: {name: x}\n', 'f.yaml').problems[0];
    assert.equal(a?.field, 'apiVersion');
    const k = parseManifests('apiVersion: kubevz.io/v1alpha1\nmetadata: {name: x}\n', 'f.yaml').problems[0];
    assert.equal(k?.field, 'kind');
  });

  it('reports a YAML syntax error with the document index and the line', () => {
    const text = `${VE('a')}---\napiVersion: kubevz.io/v1alpha1\nkind: [unclosed\n`;
    const { problems } = parseManifests(text, 'f.yaml');
    assert.ok(problems.length >= 1);
    assert.equal(problems[0]?.index, 1);
    assert.match(problems[0]?.message ?? '', /invalid YAML/);
    assert.ok((problems[0]?.line ?? 0) >= 8, `line ${problems[0]?.line}`);
  });

  it('rejects a document that is not a mapping, and duplicates within a file', () => {
    assert.match(parseManifests('- a\n- b\n', 'f.yaml').problems[0]?.message ?? '', /expected a mapping/);
    const dup = parseManifests(`${VE('a')}---\n${VE('a')}`, 'f.yaml').problems[0];
    assert.equal(dup?.index, 1);
    assert.equal(dup?.field, 'metadata.name');
    assert.match(dup?.message ?? '', /duplicate of document 0/);
  });

  it('an empty file has no documents and no problems', () => {
    assert.deepEqual(parseManifests('', 'f.yaml'), { docs: [], problems: [] });
  });
});
