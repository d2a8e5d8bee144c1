// CRIU checkpoints of a VE through runc: the node feature (CRIU ≥ 4.2 present), the per-VE CRIU
// config file runc is pointed at by the bundle annotation `org.criu.config` (never the host-wide
// /etc/criu/runc.conf), image directories (0700, root only), CRIU log tails for errors, the
// suspend checkpoints kept in a VE's state dir, and the unsolicited ARP that announces a
// restored VE's addresses from its netns.

import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { accessSync, constants, existsSync, statSync, statfsSync } from 'node:fs';
import { chmod, chown, copyFile, mkdir, readdir, readFile, readlink, rename, rm, rmdir, stat, statfs, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join, resolve } from 'node:path';
import { KvzError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { run } from './command.js';
import { mountsUnder } from './rootfs.js';
import type { InitFlavor } from './template-recipe.js';
import type { NodeFeature } from './types.js';

/** Where hack/setup.sh installs the CRIU kubevz needs (distributions ship older ones). */
export const CRIU_PATH = '/usr/local/sbin/criu';
export const MIN_CRIU: readonly [number, number] = [4, 2];

/** The CRIU binary: /usr/local/sbin/criu, else the first `criu` on PATH. */
export function findCriu(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const candidates = [CRIU_PATH, ...(env.PATH ?? '').split(delimiter).filter(Boolean).map((d) => join(d, 'criu'))];
  for (const c of candidates) {
    try {
      accessSync(c, constants.X_OK);
      return c;
    } catch {
      // next
    }
  }
  return undefined;
}

/** "Version: 4.2.1" (criu --version) → [4, 2, 1]. */
export function parseCriuVersion(text: string): number[] | undefined {
  const m = /Version:\s*(\d+)\.(\d+)(?:\.(\d+))?/.exec(text);
  if (!m) return undefined;
  return [Number(m[1]), Number(m[2]), Number(m[3] ?? 0)];
}

export function versionAtLeast(v: number[], min: readonly number[]): boolean {
  for (let i = 0; i < min.length; i++) {
    const a = v[i] ?? 0;
    const b = min[i] ?? 0;
    if (a !== b) return a > b;
  }
  return true;
}

/** Whether this node can checkpoint VEs: a CRIU new enough for this kernel. */
export function checkpointFeature(criu = findCriu()): NodeFeature {
  if (!criu) return { available: false, reason: `CRIU is not installed (looked at ${CRIU_PATH} and PATH): run hack/setup.sh, which builds CRIU ${MIN_CRIU.join('.')}+` };
  const res = spawnSync(criu, ['--version'], { encoding: 'utf8', timeout: 5_000 });
  const v = parseCriuVersion(`${res.stdout ?? ''}${res.stderr ?? ''}`);
  if (!v) return { available: false, reason: `${criu} --version did not report a version (${(res.error?.message ?? res.stderr ?? '').trim() || `exit ${res.status}`})` };
  if (!versionAtLeast(v, MIN_CRIU)) {
    return { available: false, reason: `${criu} is CRIU ${v.join('.')}; this kernel needs ${MIN_CRIU.join('.')} or newer (older ones fail on the vDSO and on TCP sockets): run hack/setup.sh` };
  }
  return { available: true, reason: `CRIU ${v.join('.')} at ${criu}` };
}

// ---- CRIU's kernel probe cache ----

/** Where CRIU (built with the default run dir) keeps what it probed of the kernel. */
export const KERNDAT_CACHE = '/run/criu.kdat';
const TMPFS_MAGIC = 0x01021994;
const CGROUP2_MAGIC = 0x63677270;

/**
 * Every CRIU run first probes the kernel (kerndat: ~50 ms, three iptables spawns among it) unless
 * it finds KERNDAT_CACHE, which it writes only when /run is a tmpfs (a cache must not outlive a
 * boot). On hosts whose /run is on disk every restore paid that on its downtime. There kubevz has
 * CRIU write the cache in a private mount namespace with a tmpfs over /run, installs it, and
 * writes it again when it predates the boot; teardownNode removes it. Never fails: without the
 * cache CRIU just probes.
 */
export function ensureKerndatCache(criu: string, log: Logger): Promise<void> {
  const path = KERNDAT_CACHE;
  kerndatOnce ??= writeKerndatCache(criu, path).then(
    (what) => log.debug({ path, what }, 'CRIU kernel probe cache'),
    (err: unknown) => log.warn({ path, err: (err as Error).message }, 'could not prepare the CRIU kernel probe cache; every CRIU run probes the kernel'),
  );
  return kerndatOnce;
}
let kerndatOnce: Promise<void> | undefined;

async function writeKerndatCache(criu: string, path: string): Promise<'criu keeps it' | 'current' | 'written'> {
  const dir = dirname(path);
  if ((await statfs(dir)).type === TMPFS_MAGIC) return 'criu keeps it';
  const mark = await stat(path).catch(() => undefined);
  if (mark && mark.mtimeMs > (await bootTimeMs())) return 'current';
  const tmp = `${path}.kvz-${process.pid}`;
  // The private namespace's /run hides the host's: CRIU writes there, the copy goes to a host path outside /run first.
  const out = join(tmpdir(), `kvz-kdat-${process.pid}`);
  try {
    await run('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', `mount -t tmpfs kvz-kdat ${dir} && { "$1" check >/dev/null 2>&1; cp ${path} "$2"; }`, 'kvz-kdat', criu, out], { timeoutMs: 30_000 });
    await copyFile(out, tmp);
    await chmod(tmp, 0o600);
    await rename(tmp, path);
    return 'written';
  } finally {
    await Promise.all([rm(out, { force: true }), rm(tmp, { force: true })]);
  }
}

/** Removes the cache ensureKerndatCache installed (on a tmpfs /run it is CRIU's own and stays). */
export async function removeKerndatCache(): Promise<void> {
  const path = KERNDAT_CACHE;
  if ((await statfs(dirname(path)).catch(() => undefined))?.type === TMPFS_MAGIC) return;
  await rm(path, { force: true });
  kerndatOnce = undefined;
}

async function bootTimeMs(): Promise<number> {
  const m = /^btime (\d+)$/m.exec(await readFile('/proc/stat', 'utf8'));
  return m ? Number(m[1]) * 1000 : Date.now();
}

/**
 * A failed checkpoint or restore. The contract calls it 'CheckpointFailed'; until core's ErrorCode
 * has that code it is 'CommandFailed' with details.reason = 'CheckpointFailed'.
 */
