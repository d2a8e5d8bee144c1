// Cloning a VE's disk: a consistent copy of the source's image (its overlay upper layer) for a
// new VE. A running source is frozen (runc pause: cgroup freezer) and its filesystem frozen
// (fsfreeze: dirty data flushed, journal committed) only for the copy, which is sparse-aware
// (and a reflink where the state dir's filesystem can), so the pause lasts milliseconds for a
// mostly-empty image. The source keeps running; the copy's own identity is written afterwards.

import { rename, rm, truncate, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { KvzError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { run } from './command.js';
import { isImageMounted, readDiskRecord, writeDiskRecord, type DiskPaths } from './disk-image.js';
import type { Runc } from './runc.js';

export interface CloneOptions {
  src: DiskPaths;
  /** The source's runc container id (paused while its image is copied, if running). */
  srcContainer: string;
  dst: DiskPaths;
  runc: Runc;
  log: Logger;
  signal?: AbortSignal;
}

export interface CloneResult {
  /** How long the source was frozen (0 when it was not running). */
  frozenMs: number;
  totalMs: number;
}

/** Copies the source's image to dst.image (via a temporary name, so a crash leaves no half copy). */
export async function cloneImage(o: CloneOptions): Promise<CloneResult> {
  const t0 = performance.now();
  const rec = await readDiskRecord(o.src);
  if (!rec || !existsSync(o.src.image)) {
    throw new KvzError('NotFound', `the clone source has no disk image on this node (${o.src.image}); clone from a VE that has been created here`);
  }
  const tmp = `${o.dst.image}.tmp`;
  await rm(tmp, { force: true });
  const st = await o.runc.state(o.srcContainer, o.signal);
  const pause = st?.status === 'running';
  const mounted = await isImageMounted(o.src);
  let frozenAt = 0;
  let paused = false;
  let fsFrozen = false;
  try {
    if (pause) {
      await o.runc.pause(o.srcContainer, o.signal);
      paused = true;
    }
    frozenAt = performance.now();
    if (mounted) {
      await run('fsfreeze', ['--freeze', o.src.mount], { signal: o.signal });
      fsFrozen = true;
    }
    await run('cp', ['--sparse=always', '--reflink=auto', o.src.image, tmp], { signal: o.signal });
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  } finally {
    // Thaw whatever happened above, without the caller's signal: an abort must not leave the source frozen.
    if (fsFrozen) await run('fsfreeze', ['--unfreeze', o.src.mount]).catch((err: unknown) => o.log.error({ err }, 'could not unfreeze the clone source filesystem'));
    if (paused) await o.runc.resume(o.srcContainer).catch((err: unknown) => o.log.error({ err }, 'could not resume the clone source'));
  }
  const frozenMs = pause || mounted ? Math.round(performance.now() - frozenAt) : 0;
  await rename(tmp, o.dst.image);
  await writeDiskRecord(o.dst, rec);
  return { frozenMs, totalMs: Math.round(performance.now() - t0) };
}

/**
 * Host-wide identity the copy must not share with its source, reset in the clone's upper layer
 * (hostname and /etc/hosts are rewritten at every start anyway). An empty machine-id makes
 * systemd generate a new one at first boot.
 */
export async function resetCloneIdentity(upper: string): Promise<void> {
  for (const f of ['etc/machine-id', 'var/lib/dbus/machine-id']) {
    const p = join(upper, f);
    if (existsSync(p)) await truncate(p, 0).catch(() => writeFile(p, ''));
  }
}
