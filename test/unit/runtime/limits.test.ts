import assert from 'node:assert/strict';
import { test } from 'node:test';
import { normalizeLimits, ociResources, runcUpdateJson, sameLimits } from '../../../src/runtime/limits.js';

test('limits become OCI resources with memsw = memory + swap', () => {
  assert.deepEqual(ociResources({ memoryBytes: 256 << 20, swapBytes: 64 << 20, cpuShares: 500, cpuQuotaUs: 50_000, cpuPeriodUs: 100_000, pids: 64 }), {
    memory: { limit: 256 << 20, swap: 320 << 20, reservation: -1 },
    cpu: { shares: 500, quota: 50_000, period: 100_000 },
    pids: { limit: 64 },
    blockIO: { weight: 100 },
  });
});

test('unset limits are written explicitly as unlimited/defaults so runc update clears old ones', () => {
  assert.deepEqual(ociResources({}), {
    memory: { limit: -1, swap: -1, reservation: -1 },
    cpu: { shares: 1024, quota: -1, period: 100_000 },
    pids: { limit: -1 },
    blockIO: { weight: 100 },
  });
  // no swap declared: memsw equals memory (no swap)
  assert.deepEqual(ociResources({ memoryBytes: 1 << 30 }).memory, { limit: 1 << 30, swap: 1 << 30, reservation: -1 });
});

test('runc update JSON is a LinuxResources document', () => {
  const doc = JSON.parse(runcUpdateJson({ memoryBytes: 4096 * 1000, pids: 10 }));
  assert.equal(doc.memory.limit, 4096 * 1000);
  assert.equal(doc.memory.swap, 4096 * 1000);
  assert.equal(doc.pids.limit, 10);
  assert.equal(doc.cpu.shares, 1024);
});

test('sameLimits treats defaults and page rounding as equal', () => {
  assert.ok(sameLimits({}, { cpuShares: 1024, cpuPeriodUs: 100_000 }));
  assert.ok(sameLimits({ memoryBytes: 100_000_000 }, { memoryBytes: 99_999_744, swapBytes: 0 }));
  assert.ok(!sameLimits({ memoryBytes: 1 << 20 }, { memoryBytes: 2 << 20 }));
  assert.ok(!sameLimits({ pids: 10 }, {}));
  assert.ok(!sameLimits({ cpuQuotaUs: 10_000 }, {}));
  assert.deepEqual(normalizeLimits({ memoryBytes: 8192, swapBytes: 4096 }), { cpuShares: 1024, cpuPeriodUs: 100_000, memoryBytes: 8192, swapBytes: 4096, ioWeight: 100 });
});
