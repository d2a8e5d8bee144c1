// What of a VE's netns is put back after a restore: the ip lines and the iptables check.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { hasRules, ipCommands } from '../../../src/runtime/netns-state.js';

test('an iptables-save with only ACCEPT policies is nothing to restore; a rule, a chain or a DROP policy is', () => {
  const empty = '*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n';
  assert.equal(hasRules(''), false);
  assert.equal(hasRules(empty), false);
  assert.equal(hasRules(empty.replace('-', '').replace('COMMIT', '-A INPUT -p tcp -m tcp --dport 9 -j DROP\nCOMMIT')), true);
  assert.equal(hasRules(empty.replace(':INPUT ACCEPT', ':INPUT DROP')), true);
  assert.equal(hasRules('*filter\n-N mine\nCOMMIT\n'), true);
});

test("ip lines: the VE's own addresses and routes, not the kernel's nor CNI's", () => {
  const addrs = [
    { ifname: 'lo', addr_info: [{ family: 'inet', local: '127.0.0.1', prefixlen: 8, scope: 'host' }, { family: 'inet', local: '192.0.2.7', prefixlen: 32, scope: 'global' }] },
    {
      ifname: 'eth0',
      addr_info: [
        { family: 'inet', local: '10.1.0.5', prefixlen: 24, scope: 'global' },
        { family: 'inet', local: '192.0.2.8', prefixlen: 32, scope: 'global' },
        { family: 'inet6', local: 'fd00::5', prefixlen: 64, scope: 'global' },
        { family: 'inet6', local: 'fe80::1', prefixlen: 64, scope: 'link' },
      ],
    },
  ];
  const routes = [
    { dst: 'default', gateway: '10.1.0.1', dev: 'eth0', flags: [] },
    { dst: '10.1.0.0/24', dev: 'eth0', protocol: 'kernel', scope: 'link', prefsrc: '10.1.0.5', flags: [] },
    { dst: '198.51.100.0/24', dev: 'eth0', prefsrc: '192.0.2.8', flags: [] },
    { dst: '10.60.0.0/16', gateway: '10.1.0.9', dev: 'eth0', table: '100', protocol: 'static', metric: 50, flags: ['onlink'] },
    { dst: 'default', gateway: 'fd00::1', dev: 'eth0', metric: 1024, flags: [] },
    { type: 'local', dst: '10.1.0.5', dev: 'eth0', table: 'local', protocol: 'kernel', scope: 'host', flags: [] },
    { type: 'multicast', dst: 'ff00::/8', dev: 'eth0', table: 'local', protocol: 'kernel', flags: [] },
  ];
  const made = { ips: [{ address: '10.1.0.5/24' }], routes: [{ dst: '0.0.0.0/0', gw: '10.1.0.1' }] };
  assert.deepEqual(ipCommands(addrs, routes, made), [
    'address replace 192.0.2.7/32 dev lo',
    'address replace 192.0.2.8/32 dev eth0',
    'address replace fd00::5/64 dev eth0',
    'route replace 198.51.100.0/24 dev eth0 src 192.0.2.8',
    'route replace 10.60.0.0/16 via 10.1.0.9 dev eth0 table 100 metric 50 proto static onlink',
    'route replace default via fd00::1 dev eth0 metric 1024',
  ]);
  // Without CNI's result everything global comes back (replace is idempotent).
  assert.equal(ipCommands(addrs, routes).length, 8);
});
