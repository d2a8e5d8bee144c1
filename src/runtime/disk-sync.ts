// Block-level delta of a sparse disk image, for the migration data channel: per-block sha256
// digests (holes digest as zeros without being read: the extents come from FIEMAP through
// `filefrag -e`, and a block that is read and found all-zero is not hashed), reading chosen
// blocks, writing one block at its offset, and a digest of a directory of CRIU images.

import { createHash } from 'node:crypto';
import { open, readdir, stat, type FileHandle } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { run } from './command.js';

export const DEFAULT_BLOCK_SIZE = 1024 * 1024;

const zeroDigests = new Map<number, string>();

/** sha256 (hex) of `length` zero bytes: what a hole (or a zero block) of that length digests as. */
export function zeroBlockDigest(length = DEFAULT_BLOCK_SIZE): string {
  let d = zeroDigests.get(length);
  if (!d) {
    d = createHash('sha256').update(Buffer.alloc(length)).digest('hex');
    zeroDigests.set(length, d);
  }
  return d;
}

/** Byte ranges [start, end) that hold data, from `filefrag -e` output (its block size in the header). */
export function parseFilefrag(text: string): Array<[number, number]> | undefined {
  const bs = /\((\d+) blocks? of (\d+) bytes\)/.exec(text);
  if (!bs) return undefined;
  const blockBytes = Number(bs[2]);
  const out: Array<[number, number]> = [];
  for (const line of text.split('\n')) {
    const m = /^\s*\d+:\s+(\d+)\.\.\s*(\d+):/.exec(line);
    if (m) out.push([Number(m[1]) * blockBytes, (Number(m[2]) + 1) * blockBytes]);
  }
  return out;
}

/** Data extents of a file, or undefined when the filesystem cannot tell (then every block is read). */
export async function dataRanges(file: string): Promise<Array<[number, number]> | undefined> {
  try {
    const res = await run('filefrag', ['-e', file], { allowFailure: true });
    if (res.exitCode !== 0) return undefined;
    return parseFilefrag(res.stdout);
  } catch {
    return undefined;
  }
}

function overlaps(ranges: Array<[number, number]>, start: number, end: number): boolean {
  return ranges.some(([a, b]) => a < end && b > start);
}

/**
 * sha256 (hex) per block of `file`; the last block may be shorter. Holes and zero blocks digest as
 * zeroBlockDigest(length). `extents`: the file's data ranges when the caller has them (else looked up).
 */
export async function blockDigests(file: string, blockSize = DEFAULT_BLOCK_SIZE, extents?: Array<[number, number]>): Promise<string[]> {
  const size = (await stat(file)).size;
  const ranges = extents ?? (await dataRanges(file));
  const fh = await open(file, 'r');
  const buf = Buffer.alloc(blockSize);
  const zero = Buffer.alloc(blockSize);
  const out: string[] = [];
  try {
    for (let off = 0; off < size; off += blockSize) {
      const len = Math.min(blockSize, size - off);
      if (ranges && !overlaps(ranges, off, off + len)) {
        out.push(zeroBlockDigest(len));
        continue;
      }
      const { bytesRead } = await fh.read(buf, 0, len, off);
      const data = buf.subarray(0, len);
      if (bytesRead < len) data.fill(0, bytesRead);
      out.push(data.equals(zero.subarray(0, len)) ? zeroBlockDigest(len) : createHash('sha256').update(data).digest('hex'));
    }
  } finally {
    await fh.close();
  }
  return out;
}

/** Indexes of the blocks the target must get: digests that differ, and blocks the target lacks. */
export function changedBlocks(source: string[], target: string[]): number[] {
  const out: number[] = [];
  for (let i = 0; i < source.length; i++) if (source[i] !== target[i]) out.push(i);
  return out;
}

/**
 * What a copy of the image holds, block by block, as the side that sends to it knows it: the
 * digest of each block and, for blocks it sent itself or knows to be zero, the digest of each
 * sub-block — so a block that changed again is sent as just its changed sub-blocks (the final
 * delta of a migration: a few 4 KiB journal and superblock writes, not whole 1 MiB blocks).
 */
export interface HeldBlocks {
  digests: string[];
  subs: Map<number, string[]>;
}

