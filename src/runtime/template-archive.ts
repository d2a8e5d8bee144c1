// Tar archives of template trees: importing a root filesystem tarball (.tar, .tar.gz, .tar.xz,
// .tar.zst — recognised by their magic bytes, not the name) and packing a built tree into the
// cache's tar.zst. Ownership, modes, xattrs (file capabilities) and ACLs are kept as numbers.

import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import { isAbsolute } from 'node:path';
import { fileURLToPath } from 'node:url';
import { KvzError } from '../core/errors.js';
import { run } from './command.js';

export type Compression = 'none' | 'gzip' | 'xz' | 'zstd' | 'bzip2';

export function compressionFromMagic(head: Buffer): Compression {
  if (head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (head.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))) return 'xz';
  if (head.readUInt32LE(0) === 0xfd2fb528) return 'zstd';
  if (head.subarray(0, 3).toString('latin1') === 'BZh') return 'bzip2';
  return 'none';
}

/** A local path from an absolute path or a file:// URL; anything else is refused with what to do. */
export function tarballPath(url: string): string {
  if (url.startsWith('file:')) return fileURLToPath(url);
  if (isAbsolute(url)) return url;
  throw new KvzError('Invalid', `spec.tarball.url ${JSON.stringify(url)}: give an absolute path or a file:// URL of a file on the node (download it first)`);
}

export async function detectCompression(path: string): Promise<Compression> {
  const fh = await open(path, 'r').catch((err: NodeJS.ErrnoException) => {
    throw new KvzError('Invalid', `template tarball ${path} cannot be read (${err.code}): copy it to that path on the node`, { cause: err });
  });
  try {
    const head = Buffer.alloc(8);
    await fh.read(head, 0, 8, 0);
    return compressionFromMagic(head);
  } finally {
    await fh.close();
  }
}

const TAR_FLAG: Record<Compression, string[]> = { none: [], gzip: ['--gzip'], xz: ['--xz'], zstd: ['--zstd'], bzip2: ['--bzip2'] };

export async function sha256Stream(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

/** Unpacks a root filesystem tarball into `dir` (which exists and is empty). */
export async function extractTarball(path: string, dir: string, signal?: AbortSignal): Promise<void> {
  const comp = await detectCompression(path);
  try {
    await run('tar', ['--extract', '--file', path, ...TAR_FLAG[comp], '--directory', dir, '--numeric-owner', '--preserve-permissions', '--same-owner', '--xattrs', "--xattrs-include=*", '--acls'], { signal });
  } catch (err) {
    throw new KvzError('CommandFailed', `cannot unpack template tarball ${path} (${comp}): ${(err as Error).message}; is it a root filesystem archive (.tar, .tar.gz, .tar.xz, .tar.zst)?`, { cause: err });
  }
}

/** Packs `dir`'s contents into `file` (tar.zst, multi-threaded); returns the packed size. */
export async function packTree(dir: string, file: string, signal?: AbortSignal): Promise<number> {
  await run('tar', ['--create', '--file', file, '--use-compress-program', 'zstd -T0 -3 -q', '--directory', dir, '--numeric-owner', '--xattrs', "--xattrs-include=*", '--acls', '--sort=name', '.'], { signal });
  return (await stat(file)).size;
}

/** Disk usage of a tree in bytes (du, hard links counted once). */
export async function treeBytes(dir: string, signal?: AbortSignal): Promise<number> {
  const { stdout } = await run('du', ['-s', '-B1', '-x', dir], { signal });
  return Number(stdout.split(/\s/)[0] ?? 0);
}
