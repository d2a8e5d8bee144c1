// Host names derived from a VE's uid. Everything a VE owns on the host is keyed by its uid, and
// the names must be short (IFNAMSIZ: 15 chars for a link) and stable across agent restarts and
// nodes (a migrated VE keeps its MAC).

import { createHash } from 'node:crypto';

/** 32+ hex chars of the uid (dashes dropped), or of its sha256 when the uid is not hex. */
function uidHex(uid: string): string {
  const hex = uid.replace(/-/g, '').toLowerCase();
  if (/^[0-9a-f]{12,}$/.test(hex)) return hex;
  return createHash('sha256').update(uid).digest('hex');
}

/** runc container id and netns name: `kvz-` + 12 hex chars. */
export function containerId(uid: string): string {
  return `kvz-${uidHex(uid).slice(0, 12)}`;
}

/** Network namespace name (under /run/netns): the container id. */
export function netnsName(uid: string): string {
  return containerId(uid);
}

/** Host end of the VE's veth: `kvz` + 10 hex chars (13 ≤ 15). */
export function hostVethName(uid: string): string {
  return `kvz${uidHex(uid).slice(0, 10)}`;
}

/** A locally administered unicast MAC derived from the uid: the same VE gets the same MAC on every node. */
export function macAddress(uid: string): string {
  const b = createHash('sha256').update(`kubevz-mac:${uid}`).digest();
  const bytes = [((b[0] ?? 0) & 0xfe) | 0x02, b[1], b[2], b[3], b[4], b[5]];
  return bytes.map((x) => (x ?? 0).toString(16).padStart(2, '0')).join(':');
}

/** The VE's cgroup path (runc cgroupsPath); unique per VE, as runc 1.1 on v1 does not refuse a shared one. */
export function cgroupPath(uid: string, parent = '/kubevz'): string {
  return `${parent}/${containerId(uid)}`;
}

/**
 * Names of a VE's netns and host veth for a runtime other than the first to hold this uid on the
 * host (two agents on one host during a migration, each with its own state dir): the primary
 * names are derived from the uid alone, these also from the runtime's state dir.
 */
export function scopedNetNames(uid: string, stateDir: string): { netns: string; veth: string } {
  const h = createHash('sha256').update(`kubevz-scope:${stateDir}:${uid}`).digest('hex');
  return { netns: `${containerId(uid)}-${h.slice(0, 8)}`, veth: `kvs${h.slice(0, 12)}` };
}
