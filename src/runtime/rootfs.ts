// A VE's root filesystem: an overlay whose lower layer is the shared, read-only template tree
// and whose upper/work live in the VE's own ext4 image (disk-image.ts), loop-mounted in its
// state dir. Nothing of the template is copied; the image's size and inodes are the VE's limits.

import { chown, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../core/logger.js';
import type { Revert } from '../core/revert.js';
import { resetCloneIdentity } from './clone.js';
import { run } from './command.js';
import {
  DEFAULT_DISK_BYTES,
  createImage,
  diskPaths,
  growOffline,
  growOnline,
  isImageMounted,
  mountImage,
  readDiskRecord,
  recoverDiskRecord,
  removeImage,
  roundToBlock,
  unmountImage,
  type DiskPaths,
  type DiskRecord,
} from './disk-image.js';
import type { VEDiskConfig } from './types.js';

export interface RootfsPaths {
  /** Where the VE's root is mounted (the bundle's root.path). */
  target: string;
  upper: string;
  work: string;
  disk: DiskPaths;
}

export function rootfsPaths(veDir: string): RootfsPaths {
  const disk = diskPaths(veDir);
  return { target: join(veDir, 'rootfs'), upper: disk.upper, work: disk.work, disk };
}

/** Mount points from a mountinfo text (octal escapes such as \040 decoded). */
export function parseMountPoints(mountinfo: string): string[] {
  return mountinfo
    .split('\n')
    .filter(Boolean)
    .map((line) => (line.split(' ')[4] ?? '').replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))));
}

export async function mountPoints(): Promise<string[]> {
  return parseMountPoints(await readFile('/proc/self/mountinfo', 'utf8'));
}

export async function isMounted(path: string): Promise<boolean> {
  return (await mountPoints()).includes(path);
}

/** Mounts under a directory (the directory itself included). */
export async function mountsUnder(dir: string): Promise<string[]> {
  const prefix = dir.endsWith('/') ? dir : `${dir}/`;
  return (await mountPoints()).filter((m) => m === dir || m.startsWith(prefix));
}

/** Mounts the overlay if it is not mounted yet; returns whether it mounted. The disk must be mounted. */
export async function mountRootfs(lower: string, p: RootfsPaths, signal?: AbortSignal): Promise<boolean> {
  if (await isMounted(p.target)) return false;
  await Promise.all([mkdir(p.target, { recursive: true }), mkdir(p.upper, { recursive: true }), mkdir(p.work, { recursive: true })]);
  await run('mount', ['-t', 'overlay', 'overlay', '-o', overlayOptions(lower, p), p.target], { signal });
  return true;
}

/**
 * The root fs overlay's options. xino=on: every file reports the overlay's st_dev (and a unique
 * st_ino), which is what inotify watches name; without it CRIU cannot resolve systemd's watch on
 * /etc/localtime (ADR 004).
 */
function overlayOptions(lower: string, p: RootfsPaths): string {
  return `lowerdir=${lower},upperdir=${p.upper},workdir=${p.work},xino=on`;
}

/**
 * The disk image and the overlay on it in one command, for a restore waiting on both (a spawn from
 * the agent costs 10-20 ms, the mounts themselves well under 1 ms). Neither may be mounted yet;
 * the disk is unmounted again when the overlay fails.
 */
export async function mountDiskAndRootfs(lower: string, p: RootfsPaths, signal?: AbortSignal): Promise<void> {
  await Promise.all([mkdir(p.target, { recursive: true }), mkdir(p.disk.mount, { recursive: true })]);
  const script = [
    'mount -t ext4 -o loop "$1" "$2" || exit 1',
    '{ [ -d "$3" ] && [ -d "$4" ] || mkdir -p "$3" "$4"; } && mount -t overlay overlay -o "$5" "$6" && exit 0',
    'umount "$2"; exit 1',
  ].join('\n');
  await run('sh', ['-c', script, 'kvz-mount-rootfs', p.disk.image, p.disk.mount, p.upper, p.work, overlayOptions(lower, p), p.target], { signal });
}

/** Unmounts (every stacked mount at the target); not mounted is fine. */
export async function unmountRootfs(p: Pick<RootfsPaths, 'target'>, signal?: AbortSignal): Promise<void> {
  while (await isMounted(p.target)) {
    await run('umount', [p.target], { signal });
  }
}

/** Removes the VE's disk (image, loop devices) and mount point. Mounts under the VE dir must be gone. */
export async function removeRootfs(p: RootfsPaths, signal?: AbortSignal): Promise<void> {
  await unmountImage(p.disk, signal);
  await removeImage(p.disk);
  await rm(p.target, { recursive: true, force: true });
}

