// Routed (ptp) and IPv6 CNI configs, address parsing, and the VE's resolv.conf text.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { bridgeConfig, networkConfig, routedConfig, routedPlan } from '../../../src/runtime/cni.js';
import { canonicalIp, nthAddress, parseCidrAny, subnetContains } from '../../../src/runtime/network-addr.js';
import { resolvConf } from '../../../src/runtime/network-files.js';

const mac = '02:00:00:00:00:01';

test('IPv4 and IPv6 addresses parse, canonicalise and compare by subnet', () => {
  assert.equal(canonicalIp('FD00:0213:0005:0000:0000:0000:0000:0010'), 'fd00:213:5::10');
  assert.equal(canonicalIp('fd00:213:5::10/64'), 'fd00:213:5::10');
  assert.equal(canonicalIp('::1'), '::1');
  assert.equal(canonicalIp('1:0:0:2:0:0:0:3'), '1:0:0:2::3');
  assert.equal(nthAddress('fd00:213:5::/64', 1), 'fd00:213:5::1');
  assert.equal(nthAddress('10.213.5.0/24', 10), '10.213.5.10');
  assert.ok(subnetContains('fd00:213:5::/64', 'fd00:213:5::abcd'));
  assert.ok(!subnetContains('fd00:213:5::/64', 'fd00:213:6::1'));
  assert.ok(!subnetContains('10.213.5.0/24', 'fd00:213:5::1'), 'families never match');
  assert.equal(parseCidrAny('fd00:213:5::10/64').prefix, 64);
  assert.throws(() => parseCidrAny('fd00::1::2/64'), { code: 'Invalid' });
  assert.throws(() => parseCidrAny('10.213.5.10/33'), { code: 'Invalid' });
});

test('routed mode: ptp plugin, static IPAM with the node gateways, default routes per family, no bridge', () => {
  const c = routedConfig({ subnet: '10.213.5.0/24', subnet6: 'fd00:213:5::/64', addresses: ['10.213.5.10/24', 'fd00:213:5::10/64', '10.213.5.11/24'], mac });
  assert.deepEqual(c, {
    cniVersion: '1.0.0',
    name: 'kubevz-routed',
    type: 'ptp',
    ipMasq: false,
    runtimeConfig: { mac },
    ipam: {
      type: 'static',
      addresses: [
        { address: '10.213.5.10/24', gateway: '10.213.5.1' },
        { address: 'fd00:213:5::10/64', gateway: 'fd00:213:5::1' },
      ],
      routes: [{ dst: '0.0.0.0/0' }, { dst: '::/0' }],
    },
  });
  // ptp takes one address per family; the rest are added by the runtime.
  assert.deepEqual(routedPlan({ subnet: '10.213.5.0/24', subnet6: 'fd00:213:5::/64', addresses: ['10.213.5.10/24', 'fd00:213:5::10/64', '10.213.5.11/24'], mac }).extras, ['10.213.5.11/24']);
  assert.ok(!('bridge' in c));
  assert.equal(networkConfig('routed', { bridge: 'kvzbr0', subnet: '10.213.5.0/24', addresses: ['10.213.5.10/24'], mac }).type, 'ptp');
  assert.equal(networkConfig('bridged', { bridge: 'kvzbr0', subnet: '10.213.5.0/24', addresses: ['10.213.5.10/24'], mac }).type, 'bridge');
});

test('bridged mode with IPv6: the v6 gateway and a ::/0 route; IPv6 without a node IPv6 subnet is refused saying which flag', () => {
  const c = bridgeConfig({ bridge: 'kvzbr0', subnet: '10.213.5.0/24', subnet6: 'fd00:213:5::/64', addresses: ['10.213.5.10/24', 'fd00:213:5::10/64'], mac }) as {
    ipam: { addresses: unknown[]; routes: unknown[] };
  };
  assert.deepEqual(c.ipam.addresses, [
    { address: '10.213.5.10/24', gateway: '10.213.5.1' },
    { address: 'fd00:213:5::10/64', gateway: 'fd00:213:5::1' },
  ]);
  assert.deepEqual(c.ipam.routes, [{ dst: '0.0.0.0/0', gw: '10.213.5.1' }, { dst: '::/0', gw: 'fd00:213:5::1' }]);
  assert.throws(() => bridgeConfig({ bridge: 'b', subnet: '10.213.5.0/24', addresses: ['fd00:213:5::10/64'], mac }), /--subnet6/);
  assert.throws(() => routedConfig({ subnet: '10.213.5.0/24', subnet6: 'fd00:213:5::/64', addresses: ['fd00:213:6::10/64'], mac }), /outside the node routed subnet/);
  assert.throws(() => routedConfig({ subnet: '10.213.5.0/24', subnet6: 'fd00:213:5::/64', addresses: ['fd00:213:5::1/64'], mac }), /gateway address/);
});

test('resolv.conf: the declared nameservers and search domains; none declared = a comment only', () => {
  assert.equal(resolvConf({ nameservers: ['10.213.5.53', 'fd00:213:5::53'], searchDomains: ['example.test'] }),
    '# Written by kubevz from spec.network.nameservers and spec.network.searchDomains; edits are replaced at the next start.\nsearch example.test\nnameserver 10.213.5.53\nnameserver fd00:213:5::53\n');
  const empty = resolvConf(undefined);
  assert.ok(!/^nameserver/m.test(empty), empty);
  assert.match(empty, /^# No nameservers declared/m);
});
