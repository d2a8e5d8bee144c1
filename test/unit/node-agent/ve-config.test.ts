import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { VirtualEnvironment } from '../../../src/api/types.js';
import { allocateAddress, inSubnet } from '../../../src/node-agent/address-pool.js';
import { configFromSpec, limitsFromSpec } from '../../../src/node-agent/ve-config.js';
import { buildStatus, statusPatch } from '../../../src/node-agent/ve-status.js';

function ve(spec: Partial<VirtualEnvironment['spec']> = {}): VirtualEnvironment {
  return { apiVersion: 'kubevz.io/v1alpha1', kind: 'VirtualEnvironment', metadata: { name: 'web1', namespace: 'default', uid: 'u-1', generation: 3 }, spec: { template: 'busybox', ...spec } };
}

test('spec resources become runtime limits', () => {
  const limits = limitsFromSpec(ve({ resources: { memory: { limit: '512Mi', swap: '256Mi' }, cpu: { units: 1000, limit: '150%' }, processes: 200 } }));
  assert.deepEqual(limits, { memoryBytes: 512 * 2 ** 20, swapBytes: 256 * 2 ** 20, cpuShares: 1000, cpuPeriodUs: 100000, cpuQuotaUs: 150000, pids: 200 });
  assert.equal(limitsFromSpec(ve({ resources: { cpu: { cpus: 2 } } })).cpuQuotaUs, 200000);
  assert.equal(limitsFromSpec(ve({ resources: { cpu: { cpus: 1, limit: '300%' } } })).cpuQuotaUs, 100000, 'the smaller of cpus and limit');
});

test('an unusable spec is a terminal error naming the field', () => {
  assert.throws(() => limitsFromSpec(ve({ resources: { memory: { limit: 'lots' } } })), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'Terminal');
    assert.match(err.message, /spec\.resources\.memory\.limit/);
    return true;
  });
  assert.throws(() => limitsFromSpec(ve({ resources: { memory: { swap: '1Gi' } } })), /needs spec\.resources\.memory\.limit/);
});

test('hostname defaults to the resource name', () => {
  assert.equal(configFromSpec(ve(), ['10.0.0.2/24']).hostname, 'web1');
  assert.equal(configFromSpec(ve({ hostname: 'h' }), []).hostname, 'h');
});

test('address allocation skips used addresses and stays in the subnet', () => {
  assert.equal(allocateAddress('10.213.5.0/24', []), '10.213.5.10/24');
  assert.equal(allocateAddress('10.213.5.0/24', ['10.213.5.10/24', '10.213.5.11']), '10.213.5.12/24');
  assert.ok(inSubnet('10.213.5.12/24', '10.213.5.0/24'));
  assert.ok(!inSubnet('10.213.6.12/24', '10.213.5.0/24'));
  assert.throws(() => allocateAddress('10.213.5.0/30', ['10.213.5.1', '10.213.5.2'], 1), /no free address/);
});

test('status is patched only when something changed', () => {
  const obj = ve();
  const next = buildStatus(obj, { phase: 'Running', nodeName: 'n1', addresses: ['10.0.0.2/24'], initPid: 42, ready: { status: 'True', reason: 'Running' } }, new Date('2026-01-01T00:00:00Z'));
  assert.equal(next.observedGeneration, 3);
  assert.deepEqual(next.addresses, ['10.0.0.2']);
  assert.equal(next.conditions?.[0]?.observedGeneration, 3);
  assert.ok(statusPatch(undefined, next));
  assert.equal(statusPatch(next, buildStatus({ ...obj, status: next }, { phase: 'Running', nodeName: 'n1', addresses: ['10.0.0.2/24'], initPid: 42, ready: { status: 'True', reason: 'Running' } }, new Date('2026-02-01T00:00:00Z'))), undefined, 'same state, no write (lastTransitionTime kept)');
  const stopped = buildStatus({ ...obj, status: next }, { phase: 'Stopped', nodeName: 'n1', addresses: [], ready: { status: 'False', reason: 'Stopped' } });
  const patch = statusPatch(next, stopped)!;
  assert.equal(patch.phase, 'Stopped');
  assert.equal(patch.initPid, null, 'a vanished field is removed');
});
