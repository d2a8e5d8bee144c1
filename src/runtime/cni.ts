// The VE's network via the CNI reference plugins, invoked by hand: `bridge` (veth on the node
// bridge, static IPAM with the declared addresses, the bridge as gateway) and `loopback`.
// The ADD result is stored so DEL (and a later CHECK) get it back as prevResult.

import { KvzError } from '../core/errors.js';
import { commandFailed, run } from './command.js';

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

export function bridgeConfig(input: BridgeNetworkInput): Record<string, unknown> {
  const gateway = input.gateway ?? gatewayOf(input.subnet);
  for (const a of input.addresses) {
    const { ip } = parseCidr(a);
    if (!cidrContains(input.subnet, ip)) {
      throw new KvzError('Invalid', `address ${a} is outside the node bridge subnet ${input.subnet}`);
    }
    if (ip === gateway) throw new KvzError('Invalid', `address ${a} is the node bridge's gateway address`);
  }
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
      addresses: input.addresses.map((address) => ({ address, gateway })),
      routes: [{ dst: '0.0.0.0/0', gw: gateway }],
    },
  };
}

export function loopbackConfig(): Record<string, unknown> {
  return { cniVersion: CNI_VERSION, name: 'kubevz-lo', type: 'loopback' };
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
