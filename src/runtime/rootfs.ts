// A VE's root filesystem: an overlay whose lower layer is the shared, read-only template tree
// and whose upper/work live in the VE's own directory. (A later issue moves upper/work into a
// per-VE ext4 image on a loop device; only this file changes then.)

import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { run } from './command.js';

export interface RootfsPaths {
  /** Where the VE's root is mounted (the bundle's root.path). */
  target: string;
  upper: string;
  work: string;
}

export function rootfsPaths(veDir: string): RootfsPaths {
  return { target: join(veDir, 'rootfs'), upper: join(veDir, 'upper'), work: join(veDir, 'work') };
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

/** Mounts the overlay if it is not mounted yet; returns whether it mounted. */
export async function mountRootfs(lower: string, p: RootfsPaths, signal?: AbortSignal): Promise<boolean> {
  if (await isMounted(p.target)) return false;
  await Promise.all([mkdir(p.target, { recursive: true }), mkdir(p.upper, { recursive: true }), mkdir(p.work, { recursive: true })]);
  await run('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${lower},upperdir=${p.upper},workdir=${p.work}`, p.target], { signal });
  return true;
}

/** Unmounts (every stacked mount at the target); not mounted is fine. */
export async function unmountRootfs(p: RootfsPaths, signal?: AbortSignal): Promise<void> {
  while (await isMounted(p.target)) {
    await run('umount', [p.target], { signal });
  }
}

/** Removes the VE's writable layer (upper/work) and mount point. Must be unmounted. */
export async function removeRootfs(p: RootfsPaths): Promise<void> {
  await Promise.all([rm(p.upper, { recursive: true, force: true }), rm(p.work, { recursive: true, force: true }), rm(p.target, { recursive: true, force: true })]);
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
