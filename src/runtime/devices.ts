// The VE's devices: a default allow-list (what a distribution needs), plus host device nodes
// granted by spec.devices. A grant is exclusive on the node: recorded in the VE's state dir
// (ves/<uid>/devices.json, freed with it), and refused while another VE there holds the device.

import { readdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { KvzError } from '../core/errors.js';
import type { VEDeviceGrant } from './types.js';

export interface DeviceRule {
  allow: boolean;
  type?: 'c' | 'b' | 'a';
  major?: number;
  minor?: number;
  access: string;
}

/** A device node in the bundle (linux.devices): runc creates it, or bind-mounts it in a user namespace. */
export interface DeviceNode {
  path: string;
  type: 'c' | 'b';
  major: number;
  minor: number;
  fileMode: number;
  uid: number;
  gid: number;
}

/** A grant resolved against the host: the node plus its cgroup access. */
export interface ResolvedDevice extends DeviceNode {
  access: string;
}

/**
 * Default cgroup rules: deny all, then null, zero, full, random, urandom, tty, console, ptmx,
 * pts/*, net/tun (VPNs inside a VE) and fuse (FUSE mounts work in a user namespace: sshfs, lxcfs-like tools).
 */
export const DEFAULT_DEVICE_RULES: DeviceRule[] = [
  { allow: false, access: 'rwm' },
  { allow: true, type: 'c', major: 1, minor: 3, access: 'rwm' },
  { allow: true, type: 'c', major: 1, minor: 5, access: 'rwm' },
  { allow: true, type: 'c', major: 1, minor: 7, access: 'rwm' },
  { allow: true, type: 'c', major: 1, minor: 8, access: 'rwm' },
  { allow: true, type: 'c', major: 1, minor: 9, access: 'rwm' },
  { allow: true, type: 'c', major: 5, minor: 0, access: 'rwm' },
  { allow: true, type: 'c', major: 5, minor: 1, access: 'rwm' },
  { allow: true, type: 'c', major: 5, minor: 2, access: 'rwm' },
  { allow: true, type: 'c', major: 136, access: 'rwm' },
  { allow: true, type: 'c', major: 10, minor: 200, access: 'rwm' },
  { allow: true, type: 'c', major: 10, minor: 229, access: 'rwm' },
];

/** Nodes made in the VE's /dev besides runc's defaults (null, zero, full, random, urandom, tty, ptmx). */
export const DEFAULT_DEVICE_NODES: DeviceNode[] = [
  { path: '/dev/net/tun', type: 'c', major: 10, minor: 200, fileMode: 0o666, uid: 0, gid: 0 },
  { path: '/dev/fuse', type: 'c', major: 10, minor: 229, fileMode: 0o666, uid: 0, gid: 0 },
];

/** Linux dev_t → major/minor (glibc's encoding). */
export function splitDev(rdev: number): { major: number; minor: number } {
  const major = ((rdev >>> 8) & 0xfff) | Math.floor(rdev / 2 ** 32) & ~0xfff;
  const minor = (rdev & 0xff) | ((rdev >>> 12) & 0xfff00);
  return { major, minor };
}

const ACCESS = /^[rwm]{1,3}$/;

/** A grant's host node (stat), or an Invalid error naming the spec field. */
export async function resolveDevice(grant: VEDeviceGrant, index = 0): Promise<ResolvedDevice> {
  const field = `spec.devices[${index}]`;
  if (!grant.path.startsWith('/dev/')) throw new KvzError('Invalid', `${field}.path ${grant.path}: only device nodes under /dev/ can be granted`);
  const access = grant.access ?? 'rwm';
  if (!ACCESS.test(access)) throw new KvzError('Invalid', `${field}.access ${JSON.stringify(access)}: use letters of "rwm" (read, write, mknod)`);
  let st;
  try {
    st = await stat(grant.path);
  } catch (err) {
    throw new KvzError('Invalid', `${field}.path ${grant.path} does not exist on this node: ${(err as Error).message}`, { cause: err });
  }
  const type = st.isCharacterDevice() ? 'c' : st.isBlockDevice() ? 'b' : undefined;
  if (!type) throw new KvzError('Invalid', `${field}.path ${grant.path} is not a device node`);
  return { path: grant.path, type, ...splitDev(st.rdev), fileMode: st.mode & 0o777, uid: st.uid, gid: st.gid, access };
}

export function sameDevice(a: { type: string; major: number; minor: number }, b: { type: string; major: number; minor: number }): boolean {
  return a.type === b.type && a.major === b.major && a.minor === b.minor;
}

/** Cgroup allow rules for the grants, after the defaults. */
export function deviceRules(granted: ResolvedDevice[]): DeviceRule[] {
  return [...DEFAULT_DEVICE_RULES, ...granted.map((d) => ({ allow: true, type: d.type, major: d.major, minor: d.minor, access: d.access }))];
}

interface GrantRecord {
  name: string;
  devices: ResolvedDevice[];
}

const RECORD = 'devices.json';

/**
 * Exclusive grants among the VEs of one state dir. Check-and-record is serialised in the process
 * (one agent per state dir), so two VEs asking for one device at once cannot both get it.
 */
export class DeviceGrants {
  private tail: Promise<unknown> = Promise.resolve();
  constructor(private readonly vesDir: string) {}

  /** Resolves and records the VE's grants; a Conflict naming the holder when another VE has one. */
  claim(uid: string, name: string, grants: VEDeviceGrant[]): Promise<ResolvedDevice[]> {
    const next = this.tail.catch(() => undefined).then(() => this.doClaim(uid, name, grants));
    this.tail = next;
    return next;
  }

  private async doClaim(uid: string, name: string, grants: VEDeviceGrant[]): Promise<ResolvedDevice[]> {
    const mine = await Promise.all(grants.map((g, i) => resolveDevice(g, i)));
    const dirs = await readdir(this.vesDir).catch(() => [] as string[]);
    for (const d of dirs) {
      if (d === uid) continue;
      const rec = await this.read(d);
      for (const dev of mine) {
        const held = rec?.devices.find((o) => sameDevice(o, dev));
        if (held) {
          throw new KvzError('Conflict', `device ${dev.path} (${dev.type} ${dev.major}:${dev.minor}) is already granted to VE ${rec?.name} on this node; remove it from that VE's spec.devices (or delete that VE) first`);
        }
      }
    }
    const file = join(this.vesDir, uid, RECORD);
    if (mine.length === 0) {
      await writeFile(file, `${JSON.stringify({ name, devices: [] })}\n`).catch(() => undefined);
      return mine;
    }
    await writeFile(`${file}.tmp`, `${JSON.stringify({ name, devices: mine } satisfies GrantRecord)}\n`);
    await rename(`${file}.tmp`, file);
    return mine;
  }

  private async read(uid: string): Promise<GrantRecord | undefined> {
    try {
      return JSON.parse(await readFile(join(this.vesDir, uid, RECORD), 'utf8')) as GrantRecord;
    } catch {
      return undefined;
    }
  }
}
