// Picks an address for a VE that declares none: the lowest free host address of the node
// subnet, skipping the gateway and the first few, and every address another VE declares or holds.

import { TerminalError } from '../core/errors.js';

export function parseCidr(cidr: string): { base: number; prefix: number } {
  const m = /^(\d+)\.(\d+)\.(\d+)\.(\d+)\/(\d+)$/.exec(cidr);
  if (!m) throw new TerminalError(`invalid subnet ${cidr}: expected a.b.c.d/len`);
  const octets = m.slice(1, 5).map(Number);
  const prefix = Number(m[5]);
  const ip = octets.reduce((acc, o) => (acc << 8) + o, 0) >>> 0;
  const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
  return { base: (ip & mask) >>> 0, prefix };
}

function toDotted(n: number): string {
  return [24, 16, 8, 0].map((s) => (n >>> s) & 255).join('.');
}

export function allocateAddress(subnet: string, used: Iterable<string>, firstHost = 10): string {
  const { base, prefix } = parseCidr(subnet);
  const taken = new Set([...used].map((a) => a.split('/')[0]));
  const size = 2 ** (32 - prefix);
  for (let i = firstHost; i < size - 1; i++) {
    const ip = toDotted(base + i);
    if (!taken.has(ip)) return `${ip}/${prefix}`;
  }
  throw new TerminalError(`no free address left in the node subnet ${subnet}; declare spec.network.addresses`);
}

export function inSubnet(address: string, subnet: string): boolean {
  const a = parseCidr(`${address.split('/')[0]}/32`);
  const s = parseCidr(subnet);
  const mask = s.prefix === 0 ? 0 : (0xffffffff << (32 - s.prefix)) >>> 0;
  return ((a.base & mask) >>> 0) === s.base;
}
