// How one VE is isolated on this node, decided once and recorded (ves/<uid>/security.json):
// its own user namespace with a host id range (default), or privileged mode (asked for, a
// fallback the spec allowed, or a VE created before user namespaces). Drives the pieces the
// runtime wires in: the userns-owned netns, the idmapped template lower, the upper layer's
// ownership, exclusive device grants.

import { existsSync } from 'node:fs';
import { chmod, chown, lchown, lstat, readdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { KvzError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { Revert } from '../core/revert.js';
import { run } from './command.js';
import { DeviceGrants, type ResolvedDevice } from './devices.js';
import { createUsernsPin, mountIdmapped, usernsFeature } from './idmap-mount.js';
import { addNetns, attachNetns } from './netns.js';
import { isMounted } from './rootfs.js';
import type { IdRange, NodeFeature, VEConfig, VESecurityState } from './types.js';
import { UsernsAllocator, fmt } from './userns.js';

const RECORD = 'security.json';

export interface IsolationOptions {
  vesDir: string;
  /** The kvz-idmap binary. */
  helper: string;
  log: Logger;
}

/** The VE's user-namespace pin and idmapped lower, inside its state dir (removed with it). */
export function usernsPin(veDir: string): string {
  return join(veDir, 'userns');
}
export function idmappedLower(veDir: string): string {
  return join(veDir, 'lower');
}

export class Isolation {
  readonly allocator: UsernsAllocator;
  readonly grants: DeviceGrants;
  private featureCache: NodeFeature | undefined;

  constructor(private readonly opts: IsolationOptions) {
    this.allocator = new UsernsAllocator({ vesDir: opts.vesDir });
    this.grants = new DeviceGrants(opts.vesDir);
  }

  feature(): NodeFeature {
    this.featureCache ??= usernsFeature(this.opts.helper);
    return this.featureCache;
  }

  private veDir(uid: string): string {
    return join(this.opts.vesDir, uid);
  }

  async state(uid: string): Promise<VESecurityState | undefined> {
    try {
      return JSON.parse(await readFile(join(this.veDir(uid), RECORD), 'utf8')) as VESecurityState;
    } catch {
      return undefined;
    }
  }

  /** Refuses a config whose user-namespace mode or kept range contradicts the VE's record. */
  async check(config: VEConfig): Promise<void> {
    const rec = await this.state(config.uid);
    if (!rec) return;
    const want = config.security?.userNamespace ?? true;
    const fallback = rec.privileged && rec.reason !== undefined;
    if (want !== rec.userNamespace && !(want && fallback)) {
      throw new KvzError('Invalid', `spec.security.userNamespace is ${want} but VE ${config.name} was created ${rec.userNamespace ? 'with a user namespace' : 'privileged'}; the mode is fixed for a VE's lifetime (its files' owners depend on it): recreate the VE to change it`);
    }
    const keep = config.security?.uidRange;
    if (keep && rec.uidRange && (keep.hostId !== rec.uidRange.hostId || keep.size !== rec.uidRange.size)) {
      throw new KvzError('Invalid', `spec.security.uidRange ${fmt(keep)} differs from VE ${config.name}'s range ${fmt(rec.uidRange)} on this node; ids are fixed for a VE's lifetime`);
    }
  }

  /**
   * The VE's isolation: its record, else decided now and recorded. `existed`: the VE had state
   * from before (a VE made before user namespaces has host-owned files: it stays privileged).
   * The VE directory must exist.
   */
  async resolve(config: VEConfig, existed: boolean, log: Logger): Promise<VESecurityState> {
    const want = config.security?.userNamespace ?? true;
    const rec = await this.state(config.uid);
    if (rec) {
      await this.check(config);
      if (rec.userNamespace) await this.allocator.ensure(config.uid, config.security?.uidRange);
      return rec;
    }
    let state: VESecurityState;
    if (existed && !config.disk?.cloneFrom && existsSync(join(this.veDir(config.uid), 'config.json'))) {
      state = { userNamespace: false, privileged: true, reason: 'created before kubevz gave VEs user namespaces; recreate the VE to get one' };
    } else if (!want) {
      state = { userNamespace: false, privileged: true };
    } else {
      const f = this.feature();
      if (!f.available) {
        if (!config.security?.allowPrivilegedFallback) {
          throw new KvzError('Unavailable', `VE ${config.name} needs a user namespace, which this node cannot give: ${f.reason}. Fix the node, or set spec.security.userNamespace: false (privileged) or spec.security.allowPrivilegedFallback: true`);
        }
        state = { userNamespace: false, privileged: true, reason: `user namespace unavailable, privileged fallback allowed by spec: ${f.reason}` };
        log.warn({ reason: f.reason }, 'VE runs privileged: user namespace unavailable (fallback allowed by its spec)');
      } else {
        const { range } = await this.allocator.ensure(config.uid, config.security?.uidRange);
        await ensureSearchable(dirname(this.opts.vesDir), this.veDir(config.uid));
        state = { userNamespace: true, privileged: false, uidRange: range };
        log.info({ uidRange: fmt(range) }, 'VE host id range allocated');
      }
    }
    const file = join(this.veDir(config.uid), RECORD);
    await writeFile(`${file}.tmp`, `${JSON.stringify(state)}\n`);
    await rename(`${file}.tmp`, file);
    return state;
  }

  claimDevices(config: VEConfig): Promise<ResolvedDevice[]> {
    return this.grants.claim(config.uid, config.name, config.devices ?? []);
  }

  /**
   * The VE's netns at /run/netns/<ns>. Privileged: a plain one the agent makes. With a user
   * namespace the netns must be one runc (create) or CRIU (restore) made inside it — CRIU cannot
   * put restored tasks into a netns owned by a user namespace it did not make — so it is only
   * pinned here, from the VE's first task `pid`.
   */
  async addNetns(uid: string, ns: string, signal?: AbortSignal, pid?: number): Promise<void> {
    if (pid !== undefined) return attachNetns(ns, pid, signal);
    const sec = await this.state(uid);
    if (sec?.uidRange) throw new KvzError('Internal', `VE ${uid} has a user namespace: its netns is made by runc or CRIU and pinned from its pid, not made by the agent`);
    return addNetns(ns, signal);
  }

  /** The VE's user namespace pinned in its dir (runc joins it on create), made once with the VE's range. */
  async ensureUsernsPin(uid: string, revert: Revert, signal?: AbortSignal): Promise<string> {
    const sec = await this.state(uid);
    const pin = usernsPin(this.veDir(uid));
    if (!sec?.uidRange) throw new KvzError('Internal', `VE ${uid} has no user namespace to pin`);
    if (await isMounted(pin)) return pin;
    revert.add('unmount user namespace pin', () => unmountAll(pin));
    await createUsernsPin(this.opts.helper, pin, sec.uidRange, signal);
    return pin;
  }

  /**
   * After a restore the VE lives in a user namespace CRIU made (same range): the pin follows it,
   * so the old one is freed and later boots join the VE's current one.
   */
  async repinUserns(uid: string, pid: number, signal?: AbortSignal): Promise<void> {
    const pin = usernsPin(this.veDir(uid));
    await unmountAll(pin, signal);
    await writeFile(pin, '', { flag: 'a' });
    await run('mount', ['--bind', `/proc/${pid}/ns/user`, pin], { signal });
  }

  /**
   * The overlay's lower: the template itself (privileged), or its idmapped mount in the VE's dir.
   * `pin`: a boot that joins the VE's pinned user namespace; when neither is mounted yet one
   * helper run makes both (ensureUsernsPin finds the pin then).
   */
  async lower(template: string, uid: string, sec: VESecurityState, revert: Revert, signal?: AbortSignal, opts: { pin?: boolean } = {}): Promise<string> {
    if (!sec.uidRange) return template;
    const dst = idmappedLower(this.veDir(uid));
    if (!(await isMounted(dst))) {
      const pin = opts.pin ? usernsPin(this.veDir(uid)) : undefined;
      const pinToo = pin !== undefined && !(await isMounted(pin));
      if (pinToo) revert.add('unmount user namespace pin', () => unmountAll(pin));
      await mountIdmapped(this.opts.helper, template, dst, sec.uidRange, signal, pinToo ? pin : undefined);
      revert.add('unmount idmapped lower', () => run('umount', [dst]).then(() => undefined));
    }
    return dst;
  }

  /**
   * Host-written files of the VE's upper layer owned by its root: the upper's root directory (the
   * VE's `/`) and `paths` relative to the mounted root (identity files the agent writes).
   */
  async ownUpper(upper: string, target: string, sec: VESecurityState, paths: string[]): Promise<void> {
    const r = sec.uidRange;
    if (!r) return;
    await chown(upper, r.hostId, r.hostId);
    for (const p of paths) {
      const full = join(target, p);
      const st = await lstat(full).catch(() => undefined);
      if (st && st.uid < r.hostId) await chown(full, r.hostId + (st.uid < r.size ? st.uid : 0), r.hostId + (st.gid < r.size ? st.gid : 0));
    }
  }

  /** After a clone: shift the copied upper layer from the source VE's range to this VE's. */
  async shiftClone(upper: string, sourceUid: string, sec: VESecurityState): Promise<number> {
    const from = (await this.state(sourceUid))?.uidRange ?? { hostId: 0, size: 65_536 };
    const to: IdRange = sec.uidRange ?? { hostId: 0, size: 65_536 };
    if (from.hostId === to.hostId) return 0;
    return shiftTree(upper, from, to);
  }
}

async function unmountAll(path: string, signal?: AbortSignal): Promise<void> {
  while (await isMounted(path)) await run('umount', [path], { signal });
}

/**
 * runc mounts the VE's root from inside its user namespace: the mapped root must be able to
 * search every directory down to it. The agent's own dirs get o+x (search, not list); a parent
 * above the state dir that lacks it is an error naming it.
 */
export async function ensureSearchable(stateDir: string, veDir: string): Promise<void> {
  for (let d = veDir; ; d = dirname(d)) {
    const st = await stat(d);
    if (!(st.mode & 0o001)) {
      if (d === stateDir || d.startsWith(`${stateDir}/`)) await chmod(d, (st.mode & 0o7777) | 0o001);
      else throw new KvzError('Invalid', `${d} is not searchable by others (mode ${(st.mode & 0o777).toString(8)}): a VE's mapped root must reach its root under ${veDir}; chmod o+x ${d} or move the state dir`);
    }
    if (d === '/' || d === dirname(d)) return;
  }
}

/** lchown every inode under `dir` (dir included) from range `from` to `to`; ids outside `from` stay. */
export async function shiftTree(dir: string, from: IdRange, to: IdRange): Promise<number> {
  const map = (id: number) => (id >= from.hostId && id < from.hostId + Math.min(from.size, to.size) ? to.hostId + (id - from.hostId) : id);
  let n = 0;
  const seen = new Set<number>();
  const walk = async (p: string): Promise<void> => {
    const st = await lstat(p);
    if (!seen.has(st.ino)) {
      seen.add(st.ino);
      const uid = map(st.uid), gid = map(st.gid);
      if (uid !== st.uid || gid !== st.gid) {
        // chown clears set-id bits of regular files: restore the mode (file capabilities are not kept).
        await lchown(p, uid, gid);
        if (st.isFile() && st.mode & 0o6000) await chmod(p, st.mode & 0o7777);
        n++;
      }
    }
    if (st.isDirectory()) for (const e of await readdir(p)) await walk(join(p, e));
  };
  await walk(dir);
  return n;
}