export function checkpointError(message: string, details: Record<string, unknown> = {}, code: 'CommandFailed' | 'Unavailable' = 'CommandFailed', cause?: unknown): KvzError {
  return new KvzError(code, message, { cause, details: { reason: 'CheckpointFailed', ...details } });
}

/**
 * A VE with a user namespace started before kubevz let runc make its netns (its bundle joins an
 * agent-made netns by path) would dump with that netns as external, and such images cannot be
 * restored into a new user namespace: refuse before the dump, while it still runs.
 */
export async function checkpointableBundle(bundleConfig: string, name: string): Promise<void> {
  const spec = JSON.parse(await readFile(bundleConfig, 'utf8').catch(() => '{}')) as { linux?: { namespaces?: { type: string; path?: string }[] } };
  const ns = spec.linux?.namespaces ?? [];
  if (ns.some((n) => n.type === 'user') && ns.some((n) => n.type === 'network' && n.path)) {
    throw checkpointError(
      `VE ${name} was started with a network namespace made before its user namespace could be checkpointed; it keeps running. Restart it once (stop, then start) and checkpoint it then`,
      { refused: true },
      'Unavailable',
    );
  }
}

// ---- per-VE CRIU config ----

export function criuConfigPath(veDir: string): string {
  return join(veDir, 'criu.conf');
}

/** What criuConfigText needs to know of the VE beyond its init. */
export interface CriuConfigOptions {
  actionScript?: string;
  /**
   * The VE's network is shut by kubevz itself while CRIU works: its host link goes down at the
   * dump's freeze (DumpMarks) and stays down on a restore until CRIU's network-unlock
   * (NetworkUnlock). CRIU's own lock (iptables-restore spawned in the netns at the freeze, and
   * twice more on a restore) then only adds downtime: `network-lock skip`.
   */
  ownNetworkLock?: boolean;
  /** runc's masked directories that exist here (maskedDirs), and the empty dir to bind over them on a restore. */
  masks?: { dirs: string[]; source: string };
  /** A v1 host's cgroup tmpfs made by runc, dumped as an external mount and bound from this dir on a restore (CgroupfsLayout). */
  cgroupfs?: string;
  /** The bundle's tmpfs mounts that kubevz archives and remounts itself (CarriedTmpfs). */
  tmpfs?: CarriedTmpfs;
}

/** The external-mount key of masked directories in a VE's images (criuConfigText). */
export const MASK_KEY = 'kvz-mask';

/**
 * CRIU options a VE needs. systemd watches files through inotify on the overlay: CRIU must
 * resolve those handles by scanning (force-irmap), limited to where they are. The action script
 * (criuActionScript) marks the freeze of a dump and hands a user-namespace VE's netns over on
 * restore. runc masks directories such as /proc/acpi with an empty read-only tmpfs each, which
 * CRIU would archive (tar | gzip) on every dump and unpack on every restore, on the downtime: they
 * are dumped as external mounts instead, and a restore binds an empty directory of the VE there.
 * Both `external` forms are in the one file (runc reads it for dumps and restores alike): a dump
 * reads `mnt[<mountpoint>]:<key>`, a restore `mnt[<key>]:<host dir>`; each ignores the other's.
 */
export function criuConfigText(flavor: InitFlavor, o: CriuConfigOptions = {}): string {
  const lines = ['# kubevz: CRIU options for this VE (runc reads this file through the org.criu.config annotation)'];
  if (flavor === 'systemd') lines.push('force-irmap', 'irmap-scan-path /etc', 'irmap-scan-path /usr/share/dbus-1');
  if (o.actionScript) lines.push(`action-script ${o.actionScript}`);
  if (o.ownNetworkLock) lines.push('network-lock skip');
  if (o.masks?.dirs.length) lines.push(...o.masks.dirs.map((d) => `external mnt[${d}]:${MASK_KEY}`), `external mnt[${MASK_KEY}]:${o.masks.source}`);
  if (o.cgroupfs) lines.push(`external mnt[/sys/fs/cgroup]:${CGROUPFS_KEY}`, `external mnt[${CGROUPFS_KEY}]:${o.cgroupfs}`);
  for (const m of o.tmpfs?.mounts ?? []) lines.push(`external mnt[${m.destination}]:${CarriedTmpfs.key(m)}`, `external mnt[${CarriedTmpfs.key(m)}]:${o.tmpfs!.hostDir(m)}`);
  return `${lines.join('\n')}\n`;
}

/** One tmpfs of a VE's bundle (its destination and mount options), as CarriedTmpfs keeps it. */
export interface TmpfsMount {
  destination: string;
  options: string[];
}

/**
 * The tmpfs mounts runc makes for a VE (/dev, /dev/shm, /run) hold the VE's data, and CRIU moved
 * each with a `tar | gzip` of its own on the dump and an unpack on the restore: ~18 ms each way
 * per mount on the downtime here. kubevz carries them itself: they are external mounts in the
 * VE's CRIU config; at the dump's freeze (network-lock) the action script starts a plain `tar` of
 * each from the frozen VE into the image dir, beside CRIU's own dump, and post-dump waits for them
 * and fails the dump (the VE runs on) if one failed. Before a restore one command mounts a tmpfs
 * per archive in the VE's directory, with the options the images list, and unpacks it there,
 * charged to the VE's memory cgroup; CRIU binds those into the restored VE, and the host's mounts
 * are dropped after (the VE's binds keep the file systems). What differs from runc's: after a
 * restore they are mounted from the host's mount namespace, so a VE with a user namespace cannot
 * remount them (size, mode). Not tried: a VE that stacks a mount of its own on one of these mount
 * points (CRIU would take both for the external one; a failed restore rolls a migration back).
 * Not for systemd VEs (CRIU keeps archiving theirs): not yet measured with systemd's own mounts.
 */
export class CarriedTmpfs {
  /** The list in the VE's dir, written with its CRIU config at every boot and restore. */
  static readonly LIST = 'criu-tmpfs.json';

  constructor(readonly veDir: string, readonly mounts: readonly TmpfsMount[]) {}

  /** The bundle's tmpfs mounts, from its mounts (by type). */
  static fromSpec(veDir: string, mounts: ReadonlyArray<{ destination: string; type: string; options?: string[] }>): CarriedTmpfs {
    return new CarriedTmpfs(veDir, mounts.filter((m) => m.type === 'tmpfs').map((m) => ({ destination: m.destination, options: [...(m.options ?? [])] })));
  }

