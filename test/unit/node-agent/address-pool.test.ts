// Address allocation (IPv4 and IPv6) and conflict detection between VEs (cluster-wide claims).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { NODE_LABEL, type VirtualEnvironment } from '../../../src/api/types.js';
import { addressConflict, allocateAddress, chooseAddresses, claimsOfOthers, type AddressClaim } from '../../../src/node-agent/address-pool.js';

test('allocation: lowest free address per family, IPv6 from the node IPv6 subnet', () => {
  assert.equal(allocateAddress('fd00:213:5::/64', []), 'fd00:213:5::a/64');
  assert.equal(allocateAddress('fd00:213:5::/64', ['fd00:213:5:0::a/64', 'fd00:213:5::b']), 'fd00:213:5::c/64');
  const both = chooseAddresses({ declared: [], subnet: '10.213.5.0/24', subnet6: 'fd00:213:5::/64', usedByOthers: () => ['10.213.5.10/24', 'fd00:213:5::a'] });
  assert.deepEqual(both, ['10.213.5.11/24', 'fd00:213:5::b/64']);
  assert.deepEqual(chooseAddresses({ declared: ['FD00:213:5::20/64'], subnet: '10.213.5.0/24', usedByOthers: () => [] }), ['fd00:213:5::20/64']);
  assert.deepEqual(chooseAddresses({ declared: [], reported: ['10.213.5.12', 'fd00:213:5::c'], subnet: '10.213.5.0/24', subnet6: 'fd00:213:5::/64', usedByOthers: () => { throw new Error('not asked'); } }),
    ['10.213.5.12/24', 'fd00:213:5::c/64'], 'allocated addresses stay with the VE');
});

const claim = (key: string, addresses: string[], o: Partial<AddressClaim> = {}): AddressClaim => ({ key, uid: key, addresses, holds: false, ...o });

test('conflicts: the VE holding the address wins and the other is told its name; between new ones the older wins', () => {
  const a = claim('default/a', ['10.213.5.10/24'], { holds: true, created: '2024-01-02T00:00:00Z' });
  const b = claim('default/b', ['10.213.5.10/24', 'fd00:213:5::10/64'], { created: '2024-01-01T00:00:00Z' });
  assert.deepEqual(addressConflict(b, [a]), { address: '10.213.5.10/24', other: 'default/a' });
  assert.equal(addressConflict(a, [b]), undefined);
  const c = claim('default/c', ['fd00:213:5:0:0:0:0:10/64'], { created: '2024-01-03T00:00:00Z' });
  assert.deepEqual(addressConflict(c, [b]), { address: 'fd00:213:5:0:0:0:0:10/64', other: 'default/b' }, 'IPv6 compared canonically');
  assert.equal(addressConflict(b, [c]), undefined, 'exactly one of two is refused');
  assert.equal(addressConflict(claim('default/d', ['10.213.5.99/24']), [a, b, c]), undefined);
});

test('conflicts: a running VE holds only the addresses it runs with, not new ones its spec asks for', () => {
  const a = claim('default/a', ['10.213.5.10/24', '10.213.5.20/24'], { holds: true, held: ['10.213.5.10/24'], created: '2024-01-01T00:00:00Z' });
  const b = claim('default/b', ['10.213.5.20/24'], { holds: true, held: ['10.213.5.20/24'], created: '2024-01-02T00:00:00Z' });
  assert.deepEqual(addressConflict(a, [b]), { address: '10.213.5.20/24', other: 'default/b' }, 'the holder of .20 keeps it though younger');
  assert.equal(addressConflict(b, [a]), undefined);
});

test('claims of others: declared and reported addresses, held while Running, never the VE itself nor one being deleted', () => {
  const ve = (name: string, uid: string, o: { declared?: string[]; status?: VirtualEnvironment['status']; deleting?: boolean; node?: string } = {}): VirtualEnvironment => ({
    apiVersion: 'kubevz.io/v1alpha1', kind: 'VirtualEnvironment',
    metadata: { name, namespace: 'ns', uid, creationTimestamp: '2024-01-01T00:00:00Z', labels: o.node ? { [NODE_LABEL]: o.node } : {}, ...(o.deleting ? { deletionTimestamp: '2024-01-02T00:00:00Z' } : {}) },
    spec: { template: 't', ...(o.declared ? { network: { addresses: o.declared } } : {}) },
    ...(o.status ? { status: o.status } : {}),
  });
  const claims = claimsOfOthers([
    ve('self', 'u0', { declared: ['10.0.0.1/24'] }),
    ve('run', 'u1', { declared: ['10.0.0.2/24'], status: { phase: 'Running', addresses: ['10.0.0.3'], nodeName: 'n2' } }),
    ve('stopped', 'u2', { status: { phase: 'Stopped', addresses: ['10.0.0.4'] }, node: 'n3' }),
    ve('gone', 'u3', { declared: ['10.0.0.5/24'], deleting: true }),
    ve('none', 'u4'),
  ], 'u0');
  assert.deepEqual(claims.map((c) => [c.key, c.addresses, c.holds, c.node]), [
    ['ns/run', ['10.0.0.2/24', '10.0.0.3'], true, 'n2'],
    ['ns/stopped', ['10.0.0.4'], false, 'n3'],
  ]);
  assert.deepEqual(addressConflict({ key: 'ns/self', uid: 'u0', addresses: ['10.0.0.3/24'], holds: false }, claims), { address: '10.0.0.3/24', other: 'ns/run', node: 'n2' });
});
