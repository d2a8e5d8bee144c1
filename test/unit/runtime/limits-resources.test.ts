// Limit translation for the resource fields beyond memory/cpu/pids: soft limit, cpuset, I/O
// weight and throttles (bundle vs runc update), comparison rules, cpuset syntax.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatCpuset, limitsDiff, limitsEqual, ociResources, parseCpuset, runcUpdateJson, sameLimits } from '../../../src/runtime/limits.js';

test('guarantee, cpuset, weight and throttles become OCI resources; throttles need the device', () => {
  const l = { memoryBytes: 1 << 30, memoryGuaranteeBytes: 256 << 20, cpuset: '0-1', ioWeight: 500, writeBps: 1 << 20, readIops: 100 };
  const r = ociResources(l, { device: { major: 7, minor: 3 } });
  assert.deepEqual(r.memory, { limit: 1 << 30, swap: 1 << 30, reservation: 256 << 20 });
  assert.equal(r.cpu.cpus, '0-1');
  assert.deepEqual(r.blockIO, { weight: 500, throttleWriteBpsDevice: [{ major: 7, minor: 3, rate: 1 << 20 }], throttleReadIOPSDevice: [{ major: 7, minor: 3, rate: 100 }] });
  assert.deepEqual(ociResources(l).blockIO, { weight: 500 }, 'no device known: no throttle rules');
});

test('runc update clears what the spec dropped: reservation -1, cpus widened to the host, weight default', () => {
  const doc = JSON.parse(runcUpdateJson({}, { allCpus: '0-3' }));
  assert.deepEqual(doc, { memory: { limit: -1, swap: -1, reservation: -1 }, cpu: { shares: 1024, quota: -1, period: 100_000, cpus: '0-3' }, pids: { limit: -1 }, blockIO: { weight: 100 } });
  assert.equal(JSON.parse(runcUpdateJson({ writeBps: 5 })).blockIO.throttleWriteBpsDevice, undefined, 'runc 1.1.5 ignores throttles in update; the runtime writes them');
});

test('openFiles is restart-only: not a live difference, but a recorded one', () => {
  assert.ok(sameLimits({ openFiles: 1024 }, { openFiles: 4096 }));
  assert.ok(!limitsEqual({ openFiles: 1024 }, { openFiles: 4096 }));
  assert.deepEqual(limitsDiff({ openFiles: 4096 }, { openFiles: 1024 }), ['openFiles']);
  assert.deepEqual(limitsDiff({}, { openFiles: 1024 }), [], 'undeclared openFiles takes whatever the runtime default is');
  assert.deepEqual(limitsDiff({ cpuset: '0,1' }, { cpuset: '0-1' }), [], 'cpusets compare canonically');
  assert.deepEqual(limitsDiff({ ioWeight: 100, writeBps: 0 }, {}), [], 'defaults equal unset');
  assert.deepEqual(limitsDiff({ memoryGuaranteeBytes: 1000 }, {}), ['memoryGuaranteeBytes']);
});

test('cpuset syntax', () => {
  assert.deepEqual(parseCpuset('0-2,5'), [0, 1, 2, 5]);
  assert.equal(formatCpuset(parseCpuset('3,0,1,2')), '0-3');
  assert.equal(formatCpuset(parseCpuset('0,2,3')), '0,2-3');
  assert.throws(() => parseCpuset('0-'), /invalid cpuset "0-": expected a list such as "0-1"/);
  assert.throws(() => parseCpuset('3-1'), /runs backwards/);
});
