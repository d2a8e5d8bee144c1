import assert from 'node:assert/strict';
import { test } from 'node:test';
import { cgroupPath, containerId, hostVethName, macAddress, netnsName } from '../../../src/runtime/names.js';

const uid = '0b5e0f5a-1111-4222-8333-444455556666';

test('container id is kvz- plus the first 12 hex chars of the uid', () => {
  assert.equal(containerId(uid), 'kvz-0b5e0f5a1111');
  assert.equal(netnsName(uid), 'kvz-0b5e0f5a1111');
  assert.equal(cgroupPath(uid), '/kubevz/kvz-0b5e0f5a1111');
});

test('host veth name fits IFNAMSIZ and is derived from the uid', () => {
  const name = hostVethName(uid);
  assert.equal(name, 'kvz0b5e0f5a11');
  assert.ok(name.length <= 15);
});

test('a uid that is not hex still gets valid, stable, distinct names', () => {
  const a = containerId('test-ve-a');
  assert.match(a, /^kvz-[0-9a-f]{12}$/);
  assert.equal(a, containerId('test-ve-a'));
  assert.notEqual(a, containerId('test-ve-b'));
  assert.match(hostVethName('test-ve-a'), /^kvz[0-9a-f]{10}$/);
});

test('MAC is deterministic, unicast and locally administered', () => {
  const mac = macAddress(uid);
  assert.equal(mac, macAddress(uid));
  assert.notEqual(mac, macAddress('0b5e0f5a-1111-4222-8333-444455556667'));
  assert.match(mac, /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/);
  const first = parseInt(mac.slice(0, 2), 16);
  assert.equal(first & 0x01, 0, 'unicast');
  assert.equal(first & 0x02, 0x02, 'locally administered');
});
