import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseBytes, parseCpuLimit } from '../../../src/api/quantity.js';

test('byte quantities', () => {
  assert.equal(parseBytes('512Mi', 'f'), 512 * 2 ** 20);
  assert.equal(parseBytes('2Gi', 'f'), 2 * 2 ** 30);
  assert.equal(parseBytes('1G', 'f'), 1e9);
  assert.equal(parseBytes('1.5Ki', 'f'), 1536);
  assert.equal(parseBytes(4096, 'f'), 4096);
  assert.equal(parseBytes('100', 'f'), 100);
});

test('bad byte quantities name the field and say what is accepted', () => {
  assert.throws(() => parseBytes('12 apples', 'spec.resources.memory.limit'), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'Invalid');
    assert.match(err.message, /^spec\.resources\.memory\.limit: invalid value "12 apples": expected a quantity such as 512Mi/);
    return true;
  });
  assert.throws(() => parseBytes(-1, 'x'), /non-negative/);
});

test('cpu limits', () => {
  assert.equal(parseCpuLimit('150%', 'f'), 1.5);
  assert.equal(parseCpuLimit('50%', 'f'), 0.5);
  assert.equal(parseCpuLimit('1.5', 'f'), 1.5);
  assert.equal(parseCpuLimit('500m', 'f'), 0.5);
  assert.equal(parseCpuLimit(2, 'f'), 2);
  assert.throws(() => parseCpuLimit('0%', 'spec.resources.cpu.limit'), /spec\.resources\.cpu\.limit: .*greater than zero/);
  assert.throws(() => parseCpuLimit('fast', 'spec.resources.cpu.limit'), /percent of one CPU/);
});
