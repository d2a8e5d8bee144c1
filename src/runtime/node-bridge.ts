// The node bridge VEs attach to. Either kubevz makes it (the CNI bridge plugin creates it on the
// first VE and puts the gateway address on it; we then tag it with an ifalias so that later
// runs and teardownNode know it is ours), or it already exists — a LAN bridge on a real host, a
// per-node bridge of the multi-node harness — and then kubevz only plugs veths into it: it never
// adds an address to it, never turns on forwarding for it, and never deletes it.

import { KvzError } from '../core/errors.js';
import { cidrContains, gatewayOf } from './cni.js';
import { run } from './command.js';
import { linkExists } from './netns.js';

/** ifalias of a bridge kubevz created; anything else is someone else's bridge. */
export const MANAGED_BRIDGE_ALIAS = 'kubevz-managed';

export interface NodeBridgeAttachment {
  name: string;
  /** Whether kubevz owns the bridge (absent now, or created by kubevz earlier). */
  managed: boolean;
  /** Whether it exists at all right now. */
  exists: boolean;
  /** The VEs' default gateway. */
  gateway: string;
  /** CNI `isGateway`: the plugin puts the gateway address on the bridge (managed bridges only). */
  isGateway: boolean;
}

interface IpLinkJson {
  ifname: string;
  ifalias?: string;
  linkinfo?: { info_kind?: string };
  addr_info?: { family: string; local: string; prefixlen: number }[];
}

/**
 * How VEs attach to `name`: a managed bridge gets the subnet's first address as gateway (or the
 * given one); an existing bridge keeps its addresses — the VEs' gateway is `gateway` when given,
 * else the bridge's own address inside the subnet (the host routes for its VEs), else the
 * subnet's first address (the LAN router, by convention).
 */
export async function nodeBridgeAttachment(o: { name: string; subnet: string; gateway?: string; signal?: AbortSignal }): Promise<NodeBridgeAttachment> {
  if (o.gateway !== undefined && !cidrContains(o.subnet, o.gateway)) {
    throw new KvzError('Invalid', `gateway ${o.gateway} is outside the node subnet ${o.subnet}; give a gateway inside it`);
  }
  if (!linkExists(o.name)) {
    return { name: o.name, managed: true, exists: false, gateway: o.gateway ?? gatewayOf(o.subnet), isGateway: true };
  }
  const res = await run('ip', ['-j', '-d', 'addr', 'show', 'dev', o.name], { signal: o.signal });
  const link = (JSON.parse(res.stdout || '[]') as IpLinkJson[])[0];
  if (!link) throw new KvzError('Internal', `ip addr show dev ${o.name} returned nothing`);
  const kind = link.linkinfo?.info_kind;
  if (kind !== 'bridge') {
    throw new KvzError('Invalid', `--bridge ${o.name} is a ${kind ?? 'plain'} link, not a bridge: name an existing bridge, or a free name for kubevz to create one`);
  }
  if (link.ifalias === MANAGED_BRIDGE_ALIAS) {
    return { name: o.name, managed: true, exists: true, gateway: o.gateway ?? gatewayOf(o.subnet), isGateway: true };
  }
  const own = (link.addr_info ?? []).find((a) => a.family === 'inet' && cidrContains(o.subnet, a.local));
  return { name: o.name, managed: false, exists: true, gateway: o.gateway ?? own?.local ?? gatewayOf(o.subnet), isGateway: false };
}

/** Tags a bridge the CNI plugin just created for us; idempotent. */
export async function markBridgeManaged(name: string, signal?: AbortSignal): Promise<void> {
  await run('ip', ['link', 'set', 'dev', name, 'alias', MANAGED_BRIDGE_ALIAS], { signal });
}

/** Deletes the bridge only when kubevz created it; returns what it did. */
export async function deleteManagedBridge(name: string, signal?: AbortSignal): Promise<'deleted' | 'unchanged' | 'kept'> {
  if (!linkExists(name)) return 'unchanged';
  const res = await run('ip', ['-j', 'link', 'show', 'dev', name], { signal, allowFailure: true });
  const link = (JSON.parse(res.stdout || '[]') as IpLinkJson[])[0];
  if (link?.ifalias !== MANAGED_BRIDGE_ALIAS) return 'kept';
  await run('ip', ['link', 'delete', 'dev', name], { signal });
  return 'deleted';
}

/**
 * The node's parking bridge: a bridge of kubevz's with no address and no uplink, where a
 * migration target wires an incoming VE's veth before the source freezes it. The CNI bridge
 * plugin sends a gratuitous ARP for the VE's address on ADD; on the node bridge that would teach
 * the LAN to send the still-running source VE's traffic here. Parked, the host end stays down
 * and is moved to the node bridge when the restored VE may take packets.
 */
export function parkingBridgeName(nodeBridge: string): string {
  return `${nodeBridge.slice(0, 10)}-park`;
}
