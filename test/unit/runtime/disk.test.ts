// Per-VE disk pieces that need no root: losetup output parsing, capability and kernel-config
// detection of node features (from fixture texts), block rounding.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { hasCap, onlineGrowFeature, quotaFeatureFromConfig, roundToBlock } from '../../../src/runtime/disk-image.js';
import { parseLosetupJ } from '../../../src/runtime/loop.js';

test('losetup -j output gives the devices backing a file', () => {
  const out = '/dev/loop3: [65024]:2148296 (/var/lib/kubevz/ves/u1/disk.img)\n/dev/loop12: [65024]:2148296 (/var/lib/kubevz/ves/u1/disk.img)\n';
  assert.deepEqual(parseLosetupJ(out), ['/dev/loop3', '/dev/loop12']);
  assert.deepEqual(parseLosetupJ(''), []);
});

// This host's masks: CAP_SYS_RESOURCE (bit 24) missing from both sets.
const WITHOUT = 'Name:\tnode\nCapInh:\t0000000000000000\nCapPrm:\t000001fffeffffff\nCapEff:\t000001fffeffffff\nCapBnd:\t000001fffeffffff\n';
const WITH = WITHOUT.replace(/fffeffffff/g, 'ffffffffff');

test('online grow follows CAP_SYS_RESOURCE in the effective set, and says why not', () => {
  assert.equal(hasCap(WITHOUT, 'CapEff', 24), false);
  assert.equal(hasCap(WITH, 'CapEff', 24), true);
  assert.equal(hasCap(WITHOUT, 'CapEff', 21), true, 'CAP_SYS_ADMIN');
  assert.equal(onlineGrowFeature(WITH).available, true);
  const f = onlineGrowFeature(WITHOUT);
  assert.equal(f.available, false);
  assert.match(f.reason, /CAP_SYS_RESOURCE.*not in its bounding set.*next stop\/start/);
  const effOnly = WITHOUT.replace(/CapBnd:.*$/m, 'CapBnd:\t000001ffffffffff');
  assert.match(onlineGrowFeature(effOnly).reason, /not effective/);
});

test('second-level quota is never reported available without QFMT_V2', () => {
  const here = 'CONFIG_QUOTA=y\nCONFIG_QUOTA_NETLINK_INTERFACE=y\n# CONFIG_QFMT_V2 is not set\nCONFIG_QUOTACTL=y\n';
  const f = quotaFeatureFromConfig(here);
  assert.equal(f.available, false);
  assert.match(f.reason, /lacks CONFIG_QFMT_V2/);
  assert.match(quotaFeatureFromConfig('').reason, /CONFIG_QUOTA and CONFIG_QFMT_V2/);
  // Even with kernel support, kubevz cannot hand quotas to the VE root yet: it says so.
  const full = quotaFeatureFromConfig('CONFIG_QUOTA=y\nCONFIG_QFMT_V2=m\n');
  assert.equal(full.available, false);
  assert.match(full.reason, /kernel supports ext4 quotas, but kubevz cannot yet/);
});

test('sizes round up to the 4 KiB block', () => {
  assert.equal(roundToBlock(1), 4096);
  assert.equal(roundToBlock(2 * 1024 ** 3), 2 * 1024 ** 3);
  assert.equal(roundToBlock(1e9), 1_000_001_536);
});
