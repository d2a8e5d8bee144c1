// The VE's network via the CNI reference plugins, invoked by hand: `bridge` (veth on the node
// bridge, static IPAM with the declared addresses, the bridge as gateway), `ptp` (routed mode:
// a point-to-point veth with host routes, venet-like) and `loopback`. IPv4 and IPv6.
// The ADD result is stored so DEL (and a later CHECK) get it back as prevResult.

import { KvzError } from '../core/errors.js';
import { commandFailed, run } from './command.js';
import { canonicalIp, familyOf, nthAddress, parseCidrAny, subnetContains } from './network-addr.js';

export const CNI_VERSION = '1.0.0';
export const CNI_IFNAME = 'eth0';

export interface BridgeNetworkInput {
  bridge: string;
  /** The node bridge's subnet (CIDR); the gateway is its first host address. */
  subnet: string;
  addresses: string[];
  mac: string;
  /** The VEs' default gateway; default the subnet's first address. */
  gateway?: string;
  /** Whether the plugin puts the gateway address on the bridge (a bridge kubevz owns); default true. */
  isGateway?: boolean;
  /** The node's IPv6 subnet; IPv6 addresses are refused without it. */
  subnet6?: string;
  /** The VEs' IPv6 gateway; default the IPv6 subnet's first address. */
  gateway6?: string;
}

/** VE network modes: a veth on the node bridge, or a routed point-to-point link (venet-like). */
export type NetworkMode = 'bridged' | 'routed';

export interface RoutedNetworkInput {
  subnet: string;
  subnet6?: string;
  addresses: string[];
  mac: string;
}

export interface CniResult {
  cniVersion: string;
  interfaces?: { name: string; mac?: string; sandbox?: string }[];
  ips?: { interface?: number; address: string; gateway?: string }[];
  routes?: { dst: string; gw?: string }[];
  dns?: unknown;
}

function ipv4ToInt(ip: string): number {
  const parts = ip.split('.').map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) {
    throw new KvzError('Invalid', `not an IPv4 address: ${ip}`);
  }
  return (((parts[0]! << 24) >>> 0) + (parts[1]! << 16) + (parts[2]! << 8) + parts[3]!) >>> 0;
}

function intToIpv4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

export function parseCidr(cidr: string): { ip: string; prefix: number; network: number } {
  const [ip, p] = cidr.split('/');
  const prefix = Number(p);
  if (!ip || !Number.isInteger(prefix) || prefix < 0 || prefix > 32) throw new KvzError('Invalid', `not an IPv4 CIDR: ${cidr}`);
  const mask = prefix === 0 ? 0 : (~0 << (32 - prefix)) >>> 0;
  return { ip, prefix, network: (ipv4ToInt(ip) & mask) >>> 0 };
}

/** First host address of a subnet: the bridge's (gateway) address. */
export function gatewayOf(subnet: string): string {
  return intToIpv4(parseCidr(subnet).network + 1);
}

export function cidrContains(subnet: string, ip: string): boolean {
  const s = parseCidr(subnet);
  const mask = s.prefix === 0 ? 0 : (~0 << (32 - s.prefix)) >>> 0;
  return ((ipv4ToInt(ip) & mask) >>> 0) === s.network;
}

export function bridgeNetworkName(bridge: string): string {
  return `kubevz-${bridge}`;
}

/**
 * Each address with its family's gateway, checked against the node subnets: an IPv4 address
 * inside `subnet`, an IPv6 one inside `subnet6` (which must exist), never the gateway itself.
 */
export function staticAddresses(o: { subnet: string; subnet6?: string; gateway?: string; gateway6?: string; addresses: string[]; what: string }): { address: string; gateway: string }[] {
  const gw4 = o.gateway ?? gatewayOf(o.subnet);
  const gw6 = o.gateway6 ?? (o.subnet6 ? nthAddress(o.subnet6, 1) : undefined);
  return o.addresses.map((a) => {
    const c = parseCidrAny(a);
    const [subnet, gateway] = c.family === 4 ? [o.subnet, gw4] : [o.subnet6, gw6];
    if (!subnet || !gateway) {
      throw new KvzError('Invalid', `address ${a} is IPv6 but this node has no IPv6 subnet; start the node agent with --subnet6 (e.g. fd00:213::/64) or declare IPv4 addresses only`);
    }
    if (!subnetContains(subnet, c.ip)) throw new KvzError('Invalid', `address ${a} is outside the node ${o.what} subnet ${subnet}`);
    if (c.ip === canonicalIp(gateway)) throw new KvzError('Invalid', `address ${a} is the node ${o.what}'s gateway address`);
    return { address: `${c.ip}/${c.prefix}`, gateway: canonicalIp(gateway) };
  });
}

/** Default routes for the families present: 0.0.0.0/0 and/or ::/0 via that family's gateway. */
function defaultRoutes(addrs: { address: string; gateway: string }[], withGw: boolean): { dst: string; gw?: string }[] {
  const routes: { dst: string; gw?: string }[] = [];
  for (const fam of [4, 6] as const) {
    const a = addrs.find((x) => familyOf(x.address) === fam);
    if (a) routes.push({ dst: fam === 4 ? '0.0.0.0/0' : '::/0', ...(withGw ? { gw: a.gateway } : {}) });
  }
  return routes;
}

