// Device allow-list and exclusive grants: one VE per host device, refusals name the holder.

import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { DEFAULT_DEVICE_RULES, DeviceGrants, deviceRules, resolveDevice, splitDev } from '../../../src/runtime/devices.js';

const dir = mkdtempSync(join(tmpdir(), 'kvz-devices-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('splitDev decodes Linux dev_t', () => {
  assert.deepEqual(splitDev(0x103), { major: 1, minor: 3 });
  assert.deepEqual(splitDev(0x8810), { major: 136, minor: 16 });
  assert.deepEqual(splitDev((259 << 8) | 0 | (1 << 20)), { major: 259, minor: 256 });
});

test('the default allow-list denies everything first, then allows what a distribution needs', () => {
  assert.deepEqual(DEFAULT_DEVICE_RULES[0], { allow: false, access: 'rwm' });
  const allowed = DEFAULT_DEVICE_RULES.filter((r) => r.allow).map((r) => `${r.major}:${r.minor ?? '*'}`);
  for (const d of ['1:3', '1:5', '1:7', '1:8', '1:9', '5:0', '5:2', '136:*', '10:229']) assert.ok(allowed.includes(d), d);
  assert.ok(!allowed.some((d) => d.startsWith('8:') || d.startsWith('7:')), 'no disks or loop devices by default');
});

test('a grant resolves against the host and adds one allow rule', async () => {
  const d = await resolveDevice({ path: '/dev/null', access: 'rw' });
  assert.deepEqual([d.type, d.major, d.minor, d.access], ['c', 1, 3, 'rw']);
  assert.deepEqual(deviceRules([d]).at(-1), { allow: true, type: 'c', major: 1, minor: 3, access: 'rw' });
  await assert.rejects(resolveDevice({ path: '/etc/passwd' }), /only device nodes under \/dev\//);
  await assert.rejects(resolveDevice({ path: '/dev/null', access: 'x' }), /spec.devices\[0\].access/);
  await assert.rejects(resolveDevice({ path: '/dev/kvz-does-not-exist' }), /does not exist on this node/);
});

test('a device granted to one VE is refused to another until the holder is gone', async () => {
  for (const u of ['a', 'b']) mkdirSync(join(dir, u), { recursive: true });
  const grants = new DeviceGrants(dir);
  const [ga, gb] = await Promise.allSettled([grants.claim('a', 'ns/a', [{ path: '/dev/null' }]), grants.claim('b', 'ns/b', [{ path: '/dev/null' }])]);
  assert.equal(ga.status, 'fulfilled');
  assert.equal(gb.status, 'rejected', 'concurrent claims cannot both win');
  assert.match(String((gb as PromiseRejectedResult).reason.message), /already granted to VE ns\/a/);
  assert.equal((await grants.claim('a', 'ns/a', [{ path: '/dev/null' }])).length, 1, 'the holder may claim again');
  rmSync(join(dir, 'a'), { recursive: true });
  assert.equal((await grants.claim('b', 'ns/b', [{ path: '/dev/null' }])).length, 1);
});