function subDigests(data: Buffer, subSize: number): string[] {
  const out: string[] = [];
  for (let off = 0; off < data.length; off += subSize) out.push(createHash('sha256').update(data.subarray(off, off + subSize)).digest('hex'));
  return out;
}

/**
 * The given blocks of `file` as frames of `subSize` bytes (index in sub-block units), leaving out
 * the sub-blocks `held` knows the copy already has; `held` is updated to what the copy holds
 * once they are written. `blockSize` must be a multiple of `subSize`.
 */
export async function* changedSubBlocks(file: string, indexes: Iterable<number>, held: HeldBlocks, blockSize: number, subSize: number): AsyncGenerator<{ index: number; data: Buffer }> {
  if (blockSize % subSize !== 0) throw new RangeError(`block size ${blockSize} is not a multiple of the sub-block size ${subSize}`);
  const per = blockSize / subSize;
  for await (const b of readBlocks(file, indexes, blockSize)) {
    const mine = subDigests(b.data, subSize);
    const zero = held.digests[b.index] === zeroBlockDigest(b.data.length);
    const theirs = held.subs.get(b.index) ?? (zero ? mine.map((_, j) => zeroBlockDigest(Math.min(subSize, b.data.length - j * subSize))) : undefined);
    // Recorded from the data sent (the block may change between digest and read while the VE runs).
    held.digests[b.index] = createHash('sha256').update(b.data).digest('hex');
    held.subs.set(b.index, mine);
    for (let j = 0; j < mine.length; j++) {
      if (theirs?.[j] === mine[j]) continue;
      yield { index: b.index * per + j, data: b.data.subarray(j * subSize, (j + 1) * subSize) };
    }
  }
}

/** The given blocks of `file` in order; each `data` is a fresh buffer (the last block may be shorter). */
export async function* readBlocks(file: string, indexes: Iterable<number>, blockSize = DEFAULT_BLOCK_SIZE): AsyncGenerator<{ index: number; data: Buffer }> {
  const fh = await open(file, 'r');
  try {
    const size = (await fh.stat()).size;
    for (const index of indexes) {
      const off = index * blockSize;
      if (off >= size) throw new RangeError(`block ${index} is beyond the end of ${file} (${size} bytes)`);
      const len = Math.min(blockSize, size - off);
      const data = Buffer.allocUnsafe(len); // filled by the read, or zeroed below
      const { bytesRead } = await fh.read(data, 0, len, off);
      if (bytesRead < len) data.fill(0, bytesRead);
      yield { index, data };
    }
  } finally {
    await fh.close();
  }
}

/** Writes `data` as block `index` (offset index × blockSize) into an open handle or a file path (which must exist). */
export async function writeBlock(target: string | FileHandle, index: number, data: Buffer, blockSize = DEFAULT_BLOCK_SIZE): Promise<void> {
  if (data.length > blockSize) throw new RangeError(`block ${index} has ${data.length} bytes, more than the block size ${blockSize}`);
  const fh = typeof target === 'string' ? await open(target, 'r+') : target;
  try {
    let done = 0;
    while (done < data.length) {
      const { bytesWritten } = await fh.write(data, done, data.length - done, index * blockSize + done);
      done += bytesWritten;
    }
  } finally {
    if (typeof target === 'string') await fh.close();
  }
}

/** Regular files under `dir`, relative paths, sorted. */
async function filesUnder(dir: string, root = dir): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await filesUnder(p, root)));
    else if (e.isFile()) out.push(relative(root, p));
  }
  return out.sort();
}

/** sha256 (hex) over a directory's files: each relative name, length and content, in name order. */
export async function dirDigest(dir: string): Promise<string> {
  const h = createHash('sha256');
  for (const name of await filesUnder(dir)) {
    const fh = await open(join(dir, name), 'r');
    try {
      const size = (await fh.stat()).size;
      h.update(`${name}\0${size}\0`);
      const buf = Buffer.alloc(DEFAULT_BLOCK_SIZE);
      for (let off = 0; off < size; ) {
        const { bytesRead } = await fh.read(buf, 0, buf.length, off);
        if (bytesRead === 0) break;
        h.update(buf.subarray(0, bytesRead));
        off += bytesRead;
      }
    } finally {
      await fh.close();
    }
  }
  return h.digest('hex');
}
