// Host id range allocation for user namespaces: no overlap with other VEs' records or live user
// namespaces, records survive a new allocator (agent restart), kept ranges honoured or refused.

import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { FIRST_HOST_ID, ID_RANGE_SIZE, UsernsAllocator, parseIdMap, pickRange, rangesOverlap, slotRange } from '../../../src/runtime/userns.js';

const dir = mkdtempSync(join(tmpdir(), 'kvz-userns-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function veDir(uid: string): string {
  mkdirSync(join(dir, uid), { recursive: true });
  return uid;
}

test('parseIdMap skips the initial namespace and reads host ranges', () => {
  assert.deepEqual(parseIdMap('         0          0 4294967295\n'), []);
  assert.deepEqual(parseIdMap('         0    1048576      65536\n'), [{ hostId: 1048576, size: 65536 }]);
});

test('pickRange starts at the uid\'s slot and skips taken ones', () => {
  const first = pickRange('ve-1', []);
  assert.ok(first.hostId >= FIRST_HOST_ID && first.size === ID_RANGE_SIZE);
  const next = pickRange('ve-1', [first]);
  assert.ok(!rangesOverlap(first, next));
  assert.deepEqual(pickRange('ve-1', [{ hostId: first.hostId + 5, size: 1 }]), next, 'a partial overlap also counts');
});

test('allocations never overlap, also with live user namespaces, and survive a new allocator', async () => {
  const live = slotRange(7);
  const alloc = new UsernsAllocator({ vesDir: dir, liveRanges: async () => [live] });
  const uids = Array.from({ length: 20 }, (_, i) => veDir(`ve-${i}`));
  const ranges = await Promise.all(uids.map((u) => alloc.ensure(u).then((r) => r.range)));
  for (let i = 0; i < ranges.length; i++) {
    assert.ok(!rangesOverlap(ranges[i]!, live), 'not a live namespace\'s range');
    for (let j = i + 1; j < ranges.length; j++) assert.ok(!rangesOverlap(ranges[i]!, ranges[j]!), `${i} and ${j} overlap`);
  }
  const restarted = new UsernsAllocator({ vesDir: dir, liveRanges: async () => [] });
  const again = await restarted.ensure('ve-3');
  assert.equal(again.allocated, false);
  assert.deepEqual(again.range, ranges[3]);
});

test('a kept range (migration) is taken when free and refused when in use', async () => {
  const alloc = new UsernsAllocator({ vesDir: dir, liveRanges: async () => [] });
  const held = (await alloc.ensure(veDir('holder'))).range;
  const want = { hostId: 3_000_000_000, size: ID_RANGE_SIZE };
  assert.deepEqual((await alloc.ensure(veDir('migrated'), want)).range, want);
  await assert.rejects(alloc.ensure(veDir('clash'), held), (e: Error & { code?: string }) => e.code === 'Conflict' && /overlaps/.test(e.message));
  await assert.rejects(alloc.ensure('migrated', held), /fixed for the VE's lifetime/);
});
