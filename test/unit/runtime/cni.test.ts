import assert from 'node:assert/strict';
import { test } from 'node:test';
import { bridgeConfig, cidrContains, gatewayOf, restoreIfaceBatch } from '../../../src/runtime/cni.js';

test('gateway is the first host address of the bridge subnet', () => {
  assert.equal(gatewayOf('10.213.5.0/24'), '10.213.5.1');
  assert.equal(gatewayOf('10.213.5.77/24'), '10.213.5.1');
  assert.equal(gatewayOf('10.213.0.0/16'), '10.213.0.1');
  assert.ok(cidrContains('10.213.5.0/24', '10.213.5.200'));
  assert.ok(!cidrContains('10.213.5.0/24', '10.213.6.1'));
});

test('bridge config: node bridge, gateway, static IPAM with the declared addresses and the MAC', () => {
  const c = bridgeConfig({ bridge: 'kvzbr0', subnet: '10.213.5.0/24', addresses: ['10.213.5.10/24', '10.213.5.11/24'], mac: '02:00:00:00:00:01' });
  assert.deepEqual(c, {
    cniVersion: '1.0.0',
    name: 'kubevz-kvzbr0',
    type: 'bridge',
    bridge: 'kvzbr0',
    isGateway: true,
    ipMasq: false,
    hairpinMode: false,
    runtimeConfig: { mac: '02:00:00:00:00:01' },
    ipam: {
      type: 'static',
      addresses: [
        { address: '10.213.5.10/24', gateway: '10.213.5.1' },
        { address: '10.213.5.11/24', gateway: '10.213.5.1' },
      ],
      routes: [{ dst: '0.0.0.0/0', gw: '10.213.5.1' }],
    },
  });
});

test('addresses outside the subnet, or the gateway itself, are refused with code Invalid', () => {
  assert.throws(() => bridgeConfig({ bridge: 'b', subnet: '10.213.5.0/24', addresses: ['10.213.6.10/24'], mac: '02:00:00:00:00:01' }), { code: 'Invalid' });
  assert.throws(() => bridgeConfig({ bridge: 'b', subnet: '10.213.5.0/24', addresses: ['10.213.5.1/24'], mac: '02:00:00:00:00:01' }), { code: 'Invalid' });
  assert.throws(() => bridgeConfig({ bridge: 'b', subnet: '10.213.5.0/24', addresses: ['banana'], mac: '02:00:00:00:00:01' }), { code: 'Invalid' });
});

test('an existing bridge: no gateway address put on it, the given gateway used for routes, and refused as a VE address', () => {
  const c = bridgeConfig({ bridge: 'br0', subnet: '10.213.9.0/24', gateway: '10.213.9.254', isGateway: false, addresses: ['10.213.9.10/24'], mac: '02:00:00:00:00:01' }) as {
    isGateway: boolean;
    ipam: { addresses: { gateway: string }[]; routes: { gw: string }[] };
  };
  assert.equal(c.isGateway, false);
  assert.equal(c.ipam.addresses[0]?.gateway, '10.213.9.254');
  assert.equal(c.ipam.routes[0]?.gw, '10.213.9.254');
  assert.throws(() => bridgeConfig({ bridge: 'br0', subnet: '10.213.9.0/24', gateway: '10.213.9.254', addresses: ['10.213.9.254/24'], mac: '02:00:00:00:00:01' }), /gateway address/);
});

test('a staged interface moved into a restored netns gets back its ADD result: lo and eth0 up, addresses (IPv6 without DAD), routes without -6', () => {
  const batch = restoreIfaceBatch({
    cniVersion: '1.0.0',
    interfaces: [{ name: 'kvzbr0' }, { name: 'veth1' }, { name: 'eth0', mac: '02:00:00:00:00:01', sandbox: '/run/netns/x' }],
    ips: [{ interface: 2, address: '10.213.5.10/24', gateway: '10.213.5.1' }, { interface: 2, address: 'fd00:5::10/64', gateway: 'fd00:5::1' }, { interface: 1, address: '10.9.9.9/32' }],
    routes: [{ dst: '0.0.0.0/0', gw: '10.213.5.1' }, { dst: '::/0', gw: 'fd00:5::1' }, { dst: '10.7.0.0/16' }],
  }, 'eth0');
  assert.deepEqual(batch.trim().split('\n'), [
    'link set dev lo up',
    'address add 10.213.5.10/24 dev eth0',
    'address add fd00:5::10/64 dev eth0 nodad',
    'link set dev eth0 up',
    'route add 0.0.0.0/0 via 10.213.5.1 dev eth0',
    'route add ::/0 via fd00:5::1 dev eth0',
    'route add 10.7.0.0/16 dev eth0',
  ]);
  assert.ok(!/-6/.test(batch));
});
