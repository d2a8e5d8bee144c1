// The binary framing of the migration data channel. Both bodies are streams of frames, read and
// written a frame at a time, so neither side ever holds a whole disk or image set in memory.
//
//   disk/blocks:  u64 index | u32 length | data[length]           (data at index × the request's unit)
//   checkpoint:   u16 nameLength | name (utf8) | u64 size | data    (one CRIU image file)
//
// Integers are big-endian.

import { KvzError } from '../core/errors.js';

/** Disk blocks are compared in 1 MiB units (ADR 004): digests are per block of this size. */
export const BLOCK_SIZE = 1 << 20;

/**
 * Disk blocks move in frames of this size (the `unit` of a disk/blocks request; a frame's index
 * counts these): of a block that changed again only the changed sub-blocks go (changedSubBlocks).
 */
export const SUB_BLOCK_SIZE = 64 << 10;

/** The frame units a receiver accepts: powers of two from 4 KiB to BLOCK_SIZE. */
export function checkBlockUnit(unit: number): number {
  if (!Number.isInteger(unit) || unit < 4096 || unit > BLOCK_SIZE || (unit & (unit - 1)) !== 0) {
    throw new KvzError('Invalid', `disk block unit ${unit} is not a power of two from 4096 to ${BLOCK_SIZE}`);
  }
  return unit;
}

/** The largest block frame a receiver accepts (a corrupt length must not make it allocate gigabytes). */
const MAX_BLOCK_FRAME = 16 << 20;

export function blockFrameHeader(index: number, length: number): Buffer {
  const h = Buffer.alloc(12);
  h.writeBigUInt64BE(BigInt(index), 0);
  h.writeUInt32BE(length, 8);
  return h;
}

export function fileFrameHeader(name: string, size: number): Buffer {
  const n = Buffer.from(name, 'utf8');
  const h = Buffer.alloc(2 + n.length + 8);
  h.writeUInt16BE(n.length, 0);
  n.copy(h, 2);
  h.writeBigUInt64BE(BigInt(size), 2 + n.length);
  return h;
}

/**
 * Exact-length reads over a stream of chunks (an HTTP request body). Chunks are kept as they come
 * and joined once per read: a 1 MiB block arrives in dozens of socket reads, and joining at every
 * read copied it over and over.
 */
export class ByteReader {
  private readonly it: AsyncIterator<Buffer | string>;
  private parts: Buffer[] = [];
  private length = 0;
  private ended = false;

  constructor(source: AsyncIterable<Buffer | string>) {
    this.it = source[Symbol.asyncIterator]();
  }

  private async fill(): Promise<boolean> {
    if (this.ended) return false;
    const r = await this.it.next();
    if (r.done) {
      this.ended = true;
      return false;
    }
    const chunk = typeof r.value === 'string' ? Buffer.from(r.value) : r.value;
    this.parts.push(chunk);
    this.length += chunk.length;
    return true;
  }

  /** Takes `n` (≤ length) buffered bytes. */
  private take(n: number): Buffer {
    const first = this.parts[0]!;
    let out: Buffer;
    if (first.length >= n) {
      out = first.subarray(0, n);
    } else {
      const joined = Buffer.concat(this.parts, this.length);
      this.parts = [joined];
      out = joined.subarray(0, n);
    }
    const rest = this.parts[0]!.subarray(n);
    if (rest.length) this.parts[0] = rest;
    else this.parts.shift();
    this.length -= n;
    return out;
  }

  /** Whether the stream ended exactly here (a clean end between frames). */
  async atEnd(): Promise<boolean> {
    while (this.length === 0) if (!(await this.fill())) return true;
    return false;
  }

  async exact(n: number): Promise<Buffer> {
    while (this.length < n) {
      if (!(await this.fill())) throw new KvzError('Invalid', `the stream ended inside a frame (${this.length} of ${n} bytes); the sender must resend`);
    }
    return n === 0 ? Buffer.alloc(0) : this.take(n);
  }

  /** Up to `n` bytes as they arrive (for large file frames). */
  async *chunks(n: number): AsyncGenerator<Buffer> {
    let left = n;
    while (left > 0) {
      if (this.length === 0 && !(await this.fill())) throw new KvzError('Invalid', `the stream ended inside a file frame (${left} bytes missing); the sender must resend`);
      const out = this.take(Math.min(left, this.parts[0]!.length));
      left -= out.length;
      yield out;
    }
  }
}

export async function* readBlockFrames(r: ByteReader, unit = BLOCK_SIZE): AsyncGenerator<{ index: number; data: Buffer }> {
  const max = Math.min(unit, MAX_BLOCK_FRAME);
  while (!(await r.atEnd())) {
    const h = await r.exact(12);
    const index = Number(h.readBigUInt64BE(0));
    const length = h.readUInt32BE(8);
    if (length > max) throw new KvzError('Invalid', `block frame of ${length} bytes exceeds the unit of ${max}`);
    // No copy: socket chunks are never written to again, so a view into them stays valid.
    yield { index, data: await r.exact(length) };
  }
}

/** A file frame's name must be a plain file name: the sender never chooses where the receiver writes. */
export function checkImageName(name: string): void {
  if (!name || name === '.' || name === '..' || name.includes('/') || name.includes('\0')) {
    throw new KvzError('Invalid', `refusing image file name ${JSON.stringify(name)}: only plain file names are accepted`);
  }
}

export async function* readFileFrames(r: ByteReader): AsyncGenerator<{ name: string; size: number; data: AsyncGenerator<Buffer> }> {
  while (!(await r.atEnd())) {
    const len = (await r.exact(2)).readUInt16BE(0);
    const name = (await r.exact(len)).toString('utf8');
    checkImageName(name);
    const size = Number((await r.exact(8)).readBigUInt64BE(0));
    const data = r.chunks(size);
    yield { name, size, data };
    // The consumer must have drained the data; drain what it left so the next frame lines up.
    for await (const _ of data) { /* skip */ }
  }
}
