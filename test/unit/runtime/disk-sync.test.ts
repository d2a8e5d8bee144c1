import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, mkdirSync, rmSync, truncateSync, writeFileSync, openSync, writeSync, closeSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { blockDigests, changedBlocks, changedSubBlocks, dirDigest, parseFilefrag, readBlocks, writeBlock, zeroBlockDigest, type HeldBlocks } from '../../../src/runtime/disk-sync.js';

const dir = mkdtempSync(join(tmpdir(), 'kvz-disksync-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const BS = 64 * 1024;

function sparse(name: string, size: number, writes: Array<[number, Buffer]>): string {
  const p = join(dir, name);
  writeFileSync(p, '');
  truncateSync(p, size);
  const fd = openSync(p, 'r+');
  for (const [off, data] of writes) writeSync(fd, data, 0, data.length, off);
  closeSync(fd);
  return p;
}

test('holes and zero blocks digest as a zero block; data blocks as their sha256', async () => {
  const data = Buffer.alloc(BS, 7);
  const p = sparse('a.img', 4 * BS, [[BS, data], [3 * BS, Buffer.alloc(BS)]]);
  const d = await blockDigests(p, BS);
  assert.equal(d.length, 4);
  assert.equal(d[0], zeroBlockDigest(BS));
  assert.equal(d[1], createHash('sha256').update(data).digest('hex'));
  assert.equal(d[2], zeroBlockDigest(BS), 'a hole');
  assert.equal(d[3], zeroBlockDigest(BS), 'written zeros digest like a hole');
  assert.equal(zeroBlockDigest(BS), createHash('sha256').update(Buffer.alloc(BS)).digest('hex'));
});

test('a short last block is digested over its own length', async () => {
  const p = sparse('short.img', BS + 100, [[BS, Buffer.alloc(100, 1)]]);
  const d = await blockDigests(p, BS);
  assert.equal(d.length, 2);
  assert.equal(d[1], createHash('sha256').update(Buffer.alloc(100, 1)).digest('hex'));
});

test('changed blocks, read and written, make the target equal to the source', async () => {
  const src = sparse('src.img', 8 * BS, [[0, Buffer.alloc(BS, 1)], [5 * BS + 10, Buffer.from('hello')], [7 * BS, Buffer.alloc(BS, 9)]]);
  const dst = sparse('dst.img', 8 * BS, [[2 * BS, Buffer.alloc(BS, 3)]]);
  const want = changedBlocks(await blockDigests(src, BS), await blockDigests(dst, BS));
  assert.deepEqual(want, [0, 2, 5, 7]);
  for await (const { index, data } of readBlocks(src, want, BS)) await writeBlock(dst, index, data, BS);
  assert.deepEqual(await blockDigests(dst, BS), await blockDigests(src, BS));
  assert.ok(readFileSync(dst).equals(readFileSync(src)));
});

test('readBlocks refuses a block past the end; writeBlock a block bigger than the block size', async () => {
  const p = sparse('r.img', 2 * BS, []);
  await assert.rejects(async () => {
    for await (const _ of readBlocks(p, [2], BS)) void _;
  }, RangeError);
  await assert.rejects(writeBlock(p, 0, Buffer.alloc(BS + 1), BS), RangeError);
});

test('filefrag output parses into byte ranges', () => {
  const text = `Filesystem type is: ef53
File size of x is 10485760 (2560 blocks of 4096 bytes)
 ext:     logical_offset:        physical_offset: length:   expected: flags:
   0:      300..     302:          0..         0:      0:             last,unknown_loc,delalloc
x: 1 extent found`;
  assert.deepEqual(parseFilefrag(text), [[300 * 4096, 303 * 4096]]);
  assert.equal(parseFilefrag('garbage'), undefined);
});

test('dirDigest covers names and contents', async () => {
  const a = join(dir, 'imgs-a');
  const b = join(dir, 'imgs-b');
  for (const d of [a, b]) {
    mkdirSync(d);
    writeFileSync(join(d, 'core-1.img'), 'core');
    writeFileSync(join(d, 'pages-1.img'), Buffer.alloc(3 * 1024 * 1024, 5));
  }
  assert.equal(await dirDigest(a), await dirDigest(b));
  writeFileSync(join(b, 'core-1.img'), 'corf');
  assert.notEqual(await dirDigest(a), await dirDigest(b));
  writeFileSync(join(b, 'core-1.img'), 'core');
  writeFileSync(join(b, 'extra.img'), '');
  assert.notEqual(await dirDigest(a), await dirDigest(b), 'an extra empty file counts');
});

test('a block sent before goes again as only its changed sub-blocks; a zero block on the copy as its non-zero ones; an unknown one whole', async () => {
  const SUB = BS / 4;
  const p = sparse('sub.img', 3 * BS, [[0, Buffer.alloc(BS, 1)], [BS + SUB, Buffer.alloc(SUB, 2)], [2 * BS, Buffer.alloc(BS, 3)]]);
  const held: HeldBlocks = { digests: [zeroBlockDigest(BS), zeroBlockDigest(BS), 'something else'], subs: new Map() };
  const frames = async (idx: number[]) => {
    const out: Array<[number, number]> = [];
    for await (const f of changedSubBlocks(p, idx, held, BS, SUB)) out.push([f.index, f.data[0]!]);
    return out;
  };
  assert.deepEqual(await frames([0, 1, 2]), [[0, 1], [1, 1], [2, 1], [3, 1], [5, 2], [8, 3], [9, 3], [10, 3], [11, 3]]);
  assert.deepEqual(held.digests, await blockDigests(p, BS), 'held now says what the copy holds');
  // One 4 KiB write inside sub-block 2 of block 0: only that sub-block goes.
  const fd = openSync(p, 'r+');
  writeSync(fd, Buffer.alloc(4096, 9), 0, 4096, 2 * SUB + 100);
  closeSync(fd);
  const want = changedBlocks(await blockDigests(p, BS), held.digests);
  assert.deepEqual(want, [0]);
  assert.deepEqual(await frames(want), [[2, 1]]);
  assert.deepEqual(await frames([0]), [], 'nothing left to send');
  await assert.rejects(async () => { for await (const _ of changedSubBlocks(p, [0], held, BS, 3000)) { /* drain */ } }, RangeError);
});