export type DiskOutcome = 'created' | 'cloned' | 'grown' | 'unchanged';

export interface EnsureRootfsOptions {
  lower: string;
  paths: RootfsPaths;
  disk: VEDiskConfig | undefined;
  /** Copies the clone source's image into paths.disk.image (only called when the VE has no image yet). */
  clone?: () => Promise<void>;
  /** Whether resize2fs may grow a mounted image (CAP_SYS_RESOURCE). */
  canGrowOnline: boolean;
  /** Host uid/gid of the VE's root (user namespace): owns the upper's root, set before the overlay caches it. */
  rootOwner?: number;
  revert: Revert;
  log: Logger;
  signal?: AbortSignal;
}

/**
 * The VE's root, ready for a container that is NOT running: image made (or cloned), grown to
 * the asked size (offline is fine here: nothing uses it), mounted, overlay on top. Idempotent;
 * every step that changed the host pushes its undo.
 */
export async function ensureRootfs(o: EnsureRootfsOptions): Promise<{ disk: DiskOutcome; record: DiskRecord }> {
  const { paths, revert, signal } = o;
  const d = paths.disk;
  const want = roundToBlock(o.disk?.sizeBytes ?? DEFAULT_DISK_BYTES);
  let outcome: DiskOutcome = 'unchanged';
  let rec = await readDiskRecord(d);
  if (!existsSync(d.image)) {
    revert.add('remove disk image', () => removeImage(d));
    if (o.disk?.cloneFrom && o.clone) {
      await o.clone();
      outcome = 'cloned';
      rec = await readDiskRecord(d);
    } else {
      rec = await createImage(d, { sizeBytes: want, inodes: o.disk?.inodes, signal });
      outcome = 'created';
    }
  }
  rec ??= await recoverDiskRecord(d);
  if (want > rec.sizeBytes) {
    if (o.canGrowOnline && (await isImageMounted(d))) {
      rec = await growOnline(d, want, signal);
    } else {
      await unmountRootfs(paths, signal);
      await unmountImage(d, signal);
      rec = await growOffline(d, want, signal);
    }
    o.log.info({ sizeBytes: rec.sizeBytes, inodes: rec.inodes }, 'VE disk grown');
    if (outcome === 'unchanged') outcome = 'grown';
  }
  if ((await mountImage(d, { signal, fresh: outcome === 'created' || outcome === 'cloned' })) === 'mounted') revert.add('unmount disk', () => unmountImage(d));
  if (outcome === 'cloned') {
    await mkdir(paths.upper, { recursive: true });
    await resetCloneIdentity(paths.upper);
  }
  if (o.rootOwner !== undefined && !(await isMounted(paths.target))) {
    await mkdir(paths.upper, { recursive: true });
    await chown(paths.upper, o.rootOwner, o.rootOwner);
  }
  if (await mountRootfs(o.lower, paths, signal)) revert.add('unmount rootfs', () => unmountRootfs(paths));
  return { disk: outcome, record: rec };
}

/** For a running VE: grows the disk online when it is asked bigger and the node can; otherwise leaves it (pending). */
export async function growRunning(paths: RootfsPaths, disk: VEDiskConfig | undefined, canGrowOnline: boolean, signal?: AbortSignal): Promise<DiskRecord | undefined> {
  const rec = await readDiskRecord(paths.disk);
  const want = roundToBlock(disk?.sizeBytes ?? DEFAULT_DISK_BYTES);
  if (!rec || want <= rec.sizeBytes || !canGrowOnline || !(await isImageMounted(paths.disk))) return undefined;
  return growOnline(paths.disk, want, signal);
}

/** Files the VE gets of its own on top of the template (identity), written into the upper layer. */
export async function writeIdentity(p: RootfsPaths, hostname: string, addresses: string[]): Promise<void> {
  const etc = join(p.target, 'etc');
  await mkdir(etc, { recursive: true });
  const short = hostname.split('.')[0] ?? hostname;
  const names = short === hostname ? hostname : `${hostname} ${short}`;
  const lines = ['127.0.0.1\tlocalhost', '::1\tlocalhost ip6-localhost ip6-loopback'];
  for (const a of addresses) lines.push(`${a.split('/')[0]}\t${names}`);
  if (addresses.length === 0) lines.push(`127.0.1.1\t${names}`);
  await writeFile(join(etc, 'hostname'), `${hostname}\n`);
  await writeFile(join(etc, 'hosts'), `${lines.join('\n')}\n`);
}