  /**
   * The list kept in `dir`: a VE's dir (its bundle's) or an image dir (the dumped VE's, from
   * another node: a mount point must be a plain absolute path, its host dir stays in the VE's).
   */
  static async read(dir: string): Promise<CarriedTmpfs> {
    const text = await readFile(join(dir, CarriedTmpfs.LIST), 'utf8').catch(() => undefined);
    const mounts = text ? (JSON.parse(text) as TmpfsMount[]) : [];
    for (const m of mounts) {
      if (typeof m.destination !== 'string' || !/^(\/[^/\0\s]+)+$/.test(m.destination) || m.destination.split('/').some((c) => c === '.' || c === '..') || !Array.isArray(m.options)) {
        throw new KvzError('Invalid', `bad tmpfs entry ${JSON.stringify(m)} in ${join(dir, CarriedTmpfs.LIST)}`);
      }
    }
    return new CarriedTmpfs(dir, mounts);
  }

  async write(): Promise<void> {
    await writeFile(join(this.veDir, `${CarriedTmpfs.LIST}.tmp`), `${JSON.stringify(this.mounts)}\n`);
    await rename(join(this.veDir, `${CarriedTmpfs.LIST}.tmp`), join(this.veDir, CarriedTmpfs.LIST));
  }

  /** `/dev/shm` → `dev-shm`: its archive's and host dir's name. */
  static slug(m: TmpfsMount): string {
    return m.destination.replace(/^\/+/, '').replace(/\//g, '-');
  }

  static key(m: TmpfsMount): string {
    return `kvz-tmpfs-${CarriedTmpfs.slug(m)}`;
  }

  static archive(imageDir: string, m: TmpfsMount): string {
    return join(imageDir, `${CarriedTmpfs.key(m)}.tar`);
  }

  get root(): string {
    return join(this.veDir, 'criu-tmpfs');
  }

  hostDir(m: TmpfsMount): string {
    return join(this.root, CarriedTmpfs.slug(m));
  }

  /** Which images the host's mounts were filled from. */
  private static stamp(veDir: string): string {
    return join(new CarriedTmpfs(veDir, []).root, '.images');
  }

  /** What the action script reads at the freeze (DumpMarks.arm): the VE's init, where to write, and the mount points. */
  request(pid: number, imageDir: string): string {
    return [String(pid), imageDir, ...this.mounts.map((m) => `${m.destination} ${CarriedTmpfs.key(m)}.tar`)].join('\n') + '\n';
  }

  /** The list beside the archives (dump, before the freeze): a restore mounts what the images say, ahead of its own bundle. */
  async save(imageDir: string): Promise<void> {
    if (this.mounts.length) await writeFile(join(imageDir, CarriedTmpfs.LIST), `${JSON.stringify(this.mounts)}\n`, { mode: 0o600 });
  }

  /**
   * Before `runc restore` (or ahead of it, once a migration's images are verified): a tmpfs per
   * archive in the images, mounted under the VE's dir `veDir` with the options the images list and
   * filled, in one command whose shell joins `memoryProcs` first (the pages are the VE's). Done
   * already for these images: nothing. Images without archives (a dump by an older kubevz, whose
   * CRIU restores those mounts itself) mount nothing. A failure unmounts what it mounted.
   */
  static async mount(veDir: string, imageDir: string, o: { memoryProcs?: string; signal?: AbortSignal } = {}): Promise<void> {
    const carried = new CarriedTmpfs(veDir, (await CarriedTmpfs.read(imageDir)).mounts);
    const wanted = carried.mounts.filter((m) => existsSync(CarriedTmpfs.archive(imageDir, m)));
    const stamp = CarriedTmpfs.stamp(veDir);
    const mounted = await mountsUnder(carried.root);
    if ((await readFile(stamp, 'utf8').catch(() => '')) === imageDir && wanted.every((m) => mounted.includes(carried.hostDir(m)))) return;
    await CarriedTmpfs.unmount(veDir);
    if (!wanted.length) return;
    // Exactly the dumped options: CRIU bind-remounts with the dumped flags, and a VE with a user
    // namespace may not clear one (nodev, say) that the host's mount has and its own lacked.
    const args = wanted.flatMap((m) => [carried.hostDir(m), m.options.join(','), CarriedTmpfs.archive(imageDir, m)]);
    // The directories here (a spawn less each); the mounts side by side, each with its unpack.
    await Promise.all([...wanted.map((m) => mkdir(carried.hostDir(m), { recursive: true })), o.memoryProcs ? mkdir(dirname(o.memoryProcs), { recursive: true }) : undefined]);
    const script = [
      'procs=$1; shift',
      'if [ -n "$procs" ]; then echo $$ > "$procs" || exit 1; fi',
      'pids=',
      'while [ $# -gt 0 ]; do',
      '  { mount -t tmpfs -o "$2" kvz-tmpfs "$1" && tar -C "$1" --numeric-owner -xpf "$3"; } &',
      '  pids="$pids $!"',
      '  shift 3',
      'done',
      'rc=0',
      'for p in $pids; do wait "$p" || rc=1; done',
      'exit $rc',
    ].join('\n');
    try {
      await run('sh', ['-c', script, 'kvz-tmpfs', o.memoryProcs ?? '', ...args], { signal: o.signal });
      await writeFile(stamp, imageDir);
    } catch (err) {
      await CarriedTmpfs.unmount(veDir);
      throw err;
    }
  }

  /** Drops the host's mounts when they are those mounted from `imageDir` (a later restore's stay). */
  static async release(veDir: string, imageDir: string): Promise<void> {
    if ((await readFile(CarriedTmpfs.stamp(veDir), 'utf8').catch(() => '')) === imageDir) await CarriedTmpfs.unmount(veDir);
  }

  /** Drops the host's mounts (lazily: a restored VE's binds keep the file systems); none is fine. */
  static async unmount(veDir: string): Promise<void> {
    const root = new CarriedTmpfs(veDir, []).root;
    await rm(CarriedTmpfs.stamp(veDir), { force: true });
    const mounted = (await mountsUnder(root)).reverse();
    if (mounted.length) await run('umount', ['-l', ...mounted]);
  }
}

/** The external-mount key of a VE's /sys/fs/cgroup tmpfs (v1 hosts) in its images. */
export const CGROUPFS_KEY = 'kvz-cgroupfs';

/**
 * On a cgroup v1 host runc gives a VE a tmpfs at /sys/fs/cgroup holding only the mount points of
 * the controllers (and symlinks such as cpu -> cpu,cpuacct), which CRIU would archive with tar |
 * gzip on the dump and unpack on the restore, both in the downtime (~17 ms each here). Its content
 * is runc's, not the VE's: it is dumped as an external mount, its layout saved beside the images
 * before the freeze, and a restore binds a host directory rebuilt from that layout (the controllers
 * are mounted on it by CRIU as before). Not for systemd VEs: systemd and its tools recognise a
 * legacy hierarchy by the tmpfs at /sys/fs/cgroup (statfs), which a bind of a host directory is not.
 */
export class CgroupfsLayout {
  static readonly FILE = 'kvz-cgroupfs.json';

