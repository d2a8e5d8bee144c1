// The node's address pool: picks addresses for a VE that declares none (the lowest free host
// address of the node's IPv4 subnet, and of its IPv6 subnet when it has one, skipping the
// gateway and the first few), and finds conflicts between VEs. Both look at every VE of the
// cluster, not only the node's: nodes may share one L2 segment and VE subnet (live migration),
// and an address is unique on the segment whichever node's VE holds it. Addresses outside the
// node's subnet never take part in allocation, so routed nodes (one subnet each) are unaffected.

import { NODE_LABEL, type VirtualEnvironment } from '../api/types.js';
import { TerminalError } from '../core/errors.js';
import { canonicalIp, familyOf, formatIp, parseCidrAny, parseIp, subnetContains, subnetSize } from '../runtime/index.js';

function checkedCidr(cidr: string): ReturnType<typeof parseCidrAny> {
  try {
    return parseCidrAny(cidr);
  } catch (err) {
    throw new TerminalError(`invalid subnet ${cidr}: expected a.b.c.d/len or an IPv6 prefix such as fd00:213::/64`, { cause: err });
  }
}

/** The lowest free address (with the subnet's prefix) at or above host number `firstHost`. */
export function allocateAddress(subnet: string, used: Iterable<string>, firstHost = 10): string {
  const s = checkedCidr(subnet);
  const size = subnetSize(subnet);
  // Host numbers taken in this subnet, each address parsed once (a node with a thousand VEs
  // allocates often; formatting every candidate made that quadratic in practice).
  const taken = new Set<bigint>();
  for (const u of used) {
    const p = parseIp(u.split('/')[0] ?? u);
    if (!p || p.family !== s.family) continue;
    const host = p.value - s.network;
    if (host >= 0n && host < size) taken.add(host);
  }
  // IPv4 keeps the broadcast address out; IPv6 has none.
  const end = size - (s.family === 4 ? 1n : 0n);
  for (let i = BigInt(firstHost); i < end; i++) {
    if (!taken.has(i)) return `${formatIp(s.family, s.network + i)}/${s.prefix}`;
  }
  throw new TerminalError(`no free address left in the node subnet ${subnet}; declare spec.network.addresses`);
}

export function inSubnet(address: string, subnet: string): boolean {
  return subnetContains(subnet, address);
}

export interface AddressChoice {
  /** spec.network.addresses. */
  declared: string[];
  /** What the host last applied for this VE (its config record). */
  applied?: string[];
  /** status.addresses (bare IPs) of this VE. */
  reported?: string[];
  subnet: string;
  subnet6?: string;
  /** Addresses other VEs of the cluster declare or hold (CIDR or bare; other subnets are ignored). */
  usedByOthers: () => string[];
}

/**
 * Declared addresses, else the ones already allocated (host record, then status), else one
 * free address per node subnet. An allocated VE keeps its addresses across restarts.
 */
export function chooseAddresses(c: AddressChoice): string[] {
  if (c.declared.length) return c.declared.map(canonicalCidr);
  if (c.applied?.length) return c.applied;
  const reported = (c.reported ?? []).filter(Boolean);
  if (reported.length) {
    return reported.map((a) => {
      if (a.includes('/')) return a;
      const subnet = familyOf(a) === 6 ? c.subnet6 : c.subnet;
      return `${a}/${subnet ? checkedCidr(subnet).prefix : familyOf(a) === 6 ? 64 : 32}`;
    });
  }
  const used = c.usedByOthers();
  const out = [allocateAddress(c.subnet, used)];
  if (c.subnet6) out.push(allocateAddress(c.subnet6, used));
  return out;
}

/** An address in canonical text (IPv6 compressed, lower case) with its prefix. */
export function canonicalCidr(cidr: string): string {
  const [ip, prefix] = cidr.split('/');
  return prefix === undefined ? canonicalIp(cidr) : `${canonicalIp(ip ?? '')}/${prefix}`;
}

/** One VE's claim on addresses, for conflict checks. */
export interface AddressClaim {
  /** namespace/name. */
  key: string;
  uid: string;
  addresses: string[];
  /** Whether the VE has these addresses on the host now (running with them). */
  holds: boolean;
  /** With `holds`: which of `addresses` it has (a running VE whose spec asks for new ones); absent: all. */
  held?: string[];
  /** metadata.creationTimestamp (RFC 3339); older wins between two that hold nothing. */
  created?: string;
  /** The node the VE is bound to, for the message. */
  node?: string;
}

/**
 * The claims of every VE but `uid` itself: the addresses each declares plus the ones its status
 * reports (a pool allocation, kept across stops), held while it is Running. A VE being deleted
 * claims nothing (its address is being freed). Excluding by uid, not name, keeps a VE in live
 * migration (one object, a copy on two nodes) from ever conflicting with itself.
 */
export function claimsOfOthers(ves: Iterable<VirtualEnvironment>, uid: string): AddressClaim[] {
  const out: AddressClaim[] = [];
  for (const o of ves) {
    if (o.metadata.uid === uid || o.metadata.deletionTimestamp) continue;
    const reported = o.status?.addresses ?? [];
    const held = o.status?.phase === 'Running' ? reported : [];
    const addresses = [...(o.spec.network?.addresses ?? []), ...reported];
    if (!addresses.length) continue;
    out.push({
      key: `${o.metadata.namespace}/${o.metadata.name}`, uid: o.metadata.uid ?? '', addresses, holds: held.length > 0, held,
      created: o.metadata.creationTimestamp, node: o.status?.nodeName || o.metadata.labels?.[NODE_LABEL] || undefined,
    });
  }
  return out;
}

function holdsIp(c: AddressClaim, ip: string): boolean {
  return c.holds && (c.held === undefined || c.held.some((h) => canonicalIp(h) === ip));
}

/** Whether `a` keeps address `ip` both claim: the holder first, then the older, then by name. */
function precedes(a: AddressClaim, b: AddressClaim, ip: string): boolean {
  const [ha, hb] = [holdsIp(a, ip), holdsIp(b, ip)];
  if (ha !== hb) return ha;
  const [ca, cb] = [a.created ?? '', b.created ?? ''];
  if (ca !== cb) return ca !== '' && (cb === '' || ca < cb);
  return a.key < b.key;
}

/**
 * The first address of `self` that another VE has a better claim on, with that VE (and its node);
 * undefined when self may use all its addresses. Symmetric: of two VEs asking for one address,
 * exactly one is refused.
 */
export function addressConflict(self: AddressClaim, others: AddressClaim[]): { address: string; other: string; node?: string } | undefined {
  const mine = new Map(self.addresses.map((a) => [canonicalIp(a), a]));
  for (const o of others) {
    if (o.uid === self.uid) continue;
    for (const a of o.addresses) {
      const ip = canonicalIp(a);
      const hit = mine.get(ip);
      if (hit && precedes(o, self, ip)) return { address: hit, other: o.key, ...(o.node ? { node: o.node } : {}) };
    }
  }
  return undefined;
}
