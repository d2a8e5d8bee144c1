// The node's address pool: picks addresses for a VE that declares none (the lowest free host
// address of the node's IPv4 subnet, and of its IPv6 subnet when it has one, skipping the
// gateway and the first few), and finds conflicts between VEs of the node.

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
  /** Addresses other VEs of the node declare or hold (CIDR or bare). */
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
  /** metadata.creationTimestamp (RFC 3339); older wins between two that hold nothing. */
  created?: string;
}

/** Whether `a` keeps an address both claim: the holder first, then the older, then by name. */
function precedes(a: AddressClaim, b: AddressClaim): boolean {
  if (a.holds !== b.holds) return a.holds;
  const [ca, cb] = [a.created ?? '', b.created ?? ''];
  if (ca !== cb) return ca !== '' && (cb === '' || ca < cb);
  return a.key < b.key;
}

/**
 * The first address of `self` that another VE of the node has a better claim on, with that VE;
 * undefined when self may use all its addresses. Symmetric: of two VEs asking for one address,
 * exactly one is refused.
 */
export function addressConflict(self: AddressClaim, others: AddressClaim[]): { address: string; other: string } | undefined {
  const mine = new Map(self.addresses.map((a) => [canonicalIp(a), a]));
  for (const o of others) {
    if (o.uid === self.uid) continue;
    for (const a of o.addresses) {
      const hit = mine.get(canonicalIp(a));
      if (hit && precedes(o, self)) return { address: hit, other: o.key };
    }
  }
  return undefined;
}