  /** `dir`: where restores bind from (the VE's own, root-only: nothing else sees it). */
  constructor(readonly dir: string) {}

  /**
   * Saves the layout of the VE's /sys/fs/cgroup (init `pid`) into the image dir: runc's tmpfs, or
   * after a restore the bind of a rebuilt directory. Nothing on a v2 host (a cgroup2 mount).
   */
  static async save(pid: number, imageDir: string): Promise<void> {
    const root = `/proc/${pid}/root/sys/fs/cgroup`;
    const type = (await statfs(root).catch(() => undefined))?.type;
    if (type === undefined || type === CGROUP2_MAGIC) return;
    const entries: Array<{ name: string; mode: number; link?: string }> = [];
    for (const e of await readdir(root, { withFileTypes: true })) {
      if (e.isSymbolicLink()) entries.push({ name: e.name, mode: 0o777, link: await readlink(join(root, e.name)) });
      else if (e.isDirectory()) entries.push({ name: e.name, mode: (await stat(join(root, e.name))).mode & 0o7777 });
    }
    const mode = (await stat(root)).mode & 0o7777;
    await writeFile(join(imageDir, CgroupfsLayout.FILE), `${JSON.stringify({ mode, entries })}\n`, { mode: 0o600 });
  }

  /** Rebuilds the directory from the images' layout (before `runc restore`); none saved → an empty one. */
  async rebuild(imageDir: string): Promise<void> {
    const saved = await readFile(join(imageDir, CgroupfsLayout.FILE), 'utf8').catch(() => undefined);
    const layout = saved ? (JSON.parse(saved) as { mode: number; entries: Array<{ name: string; mode: number; link?: string }> }) : { mode: 0o755, entries: [] };
    await rm(this.dir, { recursive: true, force: true });
    await mkdir(this.dir, { mode: 0o700 });
    await Promise.all(layout.entries.map((e) => {
      // Names come from the images: never a path out of the directory.
      if (!e.name || e.name.includes('/') || e.name === '.' || e.name === '..') throw new KvzError('Invalid', `bad cgroupfs entry ${JSON.stringify(e.name)} in ${imageDir}`);
      const p = join(this.dir, e.name);
      return e.link !== undefined ? symlink(e.link, p) : mkdir(p).then(() => chmod(p, e.mode));
    }));
    await chmod(this.dir, layout.mode);
  }
}

/** The directories among runc's masked paths on this host (a VE's /proc and /sys show the same kinds). */
export function maskedDirs(maskedPaths: readonly string[]): string[] {
  const key = maskedPaths.join('\0');
  let dirs = maskedDirsSeen.get(key);
  if (!dirs) {
    dirs = maskedPaths.filter((p) => {
      try {
        return statSync(p).isDirectory();
      } catch {
        return false;
      }
    });
    maskedDirsSeen.set(key, dirs);
  }
  return [...dirs];
}

/** The host's /proc and /sys do not change kinds while it runs: looked at once per process. */
const maskedDirsSeen = new Map<string, string[]>();

export function criuActionScriptPath(veDir: string): string {
  return join(veDir, 'criu-action.sh');
}

/**
 * The VE's CRIU config and action script (criuActionScript), both rewritten at every boot and
 * restore; with masks, the empty, root-only directory bound over them after a restore (the VE's
 * own: a privileged VE that writes into it reaches nothing else).
 */
export async function writeCriuConfig(veDir: string, flavor: InitFlavor, o: { handoffDir: string; ownNetworkLock: boolean; maskedPaths: readonly string[]; cgroupfs?: CgroupfsLayout; tmpfs?: CarriedTmpfs }): Promise<string> {
  const path = criuConfigPath(veDir);
  const actionScript = criuActionScriptPath(veDir);
  const source = join(veDir, 'criu-mask');
  await mkdir(source, { recursive: true, mode: 0o555 });
  await writeFile(`${actionScript}.tmp`, criuActionScript(o.handoffDir), { mode: 0o700 });
  await rename(`${actionScript}.tmp`, actionScript);
  await (o.tmpfs ?? new CarriedTmpfs(veDir, [])).write();
  await writeFile(`${path}.tmp`, criuConfigText(flavor, { actionScript, ownNetworkLock: o.ownNetworkLock, masks: { dirs: maskedDirs(o.maskedPaths), source }, cgroupfs: o.cgroupfs?.dir, tmpfs: o.tmpfs }));
  await rename(`${path}.tmp`, path);
  return path;
}

/**
 * The action script of one VE (host /bin/sh, run by CRIU for every action), talking to the agent
 * through files in the VE's handoff dir `dir`:
 *  * `pre-dump` (a dump, before CRIU freezes the VE): when the agent named the VE's freezer in
 *    `freeze-cgroup`, the script freezes it and waits for it by looking again at once: CRIU looks
 *    every 100 ms, and a freeze seldom ends before its first look, so the VE stood frozen ~100 ms
 *    before CRIU even began. CRIU then finds it frozen and only seizes it. The freeze time for the
 *    downtime is the mtime of `frozen` (DumpMarks), made just before the freeze.
 *  * `network-lock` (a dump; CRIU has frozen and seized the VE): `frozen`, unless pre-dump made it,
 *    and the VE's host link taken off the LAN when the agent named it in `dump-link` — at the
 *    freeze, not before CRIU's start-up, so clients wait only for the frozen part. A link that does
 *    not go down fails the dump (the VE keeps running).
 *  * `setup-namespaces` (a restore of a VE with a user namespace): NetnsHandoff.
 *  * `network-unlock` (a restore: every socket is back, still in repair mode; the tasks resume
 *    next): NetworkUnlock.
 */
export function criuActionScript(dir: string): string {
  const q = `'${dir.replace(/'/g, `'\\''`)}'`;
  const ticks = NetnsHandoff.TIMEOUT_S * 100;
  return `#!/bin/sh
# kubevz: CRIU action script of one VE (see criuActionScript in src/runtime/checkpoint.ts).
d=${q}
[ -d "$d" ] || exit 0
case "$CRTOOLS_SCRIPT_ACTION" in
pre-dump)
  [ -s "$d/freeze-cgroup" ] || exit 0
  { read -r v; read -r cg; read -r bound; } < "$d/freeze-cgroup"
  : > "$d/frozen"
  if [ "$v" = v1 ]; then echo FROZEN > "$cg/freezer.state"; else echo 1 > "$cg/cgroup.freeze"; fi || exit 1
  # A freeze takes well under a millisecond: look again at once (builtins only), then every 10 ms.
  i=0
  while :; do
    if [ "$v" = v1 ]; then
      read -r s < "$cg/freezer.state" && [ "$s" = FROZEN ] && break
    else
      s=; while read -r k n; do [ "$k" = frozen ] && s=$n; done < "$cg/cgroup.events"; [ "$s" = 1 ] && break
    fi
    i=$((i + 1))
    [ $i -le 1000 ] && continue
    if [ $i -gt $((1000 + bound)) ]; then
      # Never frozen in time: thawed again, and the dump fails with the VE running.
      if [ "$v" = v1 ]; then echo THAWED > "$cg/freezer.state"; else echo 0 > "$cg/cgroup.freeze"; fi
      exit 1
    fi
    sleep 0.01
  done
  ;;
network-lock)
  [ -e "$d/frozen" ] || : > "$d/frozen"
  if [ -s "$d/dump-link" ]; then
    read -r link < "$d/dump-link"
    PATH=/usr/local/sbin:/usr/sbin:/sbin:$PATH ip link set dev "$link" down || exit 1
  fi
  if [ -s "$d/tmpfs-archive" ]; then
    # In the background, beside CRIU's own dump; post-dump waits for it (the VE stays frozen until then).
    { read -r pid; read -r dir; } < "$d/tmpfs-archive"
    (
      tail -n +3 "$d/tmpfs-archive" | {
        while read -r dest file; do
          tar -C "/proc/$pid/root$dest" --one-file-system --numeric-owner --sparse -cf "$dir/$file" . 2>> "$d/tmpfs-archive.err" || : > "$d/tmpfs-archive.failed" &
        done
        wait
      }
      : > "$d/tmpfs-archive.done"
    ) < /dev/null > /dev/null 2>&1 &
  fi
  ;;
