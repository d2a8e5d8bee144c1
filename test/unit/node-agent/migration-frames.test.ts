// The data channel's framing read back from chunks cut at arbitrary places (socket reads do that).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ByteReader, blockFrameHeader, checkBlockUnit, fileFrameHeader, readBlockFrames, readFileFrames } from '../../../src/node-agent/migration-frames.js';

async function* cut(data: Buffer, sizes: number[]): AsyncGenerator<Buffer> {
  let off = 0;
  for (let i = 0; off < data.length; i++) {
    const n = sizes[i % sizes.length]!;
    yield data.subarray(off, off + n);
    off += n;
  }
}

const block = (i: number, n: number) => Buffer.alloc(n, i + 1);

test('block frames come back whole and in order whatever the chunking', async () => {
  const stream = Buffer.concat([blockFrameHeader(3, 5000), block(3, 5000), blockFrameHeader(9, 1), block(9, 1), blockFrameHeader(0, 70000), block(0, 70000)]);
  for (const sizes of [[1], [7, 3], [4096], [stream.length]]) {
    const got: Array<[number, Buffer]> = [];
    for await (const b of readBlockFrames(new ByteReader(cut(stream, sizes)))) got.push([b.index, b.data]);
    assert.deepEqual(got.map(([i, d]) => [i, d.length]), [[3, 5000], [9, 1], [0, 70000]], `chunks of ${sizes}`);
    assert.ok(got.every(([i, d]) => d.equals(block(i, d.length))), `data intact with chunks of ${sizes}`);
  }
});

test('file frames stream their data, and an undrained file is skipped to the next frame', async () => {
  const a = Buffer.from('pages of a'.repeat(1000));
  const b = Buffer.from('core of b');
  const stream = Buffer.concat([fileFrameHeader('pages-1.img', a.length), a, fileFrameHeader('core-1.img', b.length), b]);
  const got: Record<string, string> = {};
  for await (const f of readFileFrames(new ByteReader(cut(stream, [13, 1000])))) {
    if (f.name === 'pages-1.img') continue; // not drained by the consumer
    const parts: Buffer[] = [];
    for await (const c of f.data) parts.push(c);
    got[f.name] = Buffer.concat(parts).toString();
  }
  assert.deepEqual(got, { 'core-1.img': 'core of b' });
});

test('a stream cut inside a frame is an error that says to resend', async () => {
  const stream = Buffer.concat([blockFrameHeader(1, 100), block(1, 60)]);
  await assert.rejects(async () => {
    for await (const _ of readBlockFrames(new ByteReader(cut(stream, [16])))) { /* drain */ }
  }, /ended inside a frame \(60 of 100 bytes\).*resend/);
});

test('a frame larger than the request\'s unit is refused; units are powers of two from 4 KiB to 1 MiB', async () => {
  const stream = Buffer.concat([blockFrameHeader(1, 8192), block(1, 8192)]);
  await assert.rejects(async () => {
    for await (const _ of readBlockFrames(new ByteReader(cut(stream, [4096])), 4096)) { /* drain */ }
  }, /8192 bytes exceeds the unit of 4096/);
  assert.equal(checkBlockUnit(65536), 65536);
  for (const bad of [3000, 2048, 2 << 20, 65535.5]) assert.throws(() => checkBlockUnit(bad), { code: 'Invalid' });
});
