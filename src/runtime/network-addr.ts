// IPv4 and IPv6 addresses and CIDRs as plain values: parse, canonical text, containment and
// the n-th host of a subnet. BigInt for both families, so one code path serves both.

import { KvzError } from '../core/errors.js';

export type IpFamily = 4 | 6;

export interface ParsedCidr {
  family: IpFamily;
  /** The address as written, canonicalised (IPv6 compressed, lower case). */
  ip: string;
  prefix: number;
  value: bigint;
  /** The network part (host bits cleared). */
  network: bigint;
}

function bits(family: IpFamily): number {
  return family === 4 ? 32 : 128;
}

function parseV4(ip: string): bigint | undefined {
  const parts = ip.split('.');
  if (parts.length !== 4) return undefined;
  let v = 0n;
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p) || Number(p) > 255) return undefined;
    v = (v << 8n) + BigInt(p);
  }
  return v;
}

function parseV6(ip: string): bigint | undefined {
  if (!/^[0-9a-fA-F:.]+$/.test(ip) || ip.split('::').length > 2) return undefined;
  let head = ip;
  let tail = '';
  let extra: bigint[] = [];
  // An embedded IPv4 tail (::ffff:1.2.3.4) is two groups.
  const lastColon = ip.lastIndexOf(':');
  if (ip.slice(lastColon + 1).includes('.')) {
    const v4 = parseV4(ip.slice(lastColon + 1));
    if (v4 === undefined) return undefined;
    extra = [v4 >> 16n, v4 & 0xffffn];
    head = ip.slice(0, lastColon + 1);
    if (head.endsWith(':') && !head.endsWith('::')) head = head.slice(0, -1);
  }
  [head, tail] = head.includes('::') ? (head.split('::') as [string, string]) : [head, ''];
  const groups = (s: string) => (s === '' ? [] : s.split(':'));
  const h = groups(head);
  const t = groups(tail);
  const compressed = ip.includes('::');
  const total = h.length + t.length + extra.length;
  if ((!compressed && total !== 8) || (compressed && total > 7)) return undefined;
  const all = [...h, ...Array<string>(8 - total).fill('0'), ...t];
  let v = 0n;
  for (const g of all) {
    if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return undefined;
    v = (v << 16n) + BigInt(parseInt(g, 16));
  }
  for (const e of extra) v = (v << 16n) + e;
  return v;
}

/** Parses a bare address; undefined when it is neither IPv4 nor IPv6. */
export function parseIp(ip: string): { family: IpFamily; value: bigint } | undefined {
  const v4 = parseV4(ip);
  if (v4 !== undefined) return { family: 4, value: v4 };
  const v6 = ip.includes(':') ? parseV6(ip) : undefined;
  return v6 === undefined ? undefined : { family: 6, value: v6 };
}

export function formatIp(family: IpFamily, value: bigint): string {
  if (family === 4) return [24n, 16n, 8n, 0n].map((s) => String((value >> s) & 255n)).join('.');
  const g = Array.from({ length: 8 }, (_, i) => Number((value >> BigInt(112 - 16 * i)) & 0xffffn));
  // RFC 5952: the longest run (≥ 2) of zero groups becomes "::".
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) { best = i; bestLen = j - i; }
    i = j;
  }
  const hex = g.map((x) => x.toString(16));
  if (best < 0) return hex.join(':');
  return `${hex.slice(0, best).join(':')}::${hex.slice(best + bestLen).join(':')}`;
}

/** The canonical text of a bare address (or the address part of a CIDR), for comparisons. */
export function canonicalIp(addr: string): string {
  const ip = addr.split('/')[0] ?? addr;
  const p = parseIp(ip);
  return p ? formatIp(p.family, p.value) : ip;
}

export function parseCidrAny(cidr: string): ParsedCidr {
  const [ip, p, ...rest] = cidr.split('/');
  const parsed = ip ? parseIp(ip) : undefined;
  const prefix = Number(p);
  if (!parsed || rest.length || p === undefined || !/^\d{1,3}$/.test(p) || prefix > bits(parsed.family)) {
    throw new KvzError('Invalid', `not an IPv4 or IPv6 CIDR: ${JSON.stringify(cidr)} (write e.g. 10.213.0.10/24 or fd00:213::10/64)`);
  }
  const hostBits = BigInt(bits(parsed.family) - prefix);
  const network = (parsed.value >> hostBits) << hostBits;
  return { family: parsed.family, ip: formatIp(parsed.family, parsed.value), prefix, value: parsed.value, network };
}

export function familyOf(addr: string): IpFamily | undefined {
  return parseIp(addr.split('/')[0] ?? addr)?.family;
}

/** Whether the bare address (or a CIDR's address) lies inside the subnet; false across families. */
export function subnetContains(subnet: string, addr: string): boolean {
  const s = parseCidrAny(subnet);
  const a = parseIp(addr.split('/')[0] ?? addr);
  if (!a || a.family !== s.family) return false;
  const hostBits = BigInt(bits(s.family) - s.prefix);
  return (a.value >> hostBits) << hostBits === s.network;
}

/** The n-th address of the subnet (0 = the network address), as a bare address. */
export function nthAddress(subnet: string, n: bigint | number): string {
  const s = parseCidrAny(subnet);
  const size = 1n << BigInt(bits(s.family) - s.prefix);
  const i = BigInt(n);
  if (i < 0n || i >= size) throw new KvzError('Invalid', `subnet ${subnet} has no address number ${i}`);
  return formatIp(s.family, s.network + i);
}

/** Number of addresses in the subnet. */
export function subnetSize(subnet: string): bigint {
  const s = parseCidrAny(subnet);
  return 1n << BigInt(bits(s.family) - s.prefix);
}