network-unlock)
  if [ -s "$d/unlock-link" ]; then
    read -r link master < "$d/unlock-link"
    PATH=/usr/local/sbin:/usr/sbin:/sbin:$PATH ip link set dev "$link" \${master:+master "$master"} up && : > "$d/unlock-done"
  fi
  ;;
post-dump)
  # The dump is complete and the VE still frozen; CRIU ends its processes next — or, when this
  # fails, lets them run on and fails the dump: so only the tmpfs archives may fail it, before the
  # disk is frozen.
  if [ -s "$d/tmpfs-archive" ]; then
    i=0
    while [ ! -e "$d/tmpfs-archive.done" ]; do
      if [ $i -ge ${ticks} ]; then echo "archiving took over ${NetnsHandoff.TIMEOUT_S} s" >> "$d/tmpfs-archive.err"; : > "$d/tmpfs-archive.failed"; break; fi
      i=$((i + 1))
      sleep 0.01
    done
    [ ! -e "$d/tmpfs-archive.failed" ] || exit 1
  fi
  if [ -s "$d/freeze-disk" ]; then
    { read -r mnt; read -r img; } < "$d/freeze-disk"
    PATH=/usr/local/sbin:/usr/sbin:/sbin:$PATH
    fsfreeze --freeze "$mnt" && : > "$d/disk-frozen" && filefrag -e "$img" > "$d/disk-extents" 2>/dev/null && : > "$d/disk-extents-done"
  fi
  exit 0
  ;;
setup-namespaces)
  [ -e "$d/netns.wanted" ] || exit 0
  echo "$CRTOOLS_INIT_PID" > "$d/netns.pid.tmp" && mv "$d/netns.pid.tmp" "$d/netns.pid" || exit 1
  i=0
  while [ ! -e "$d/netns.done" ]; do
    if [ -e "$d/netns.failed" ] || [ $i -ge ${ticks} ]; then exit 1; fi
    i=$((i + 1))
    sleep 0.01
  done
  ;;