export function bridgeConfig(input: BridgeNetworkInput): Record<string, unknown> {
  const gateway = input.gateway ?? gatewayOf(input.subnet);
  const addresses = staticAddresses({ ...input, gateway, what: 'bridge' });
  return {
    cniVersion: CNI_VERSION,
    name: bridgeNetworkName(input.bridge),
    type: 'bridge',
    bridge: input.bridge,
    isGateway: input.isGateway ?? true,
    ipMasq: false,
    hairpinMode: false,
    runtimeConfig: { mac: input.mac },
    ipam: {
      type: 'static',
      addresses,
      routes: addresses.length ? defaultRoutes(addresses, true) : [{ dst: '0.0.0.0/0', gw: gateway }],
    },
  };
}

export const ROUTED_NETWORK_NAME = 'kubevz-routed';

/**
 * Routed (venet-like) mode: the ptp plugin makes a veth pair that is on no bridge; the host end
 * gets the family's gateway as a /32 (/128) and a host route to each VE address, the VE a
 * default route via that gateway. The ptp plugin ignores runtimeConfig.mac: the runtime sets the
 * MAC itself after ADD (kept here so a CHECK compares like with like).
 */
export function routedConfig(input: RoutedNetworkInput): Record<string, unknown> {
  return routedPlan(input).config;
}

/**
 * The ptp config with the first address of each family, and the rest: ptp adds one route to
 * the gateway per address and fails with EEXIST on a second one of a family, so further
 * addresses are added by the runtime after ADD (network-routed.ts).
 */
export function routedPlan(input: RoutedNetworkInput): { config: Record<string, unknown>; extras: string[] } {
  const all = staticAddresses({ ...input, what: 'routed' });
  const seen = new Set<number | undefined>();
  const addresses: typeof all = [];
  const extras: string[] = [];
  for (const a of all) {
    const fam = familyOf(a.address);
    if (seen.has(fam)) extras.push(a.address);
    else {
      seen.add(fam);
      addresses.push(a);
    }
  }
  return { config: routedConfigOf(addresses, input.mac), extras };
}

function routedConfigOf(addresses: { address: string; gateway: string }[], mac: string): Record<string, unknown> {
  return {
    cniVersion: CNI_VERSION,
    name: ROUTED_NETWORK_NAME,
    type: 'ptp',
    ipMasq: false,
    runtimeConfig: { mac },
    ipam: { type: 'static', addresses, routes: defaultRoutes(addresses, false) },
  };
}

/** The CNI config of a VE's eth0 for its mode. */
export function networkConfig(mode: NetworkMode, bridged: BridgeNetworkInput): Record<string, unknown> {
  if (mode === 'routed') return routedConfig({ subnet: bridged.subnet, subnet6: bridged.subnet6, addresses: bridged.addresses, mac: bridged.mac });
  return bridgeConfig(bridged);
}

/**
 * `ip -batch` lines that give an interface moved into another netns back what a CNI ADD gave it
 * (a move drops addresses and routes): lo and the interface up, its addresses (IPv6 without DAD:
 * they were in use already) and routes. Families are told by the addresses (`ip -batch` rejects
 * `-6` on a line), so a default route is written 0.0.0.0/0 or ::/0.
 */
export function restoreIfaceBatch(result: CniResult, ifname: string): string {
  const sandbox = new Set((result.interfaces ?? []).flatMap((i, n) => (i.sandbox ? [n] : [])));
  const lines = ['link set dev lo up'];
  for (const ip of result.ips ?? []) {
    if (ip.interface !== undefined && sandbox.size && !sandbox.has(ip.interface)) continue;
    lines.push(`address add ${ip.address} dev ${ifname}${ip.address.includes(':') ? ' nodad' : ''}`);
  }
  lines.push(`link set dev ${ifname} up`);
  for (const r of result.routes ?? []) lines.push(`route add ${r.dst} ${r.gw ? `via ${r.gw} ` : ''}dev ${ifname}`);
  return `${lines.join('\n')}\n`;
}

export interface CniInvocation {
  command: 'ADD' | 'DEL' | 'CHECK';
  containerId: string;
  netns: string;
  ifname: string;
  config: Record<string, unknown>;
  prevResult?: CniResult;
}

export class Cni {
  constructor(readonly pluginDir = '/usr/lib/cni') {}

  async invoke(inv: CniInvocation, signal?: AbortSignal): Promise<CniResult | undefined> {
    const type = String(inv.config.type);
    const plugin = `${this.pluginDir}/${type}`;
    const config = inv.prevResult ? { ...inv.config, prevResult: inv.prevResult } : inv.config;
    const env = {
      CNI_COMMAND: inv.command,
      CNI_CONTAINERID: inv.containerId,
      CNI_NETNS: inv.netns,
      CNI_IFNAME: inv.ifname,
      CNI_PATH: this.pluginDir,
    };
    const res = await run(plugin, [], { input: JSON.stringify(config), env, signal, allowFailure: true });
    if (res.exitCode !== 0) {
      let msg = res.stdout || res.stderr;
      try {
        const e = JSON.parse(res.stdout) as { msg?: string; details?: string };
        msg = [e.msg, e.details].filter(Boolean).join(': ');
      } catch {
        // not a CNI error document
      }
      throw commandFailed(plugin, [`CNI_COMMAND=${inv.command}`, `CNI_NETNS=${inv.netns}`, `CNI_IFNAME=${inv.ifname}`], res.exitCode, msg);
    }
    if (inv.command !== 'ADD' || res.stdout.trim() === '') return undefined;
    return JSON.parse(res.stdout) as CniResult;
  }
}
