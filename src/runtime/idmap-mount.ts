// The user-namespace plumbing runc 1.1.5 cannot do, through our small C helper kvz-idmap
// (src/runtime/native/kvz-idmap.c, compiled by hack/setup.sh): an idmapped bind mount of the
// unshifted template tree (the VE's overlay lower), and the VE's user namespace kept by a bind
// mount (runc joins it on create).

import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { KvzError } from '../core/errors.js';
import { run } from './command.js';
import type { IdRange, NodeFeature } from './types.js';
import { readFileSync } from 'node:fs';

/** dist/native/kvz-idmap next to the compiled sources (dist/src/runtime → dist/native). */
export const DEFAULT_IDMAP_HELPER = fileURLToPath(new URL('../../native/kvz-idmap', import.meta.url));

export function helperMissingMessage(helper: string): string {
  return `the user-namespace helper ${helper} is missing: run hack/setup.sh (it compiles src/runtime/native/kvz-idmap.c with gcc), or run the VE privileged with spec.security.userNamespace: false`;
}

/** Kernel release "6.18.44-..." → [6, 18]. */
export function kernelVersion(release: string): [number, number] {
  const m = /^(\d+)\.(\d+)/.exec(release);
  return m ? [Number(m[1]), Number(m[2])] : [0, 0];
}

/**
 * Whether this node can give VEs user namespaces: the helper, user namespaces enabled, and a
 * kernel ≥ 5.19 (overlayfs over an idmapped lower layer).
 */
export function usernsFeature(helper: string): NodeFeature {
  const release = readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim();
  const [major, minor] = kernelVersion(release);
  if (major < 5 || (major === 5 && minor < 19)) return { available: false, reason: `kernel ${release} is older than 5.19 (overlayfs over an idmapped lower layer)` };
  const max = Number(readFileSync('/proc/sys/user/max_user_namespaces', 'utf8').trim());
  if (!(max > 0)) return { available: false, reason: 'user namespaces are disabled (/proc/sys/user/max_user_namespaces is 0)' };
  if (!existsSync(helper)) return { available: false, reason: helperMissingMessage(helper) };
  return { available: true, reason: `kernel ${release}, idmapped mounts via ${helper}` };
}

function requireHelper(helper: string): void {
  if (!existsSync(helper)) throw new KvzError('Unavailable', helperMissingMessage(helper));
}

/**
 * Mounts `src` at `dst` with on-disk id N shown as range.hostId + N. `dst` must be an unmounted
 * directory. With `usernsFile` the mapping's user namespace is also kept there (a bind mount on a
 * file created empty here; an ordinary mount to unmount): the VE joins it.
 */
export async function mountIdmapped(helper: string, src: string, dst: string, range: IdRange, signal?: AbortSignal, usernsFile?: string): Promise<void> {
  requireHelper(helper);
  await mkdir(dst, { recursive: true });
  if (usernsFile) await writeFile(usernsFile, '', { flag: 'a' });
  await run(helper, ['mount', src, dst, String(range.hostId), String(range.size), ...(usernsFile ? [usernsFile] : [])], { signal });
}

/** A user namespace mapping 0 → range, kept by a bind mount on `usernsFile` (created empty here). */
export async function createUsernsPin(helper: string, usernsFile: string, range: IdRange, signal?: AbortSignal): Promise<void> {
  requireHelper(helper);
  await mkdir(dirname(usernsFile), { recursive: true });
  await writeFile(usernsFile, '', { flag: 'a' });
  await run(helper, ['userns', usernsFile, String(range.hostId), String(range.size)], { signal });
}