esac
exit 0
`;
}

/** A VE's freezer cgroup: v1's `freezer.state` or v2's `cgroup.freeze` in `dir`. */
export interface VEFreezer {
  version: 'v1' | 'v2';
  dir: string;
}

/** Thaws a VE its action script froze, after a dump that failed; one already gone is fine. */
export async function thawVE(f: VEFreezer): Promise<void> {
  const [file, value] = f.version === 'v1' ? ['freezer.state', 'THAWED'] : ['cgroup.freeze', '0'];
  await writeFile(join(f.dir, file), value).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'ENOENT') throw err;
  });
}

/**
 * A dump's marks (criuActionScript, network-lock): arm() before `runc checkpoint`, finish()
 * after it. Only a VE whose action script knows network-lock (booted by this kubevz) can use
 * them; `armed` says so, otherwise the caller takes the link down itself beforehand.
 */
export class DumpMarks {
  constructor(private readonly dir: string, private readonly veDir: string) {}

  /**
   * Clears the last dump's marks and says what the script is to do in this one (a script of an
   * older kubevz does only what it knows: freezesVE and finish() tell what it did).
   *  * `link`: the host link the script takes down at the freeze;
   *  * `disk`: the VE's disk for the script to freeze at CRIU's post-dump (when it does not,
   *    finish() says nothing of the disk);
   *  * `tmpfs`: the carried tmpfs mounts to archive (CarriedTmpfs.request);
   *  * `freezer`: the VE's freezer, for the script to freeze the VE at pre-dump. A dump that fails
   *    after that leaves the VE frozen (CRIU puts back the state it found): thawVE then.
   * Resolves to false when the VE's script knows none of it (booted before kubevz had one).
   */
  async arm(o: { link?: string; disk?: { mount: string; image: string }; tmpfs?: string; freezer?: VEFreezer & { timeoutMs?: number } } = {}): Promise<boolean> {
    const script = await readFile(criuActionScriptPath(this.veDir), 'utf8').catch(() => '');
    this.freezes = false;
    if (!script.includes('network-lock)')) return false;
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    await Promise.all(['frozen', 'frozen-at', 'tmpfs-archive.err', 'tmpfs-archive.failed', 'tmpfs-archive.done', ...DumpMarks.DISK_MARKS].map((f) => rm(join(this.dir, f), { force: true })));
    const put = (file: string, text: string | undefined) => (text ? writeFile(join(this.dir, file), text) : rm(join(this.dir, file), { force: true }));
    await put('dump-link', o.link);
    if (o.disk && script.includes('post-dump)')) await writeFile(join(this.dir, 'freeze-disk'), `${o.disk.mount}\n${o.disk.image}\n`);
    // The VE's config and script are written together (writeCriuConfig): external tmpfs mounts come with a script that archives them.
    await put('tmpfs-archive', o.tmpfs);
    this.freezes = o.freezer !== undefined && script.includes('pre-dump)');
    const ticks = Math.ceil((o.freezer?.timeoutMs ?? DumpMarks.FREEZE_TIMEOUT_MS) / 10);
    await put('freeze-cgroup', this.freezes ? `${o.freezer!.version}\n${o.freezer!.dir}\n${ticks}\n` : undefined);
    return true;
  }

  /** Whether the script of the dump armed last freezes the VE itself (pre-dump). */
  get freezesVE(): boolean {
    return this.freezes;
  }

  private freezes = false;

  /** How long the script waits for the VE to freeze before it thaws it and fails the dump (CRIU's own bound). */
  static readonly FREEZE_TIMEOUT_MS = 10_000;

  /** Why the script could not archive the VE's tmpfs mounts (tar's errors), when it could not. */
  async tmpfsError(): Promise<string | undefined> {
    if (!existsSync(join(this.dir, 'tmpfs-archive.failed'))) return undefined;
    return (await readFile(join(this.dir, 'tmpfs-archive.err'), 'utf8').catch(() => '')).trim() || 'tar failed';
  }

  private static readonly DISK_MARKS = ['freeze-disk', 'disk-frozen', 'disk-extents', 'disk-extents-done'];

  /**
   * During the dump: calls `cb` with filefrag's output once the script has frozen the disk and
   * listed its extents (a look every 5 ms; the dump takes ~100 ms and more). stop() ends the watch.
   */
  watchDisk(cb: (filefrag: string) => void): { stop(): void } {
    const done = join(this.dir, 'disk-extents-done');
    const timer = setInterval(() => {
      if (!existsSync(done)) return;
      clearInterval(timer);
      readFile(join(this.dir, 'disk-extents'), 'utf8').then(cb, () => undefined);
    }, 5);
    return { stop: () => clearInterval(timer) };
  }

  /**
   * After the dump: whether the script froze the disk, and its extents (filefrag's output) when it
   * listed them; clears those marks. Undefined: not frozen (the caller freezes it itself).
   */
  async frozenDisk(): Promise<{ filefrag?: string } | undefined> {
    const p = (f: string) => join(this.dir, f);
    const frozen = existsSync(p('disk-frozen'));
    const filefrag = frozen && existsSync(p('disk-extents-done')) ? await readFile(p('disk-extents'), 'utf8') : undefined;
    await Promise.all(DumpMarks.DISK_MARKS.map((f) => rm(p(f), { force: true })));
    return frozen ? { filefrag } : undefined;
  }

  /**
   * After the dump (done or failed): clears the link request; when CRIU froze the VE (ms since the
   * epoch), if the script said. The script marks it by creating a file, not by running `date`: a
   * spawn less on the downtime, for the file system's clock tick of precision. A VE booted by an
   * older kubevz has a script that writes `frozen-at` (ns) instead.
   */
  async finish(): Promise<number | undefined> {
    await Promise.all(['dump-link', 'tmpfs-archive', 'freeze-cgroup'].map((f) => rm(join(this.dir, f), { force: true })));
    const mark = await stat(join(this.dir, 'frozen')).catch(() => undefined);
    if (mark) return Math.floor(mark.mtimeMs);
    const ns = (await readFile(join(this.dir, 'frozen-at'), 'utf8').catch(() => '')).trim();
    return /^\d{13,}$/.test(ns) ? Number(BigInt(ns) / 1_000_000n) : undefined;
  }
}

/**
 * The VE's host link opened by its action script at CRIU's `network-unlock` of a restore: when
 * every socket exists again, before CRIU takes them out of repair mode and resumes the tasks. The
 * first packets the restored VE sends (the window probes of its TCP connections, replies it owed)
 * then reach their peers, instead of being lost on a link the agent opens a few spawns later, which
 * left the VE's peers waiting for their next retransmission. arm() before `runc restore`,
 * finish() after it; a link the script did not open the caller opens itself.
 */
export class NetworkUnlock {
  constructor(private readonly dir: string) {}

  /** `open`: the host link to bring up, and the bridge to move it to first (a parked one). */
  async arm(open: { link: string; master?: string } | undefined): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    await rm(join(this.dir, 'unlock-done'), { force: true });
    if (open) await writeFile(join(this.dir, 'unlock-link'), `${open.link}${open.master ? ` ${open.master}` : ''}\n`);
    else await rm(join(this.dir, 'unlock-link'), { force: true });
  }

  /** After the restore (done or failed): whether the script opened the link. */
  async finish(): Promise<boolean> {
    const done = existsSync(join(this.dir, 'unlock-done'));
    await Promise.all(['unlock-link', 'unlock-done'].map((f) => rm(join(this.dir, f), { force: true })));
    return done;
  }
}

// ---- the network of a VE with a user namespace, during a restore ----

/**
 * runc always checkpoints with CRIU's `--empty-ns network`, and a VE with a user namespace cannot
 * be restored into a netns made beforehand (the restored user namespace is a new one that does
 * not own it: "Can't setns …/net: Operation not permitted"). So CRIU makes an empty netns inside
 * the new user namespace, and at its `setup-namespaces` step — after the namespaces exist, before
 * any socket is restored — the VE's action script (criuActionScript) hands the root task's pid to
 * the agent through a file in the VE's handoff dir and waits; the agent pins and wires that netns
 * (CNI, exactly as for a boot, input held closed) and answers with `netns.done` (or
 * `netns.failed`, which fails the restore). Files rather than pipes: neither side can be left
 * blocked in an open().
 */
export class NetnsHandoff {
  /** How long the script waits for the agent before it fails the restore. */
  static readonly TIMEOUT_S = 60;

  constructor(private readonly dir: string) {}

  /** Clears markers of an earlier attempt; call before the restore starts. */
  async reset(): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    for (const f of ['netns.pid', 'netns.pid.tmp', 'netns.done', 'netns.failed']) await rm(join(this.dir, f), { force: true });
    // The script waits for the agent only when asked: a privileged VE's restore has no netns to hand over.
    await writeFile(join(this.dir, 'netns.wanted'), '');
  }

  /** After the restore (done or failed): a later restore of this VE asks anew. */
  async clear(): Promise<void> {
    await rm(join(this.dir, 'netns.wanted'), { force: true });
  }

  /**
   * Runs `wire(pid)` when the script asks, while `restoring` (runc restore) runs; resolves or
   * rejects as the restore does. A failed wiring fails the restore with its own error.
   */
  async serve(restoring: Promise<void>, wire: (pid: number) => Promise<unknown>, signal?: AbortSignal): Promise<void> {
    let finished = false;
    const done = restoring.finally(() => {
      finished = true;
    });
    let wireError: unknown;
    const answer = (async () => {
      for (let delay = 2; !finished; delay = Math.min(delay * 2, 10)) {
        if (signal?.aborted) return;
        const text = await readFile(join(this.dir, 'netns.pid'), 'utf8').catch(() => '');
        const pid = Number(text.trim());
        if (text.endsWith('\n') && Number.isInteger(pid) && pid > 0) {
          try {
            await wire(pid);
            await writeFile(join(this.dir, 'netns.done'), '');
          } catch (err) {
            wireError = err;
            await writeFile(join(this.dir, 'netns.failed'), `${(err as Error).message}\n`).catch(() => undefined);
          }
          return;
        }
        await new Promise((r) => setTimeout(r, delay));
      }
    })();
    try {
      await done;
    } catch (err) {
      await answer;
      throw wireError ?? err;
    }
    await answer;
    if (wireError) throw wireError;
  }
}

// ---- images ----

/**
 * Where a node keeps a migration's CRIU images, which live only for the move: a root-only dir on
 * the tmpfs /dev/shm when the host has one, else in the state dir. CRIU writes them during the
 * downtime and the target writes what it receives: this host's disk page cache took 265 MB/s
 * against 2.9 GB/s for tmpfs, ~1 s each way for a Debian VE's 270 MB. One dir per state dir
 * (agents on one host never share it). Lost with a reboot of the host, as the VE's processes are:
 * a rollback then boots the VE from its disk.
 */
export function migrationScratchDir(stateDir: string): string {
  shmIsTmpfs ??= (() => {
    try {
      return statfsSync('/dev/shm').type === TMPFS_MAGIC;
    } catch {
      return false;
    }
  })();
  if (!shmIsTmpfs) return join(stateDir, 'migrations');
  return join('/dev/shm', `kubevz-${createHash('sha256').update(resolve(stateDir)).digest('hex').slice(0, 12)}`);
}
let shmIsTmpfs: boolean | undefined;

/**
 * Removes one migration's dir under the scratch dir (`dir`), and the scratch dirs it leaves
 * empty when they are on /dev/shm, so nothing of kubevz stays there between migrations.
 */
export async function removeMigrationDir(stateDir: string, dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
  const root = migrationScratchDir(stateDir);
  if (!root.startsWith('/dev/shm/') || !dir.startsWith(`${root}/`)) return;
  for (let d = dirname(dir); d.startsWith(root); d = dirname(d)) {
    if (!(await rmdir(d).then(() => true, () => false))) return; // not empty: another migration's
  }
}

/** Removes the node's migration scratch dir when it is on /dev/shm (in the state dir it goes with it). */
export async function removeMigrationScratch(stateDir: string): Promise<void> {
  const dir = migrationScratchDir(stateDir);
  if (dir.startsWith('/dev/shm/')) await rm(dir, { recursive: true, force: true });
}

/** Creates `dir` (0700, root only); an existing one must be empty. */
export async function prepareImageDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await chmod(dir, 0o700);
  const left = await readdir(dir);
  if (left.length) throw new KvzError('Invalid', `checkpoint image dir ${dir} is not empty (${left.slice(0, 3).join(', ')}…): give a new or empty directory`);
}

/**
 * CRIU reads a restore's images partly from the VE's new user namespace, before and after its ids
 * are mapped: as host root (owner) and as the VE's root (group). So: root:<VE root's host gid>,
 * dir 0750, files 0640 — still nothing for other users of the host.
 */
export async function shareImagesWithVE(dir: string, hostGid: number): Promise<void> {
  await chown(dir, 0, hostGid);
  await chmod(dir, 0o750);
  for (const e of await readdir(dir, { withFileTypes: true })) {
    if (!e.isFile()) continue;
    await chown(join(dir, e.name), 0, hostGid);
    await chmod(join(dir, e.name), 0o640);
  }
}

/** Sum of the sizes of the regular files in `dir` (CRIU writes no subdirectories). */
export async function dirBytes(dir: string): Promise<number> {
  let total = 0;
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isFile()) total += (await stat(p)).size;
    else if (e.isDirectory()) total += await dirBytes(p);
  }
  return total;
}

/** The last lines of a CRIU log (dump.log / restore.log), errors first-class. */
/**
 * What to show of a CRIU log: its error lines (where the reason is, often far from the end) and
 * then the last lines, at most `lines` in all.
 */
export async function criuLogTail(file: string, lines = 25): Promise<string> {
  const all = (await readFile(file, 'utf8').catch(() => '')).trimEnd().split('\n');
  const errors = all.filter((l) => /\bError \(/.test(l) && !NOISE.test(l)).slice(0, 10);
  const tail = all.slice(-(lines - errors.length)).filter((l) => !errors.includes(l));
  return [...errors, ...(errors.length && tail.length ? ['…'] : []), ...tail].join('\n');
}

/** CRIU error lines that are not the reason: summaries, and a self-rlimit note on hosts without CAP_SYS_RESOURCE. */
const NOISE = /Dumping FAILED|Restoring FAILED|\(pid: \d+\) failed with|RLIMIT_NOFILE for self/;

/** The most telling CRIU line of a log tail ("Error (…): …"), for the one-line message. */
export function criuErrorLine(tail: string): string | undefined {
  const lines = tail.split('\n');
  const errs = lines.filter((l) => /Error|error|Can't|failed/.test(l));
  const telling = errs.find((l) => !NOISE.test(l)) ?? errs.at(0);
  return telling?.replace(/^\(\d+\.\d+\)\s*/, '').trim();
}

// ---- suspend checkpoints in the VE's state dir ----

export interface SuspendCheckpoint {
  name: string;
  /** The CRIU image dir. */
  path: string;
  createdAt: string;
  bytes: number;
  ms: number;
}

/**
 * ves/<uid>/checkpoints/<name>/ with a record <name>.json written after the dump completed: a
 * dir without its record is a dump that did not finish and never counts.
 */
export class SuspendCheckpoints {
  readonly dir: string;
  constructor(veDir: string) {
    this.dir = join(veDir, 'checkpoints');
  }

  /** A fresh image dir (0700) under a sortable name. */
  async create(): Promise<{ name: string; path: string }> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    await chmod(this.dir, 0o700);
    const name = `suspend-${Date.now().toString().padStart(15, '0')}`;
    const path = join(this.dir, name);
    await rm(path, { recursive: true, force: true });
    await prepareImageDir(path);
    return { name, path };
  }

  async complete(c: SuspendCheckpoint): Promise<void> {
    const file = join(this.dir, `${c.name}.json`);
    await writeFile(`${file}.tmp`, `${JSON.stringify(c)}\n`);
    await rename(`${file}.tmp`, file);
  }

  /** Completed checkpoints, newest first. */
  async list(): Promise<SuspendCheckpoint[]> {
    if (!existsSync(this.dir)) return [];
    const names = (await readdir(this.dir)).filter((n) => n.endsWith('.json')).sort().reverse();
    const out: SuspendCheckpoint[] = [];
    for (const n of names) {
      const c = JSON.parse(await readFile(join(this.dir, n), 'utf8').catch(() => 'null')) as SuspendCheckpoint | null;
      if (c && existsSync(c.path)) out.push(c);
    }
    return out;
  }

  async newest(): Promise<SuspendCheckpoint | undefined> {
    return (await this.list())[0];
  }

  /** Keeps the newest `keep` completed checkpoints; removes older ones and unfinished dumps. */
  async prune(keep: number): Promise<void> {
    if (!existsSync(this.dir)) return;
    const kept = new Set((await this.list()).slice(0, keep).map((c) => c.name));
    for (const n of await readdir(this.dir)) {
      const base = n.replace(/\.json(\.tmp)?$/, '');
      if (!kept.has(base)) await rm(join(this.dir, n), { recursive: true, force: true });
    }
  }

  async removeAll(): Promise<boolean> {
    if (!existsSync(this.dir)) return false;
    const had = (await this.list()).length > 0;
    await rm(this.dir, { recursive: true, force: true });
    return had;
  }
}

// ---- announcing a restored VE ----

/**
 * Tells the neighbours (the bridge, the host, peers) the VE's addresses are at its new port, from
 * inside the VE's netns: a gratuitous ARP for each IPv4 address (busybox's arping), and for IPv6
 * the kernel's own unsolicited neighbour advertisements — with `ndisc_notify` set, re-setting the
 * interface's MAC (to the same value) makes it advertise every address. (Left to CNI, the
 * advertisement at address setup raced the new bridge port and was lost now and then.)
 * Not awaited: arping waits up to a second for answers nobody sends, and that wait must not count
 * as the VE's downtime. Never fails the restore: a missing announcement only delays the switch-over.
 */
export function announceAddresses(o: { netnsPath: string; ifname: string; mac: string; addresses: string[]; busybox: string; log: Logger }): void {
  const v4 = o.addresses.map((a) => a.split('/')[0] ?? '').filter((a) => /^\d+\.\d+\.\d+\.\d+$/.test(a));
  const send = (what: string, args: string[], okExit = 0) =>
    void run('nsenter', [`--net=${o.netnsPath}`, ...args], { allowFailure: true, timeoutMs: 3_000 })
      .then((res) => {
        if (res.exitCode > okExit) o.log.warn({ err: res.stderr.trim() }, `${what} failed`);
        else o.log.debug(`${what} sent`);
      })
      .catch((err: unknown) => o.log.warn({ err: String(err) }, `${what} failed`));
  if (o.addresses.some((a) => a.includes(':'))) {
    send('unsolicited NA', ['sh', '-c', `echo 1 > /proc/sys/net/ipv6/conf/all/ndisc_notify && exec ip link set dev ${o.ifname} address ${o.mac}`]);
  }
  if (!v4.length) return;
  if (!existsSync(o.busybox)) {
    o.log.warn({ busybox: o.busybox }, 'busybox is missing: restored VE addresses not announced (gratuitous ARP skipped)');
    return;
  }
  // arping -U exits 1 when nobody answers, which is normal for an unsolicited ARP.
  for (const ip of v4) send(`gratuitous ARP for ${ip}`, [o.busybox, 'arping', '-U', '-q', '-c', '1', '-w', '1', '-I', o.ifname, '-s', ip, ip], 1);
}

/** nft table that holds a restore's netns closed (see holdInput). */
const RESTORE_TABLE = 'kvz_restore';

/**
 * Drops every packet that enters the VE's new netns while a restore sets it up. The CNI bridge
 * plugin announces the VE's address (gratuitous ARP) as soon as it wires the netns, so clients'
 * packets arrive here before CRIU has put the VE's sockets back; without this the kernel would
 * answer them with RSTs and end the very connections the migration keeps. `release` opens it.
 */
export async function holdInput(netnsPath: string, signal?: AbortSignal): Promise<void> {
  await run('nsenter', [`--net=${netnsPath}`, 'nft', '-f', '-'], {
    input: `table inet ${RESTORE_TABLE} {\n  chain input { type filter hook input priority -300; policy drop; }\n}\n`,
    signal,
  });
}

export async function releaseInput(netnsPath: string, signal?: AbortSignal): Promise<void> {
  const res = await run('nsenter', [`--net=${netnsPath}`, 'nft', 'delete', 'table', 'inet', RESTORE_TABLE], { signal, allowFailure: true });
  if (res.exitCode !== 0 && !/No such file|does not exist/.test(res.stderr)) {
    throw new KvzError('CommandFailed', `could not open the restored VE's network (nft delete table inet ${RESTORE_TABLE}): ${res.stderr.trim()}`);
  }
}

