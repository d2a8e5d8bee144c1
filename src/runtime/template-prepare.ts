// kubevz's preparation of a template tree (PLATFORM-NOTES "Template hygiene", "Full
// distributions", "Checkpointing full distributions"): detect the init, make it behave as a
// VE's PID 1 (sysvinit: no gettys, SIGPWR shuts down, no umountroot; systemd: checkpointable —
// ProtectHostname=no, masked hugepages/fuse mounts, /etc/localtime a regular file), and clear
// what must not be shared by every VE (hostname, machine-id, resolver, apt lists and .debs).

import { copyFile, lstat, mkdir, readFile, readdir, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { KvzError } from '../core/errors.js';
import { initProfile, type InitFlavor, type InitProfile, type TemplateRecipe } from './template-recipe.js';

async function lstatOrUndefined(p: string) {
  return lstat(p).catch(() => undefined);
}

/**
 * Resolves a path inside a tree as the tree's own root would (absolute symlinks are relative
 * to the tree, never the host). Returns the host path, or undefined if it does not exist.
 */
export async function resolveInTree(root: string, path: string): Promise<string | undefined> {
  let parts = path.split('/').filter(Boolean);
  const done: string[] = [];
  for (let hops = 0; parts.length > 0; ) {
    const part = parts.shift()!;
    if (part === '.') continue;
    if (part === '..') {
      done.pop();
      continue;
    }
    const host = join(root, ...done, part);
    const st = await lstatOrUndefined(host);
    if (!st) return undefined;
    if (st.isSymbolicLink()) {
      if (++hops > 40) return undefined;
      const target = await readlink(host);
      if (target.startsWith('/')) done.length = 0;
      parts = [...target.split('/').filter(Boolean), ...parts];
      continue;
    }
    done.push(part);
  }
  return join(root, ...done);
}

/** Which init /sbin/init (or the recipe's command) is. */
export async function detectInit(root: string, command = '/sbin/init'): Promise<InitFlavor | undefined> {
  const resolved = await resolveInTree(root, command);
  if (!resolved) return undefined;
  const rel = posix.normalize(`/${resolved.slice(root.length)}`);
  if (/\/systemd$/.test(rel)) return 'systemd';
  if (/busybox$/.test(rel)) return 'other'; // busybox's own init applet: SIGTERM means reboot to it
  const head = (await readFile(resolved).catch(() => Buffer.alloc(0))).subarray(0, 4096).toString('latin1');
  if (head.startsWith('#!') && head.includes('kubevz busybox init')) return 'busybox';
  if (head.startsWith('\x7fELF') && (await lstatOrUndefined(join(root, 'etc/inittab')))) return 'sysvinit';
  return 'other';
}

async function writeText(p: string, content: string): Promise<void> {
  await mkdir(join(p, '..'), { recursive: true });
  await rm(p, { force: true });
  await writeFile(p, content);
}

/** /etc/inittab for a VE: gettys off (no ttys), SIGPWR → powerwait → halt. */
export function vzInittab(text: string): string {
  const lines = text.split('\n').map((l) => (/^[^#:]*:[^:]*:respawn:.*getty/.test(l) ? `#${l}  # kubevz: a VE has no ttys` : l));
  const pw = 'pf::powerwait:/sbin/shutdown -t1 -a -h now';
  const i = lines.findIndex((l) => /^[^#:]*::powerwait:/.test(l));
  if (i >= 0) lines[i] = pw;
  else lines.splice(lines.length - (lines.at(-1) === '' ? 1 : 0), 0, pw);
  return lines.join('\n');
}

async function prepareSysvinit(root: string): Promise<void> {
  const inittab = join(root, 'etc/inittab');
  const text = await readFile(inittab, 'utf8').catch(() => undefined);
  if (text !== undefined) await writeFile(inittab, vzInittab(text));
  // umountroot remounts / read-only on the way down: with a shared overlay lower it would
  // remount the VE's root mount — and through it the host's view — read-only.
  for (const rc of ['rc0.d', 'rc6.d']) {
    const dir = join(root, 'etc', rc);
    for (const f of await readdir(dir).catch(() => [] as string[])) {
      if (/umountroot$/.test(f)) await rm(join(dir, f), { force: true });
    }
  }
}

export const SYSTEMD_MASKED = ['dev-hugepages.mount', 'sys-fs-fuse-connections.mount'];

async function prepareSystemd(root: string): Promise<void> {
  const sys = join(root, 'etc/systemd/system');
  // Services with ProtectHostname=yes (logind, localed, timedated, hostnamed) create nested
  // uts namespaces that CRIU cannot dump; a top-level drop-in covers every service.
  await writeText(join(sys, 'service.d', '10-kubevz-checkpoint.conf'), '# kubevz: nested uts namespaces cannot be checkpointed\n[Service]\nProtectHostname=no\n');
  for (const unit of SYSTEMD_MASKED) {
    await rm(join(sys, unit), { force: true, recursive: true });
    await symlink('/dev/null', join(sys, unit));
  }
  // PID 1 watches the /etc/localtime symlink with fsnotify, which CRIU cannot dump on overlay.
  const lt = join(root, 'etc/localtime');
  const st = await lstatOrUndefined(lt);
  if (st?.isSymbolicLink()) {
    const target = await resolveInTree(root, '/etc/localtime');
    await rm(lt);
    if (target) await copyFile(target, lt);
  }
}

async function clearDir(dir: string, keep: (name: string) => boolean): Promise<void> {
  for (const f of await readdir(dir).catch(() => [] as string[])) {
    if (!keep(f)) await rm(join(dir, f), { recursive: true, force: true });
  }
}

/** What every VE must have of its own, and caches nobody needs: cleared from the shared tree. */
export async function cleanTree(root: string): Promise<void> {
  const etc = join(root, 'etc');
  if (await lstatOrUndefined(etc)) {
    // debootstrap copies the host's /etc/hostname, and systemd prefers it to the OCI hostname;
    // the runtime writes each VE's own.
    await writeText(join(etc, 'hostname'), 'localhost\n');
    const resolv = await lstatOrUndefined(join(etc, 'resolv.conf'));
    if (resolv && !resolv.isSymbolicLink()) await writeText(join(etc, 'resolv.conf'), '');
    // An empty machine-id makes systemd generate one per VE at boot.
    if (await lstatOrUndefined(join(etc, 'machine-id'))) await writeText(join(etc, 'machine-id'), '');
  }
  const dbusId = join(root, 'var/lib/dbus/machine-id');
  if ((await lstatOrUndefined(dbusId))?.isFile()) await rm(dbusId);
  await clearDir(join(root, 'var/lib/apt/lists'), (f) => f === 'partial' || f === 'lock');
  await clearDir(join(root, 'var/cache/apt/archives'), (f) => !f.endsWith('.deb'));
  await clearDir(join(root, 'var/cache/apt'), (f) => !f.endsWith('.bin'));
}

/** Detects the init and prepares the tree for it; returns the profile VEs of this template boot with. */
export async function prepareTree(root: string, recipe: TemplateRecipe): Promise<InitProfile> {
  const command = recipe.init?.command?.[0] ?? '/sbin/init';
  const wanted = recipe.init?.flavor && recipe.init.flavor !== 'auto' ? recipe.init.flavor : undefined;
  const flavor = wanted ?? (await detectInit(root, command));
  if (!flavor) {
    throw new KvzError(
      'Invalid',
      `the template tree has no ${command}: a VE needs an init. Add one (spec.debootstrap.include: systemd-sysv or sysvinit-core), or set spec.init.command`,
    );
  }
  if (flavor === 'sysvinit') await prepareSysvinit(root);
  if (flavor === 'systemd') await prepareSystemd(root);
  return initProfile(flavor, recipe.init);
}
