// Host-side anti-spoofing for a VE's host veth. A VE's root owns its network namespace and can
// send frames with any MAC or IP; nothing inside the VE can be trusted to stop it. So the host
// filters what ENTERS from the VE's host veth (never what goes to the VE):
//
// * bridged: a `bridge` family table hooked at bridge prerouting, before the bridge forwards or
//   delivers locally. Ether source must be the VE's MAC; ARP must be Ethernet/IPv4 with the VE's
//   MAC and one of its IPv4 addresses (or 0.0.0.0, probes) as sender; IPv4 source one of its
//   addresses; IPv6 source one of its addresses or link-local (:: only for ICMPv6: DAD, MLD);
//   neighbour advertisements only for its own (or link-local) targets, ND link-layer options
//   only with its MAC; no router advertisements or redirects; any other ether type is dropped.
// * routed (ptp veth, no bridge): an `inet` table at prerouting with the same MAC and IP rules.
//   ARP is not filtered there: neighbour entries are per device and the host reaches each routed
//   VE through its own /32 route, so a lie told on one VE's veth reaches no other VE.
//
// One kubevz table per family, shared by all VEs of the netns (several runtimes of one host
// included): a verdict map `ports` keyed by interface name jumps to the VE's chain `g_<veth>`,
// so one lookup per frame whatever the number of VEs, and guarding or unguarding one VE only
// adds or removes its own element and chain. Every call is one `nft -f -` transaction: the
// kernel applies it whole or not at all, so a re-guard with new addresses replaces the old rules
// atomically (no window without a guard). Rules are keyed by name, not bound to a device: a
// guard may be set before the veth exists (a migration target) and survives moving the veth
// between bridges (the parking bridge of a migration target included).
//
// Gaps, by choice: link-local IPv6 (fe80::/10) is not pinned per VE — a VE may use any, another
// VE's too — since the VE picks its own (EUI-64 or stable-privacy). Addresses a VE gives itself
// (SLAAC from a LAN router, `ip addr add`) are dropped: only declared addresses pass.
//
// Table lifetime: a table stays when its last guard goes (an empty map: one failed lookup per
// frame) — deleting it on the last unguard would race with another runtime's guard in the same
// netns. removeAntispoofTables deletes empty ones (teardownNode). A guard also leaves an empty,
// unhooked table of the other family behind (it clears that family's guard of the same veth).

import { KvzError } from '../core/errors.js';
import { run } from './command.js';
import { parseIp, formatIp } from './network-addr.js';

/** Name of kubevz's anti-spoofing tables (one in the `bridge` and one in the `inet` family). */
export const ANTISPOOF_TABLE = 'kvz_antispoof';

export type AntispoofMode = 'bridged' | 'routed';

export interface VethGuard {
  /** The VE's host-side veth (the bridge port in bridged mode, the ptp host end in routed mode). */
  hostVeth: string;
  /** The VE's MAC (aa:bb:cc:dd:ee:ff). */
  mac: string;
  /** The VE's addresses, bare or as CIDRs (the prefix is ignored: each address is allowed alone). */
  addresses: string[];
  mode: AntispoofMode;
}

export interface AntispoofOptions {
  signal?: AbortSignal;
  /** Run nft in this network namespace (a /run/netns or /proc path) instead of the current one. */
  netnsPath?: string;
}

const FAMILY: Record<AntispoofMode, 'bridge' | 'inet'> = { bridged: 'bridge', routed: 'inet' };

// nft 1.0.x takes unquoted identifiers only: letters, digits, `_`, `-`, `.`, `/` (not first).
const IFNAME = /^[A-Za-z0-9_.-]{1,15}$/;
const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

function chainOf(hostVeth: string): string {
  return `g_${hostVeth}`;
}

function checkIfname(hostVeth: string): void {
  if (!IFNAME.test(hostVeth)) {
    throw new KvzError('Invalid', `cannot guard interface ${JSON.stringify(hostVeth)}: anti-spoofing takes interface names of 1–15 letters, digits, '_', '-' or '.'`);
  }
}

function normalise(g: VethGuard): { mac: string; v4: string[]; v6: bigint[] } {
  checkIfname(g.hostVeth);
  const mac = g.mac.toLowerCase();
  if (!MAC.test(mac)) throw new KvzError('Invalid', `cannot guard ${g.hostVeth}: ${JSON.stringify(g.mac)} is not a MAC address (write aa:bb:cc:dd:ee:ff)`);
  const v4 = new Set<string>();
  const v6 = new Map<string, bigint>();
  for (const a of g.addresses) {
    const p = parseIp(a.split('/')[0] ?? a);
    if (!p) throw new KvzError('Invalid', `cannot guard ${g.hostVeth}: ${JSON.stringify(a)} is not an IPv4 or IPv6 address`);
    if (p.family === 4) v4.add(formatIp(4, p.value));
    else v6.set(formatIp(6, p.value), p.value);
  }
  return { mac, v4: [...v4], v6: [...v6.values()] };
}

/** The kubevz table of `family` with its hooked chain and map; re-asserting it is harmless. */
function tablePreamble(family: 'bridge' | 'inet'): string[] {
  const t = `${family} ${ANTISPOOF_TABLE}`;
  // Bridge prerouting sees every frame a port brings in, forwarded or for the host. The
  // base chain's one rule is flushed and re-added so repeating the preamble never duplicates it.
  return [
    `add table ${t}`,
    `add map ${t} ports { type ifname : verdict; }`,
    `add chain ${t} prerouting { type filter hook prerouting priority -300; policy accept; }`,
    `flush chain ${t} prerouting`,
    `add rule ${t} prerouting iifname vmap @ports`,
  ];
}

/**
 * Removes hostVeth's guard from `family` whether it is there or not: nft has no "delete if
 * present" before 1.0.8, so the batch first makes sure element and chain exist, then deletes
 * them. It adds no hook: on a netns without the table it leaves only an empty table and map.
 */
function removal(family: 'bridge' | 'inet', hostVeth: string): string[] {
  const t = `${family} ${ANTISPOOF_TABLE}`;
  const c = chainOf(hostVeth);
  return [
    `add table ${t}`,
    `add map ${t} ports { type ifname : verdict; }`,
    `add chain ${t} ${c}`,
    `add element ${t} ports { "${hostVeth}" : jump ${c} }`,
    `delete element ${t} ports { "${hostVeth}" }`,
    `flush chain ${t} ${c}`,
    `delete chain ${t} ${c}`,
  ];
}

const v6hex = (v: bigint): string => `0x${v.toString(16).padStart(32, '0')}`;

/** IPv6 rules shared by both modes: ND sanity, then the allowed sources. */
function ipv6Rules(rule: (r: string) => string, mac: string, v6: bigint[]): string[] {
  const macHex = `0x${mac.replaceAll(':', '')}`;
  // The NA target (16 bytes at ICMPv6 offset 8) is what neighbours learn; nft 1.0.6 has no
  // `icmpv6 taddr`, so raw payload: link-local targets (fe80::/10) pass, others must be the VE's.
  const ownTargets = v6.length > 0 ? ` @th,64,128 != { ${v6.map(v6hex).join(', ')} }` : '';
  return [
    // A VE is never a router for its neighbours: rogue RAs and redirects would steal their traffic.
    rule('icmpv6 type { nd-router-advert, nd-redirect } counter drop'),
    rule(`icmpv6 type nd-neighbor-advert @th,64,16 & 0xffc0 != 0xfe80${ownTargets} counter drop`),
    // Source (type 1) / target (type 2) link-layer address option, when it comes first (it
    // does for Linux and everyone else in practice), must carry the VE's own MAC.
    rule(`icmpv6 type nd-neighbor-solicit @th,192,8 1 @th,208,48 != ${macHex} counter drop`),
    rule(`icmpv6 type nd-neighbor-advert @th,192,8 2 @th,208,48 != ${macHex} counter drop`),
    rule('ip6 saddr :: meta l4proto ipv6-icmp accept'),
    rule(`ip6 saddr { ${['fe80::/10', ...v6.map((v) => formatIp(6, v))].join(', ')} } accept`),
  ];
}

/**
 * The nft batch that guards one VE's host veth (and removes a guard the same veth may have in
 * the other family, should its mode have changed). Pure: exported for tests and for review.
 */
export function guardBatch(g: VethGuard): string {
  const { mac, v4, v6 } = normalise(g);
  const family = FAMILY[g.mode];
  const other = family === 'bridge' ? 'inet' : 'bridge';
  const t = `${family} ${ANTISPOOF_TABLE}`;
  const c = chainOf(g.hostVeth);
  const rule = (r: string): string => `add rule ${t} ${c} ${r}`;
  const lines = [...removal(other, g.hostVeth), ...tablePreamble(family), `add chain ${t} ${c}`, `flush chain ${t} ${c}`];
  lines.push(rule(`ether saddr != ${mac} counter drop`));
  if (family === 'bridge') {
    lines.push(
      rule('ether type != { ip, ip6, arp } counter drop'),
      // Only Ethernet/IPv4 ARP: with other sizes the sender fields below would be elsewhere.
      rule('arp htype . arp ptype . arp hlen . arp plen != { 1 . ip . 6 . 4 } counter drop'),
      rule(`arp saddr ether != ${mac} counter drop`),
      rule(`arp saddr ip != { ${['0.0.0.0', ...v4].join(', ')} } counter drop`),
      rule('ether type arp accept'),
    );
  }
  if (v4.length > 0) lines.push(rule(`ip saddr { ${v4.join(', ')} } accept`));
  lines.push(...ipv6Rules(rule, mac, v6), rule('counter drop'));
  // The element last: the chain is complete before any frame can jump to it.
  lines.push(`add element ${t} ports { "${g.hostVeth}" : jump ${c} }`);
  return `${lines.join('\n')}\n`;
}

/** The nft batch that removes the veths' guards in both families; correct whether a guard exists or not. */
export function unguardBatch(hostVeths: string | string[]): string {
  const names = [...new Set(typeof hostVeths === 'string' ? [hostVeths] : hostVeths)];
  names.forEach(checkIfname);
  return `${names.flatMap((n) => [...removal('bridge', n), ...removal('inet', n)]).join('\n')}\n`;
}

async function nft(args: string[], o: AntispoofOptions & { input?: string; allowFailure?: boolean }) {
  const [cmd, argv] = o.netnsPath ? ['nsenter', [`--net=${o.netnsPath}`, 'nft', ...args]] : ['nft', args];
  return run(cmd, argv, { input: o.input, signal: o.signal, allowFailure: o.allowFailure });
}

/**
 * Lets only the VE's own MAC and addresses in through its host veth; replaces an earlier guard
 * of the same veth atomically (call again when the addresses change). One nft process.
 */
export async function guardVeth(o: VethGuard & AntispoofOptions): Promise<void> {
  const input = guardBatch(o);
  try {
    await nft(['-f', '-'], { ...o, input });
  } catch (err) {
    if ((err as KvzError).code !== 'CommandFailed') throw err;
    throw new KvzError('HostSetup', `could not guard ${o.hostVeth} against address spoofing: ${(err as Error).message} (is nftables in the kernel: nf_tables, nft_bridge?)`, { cause: err });
  }
}

/**
 * Removes the guard of a VE's host veth (or of several names, in one nft process); a name
 * without a guard is fine. Never touches other VEs' guards.
 */
export async function unguardVeth(hostVeth: string | string[], signal?: AbortSignal, opts: Omit<AntispoofOptions, 'signal'> = {}): Promise<void> {
  if (hostVeth.length === 0) return;
  await nft(['-f', '-'], { ...opts, signal, input: unguardBatch(hostVeth) });
}

/**
 * Deletes the kubevz tables of a family that guards no veth any more (teardownNode). Checking and
 * deleting are two steps: call it only where no other runtime may be guarding in this netns
 * at the same moment. Returns the families whose table it deleted.
 */
export async function removeAntispoofTables(o: AntispoofOptions = {}): Promise<('bridge' | 'inet')[]> {
  const deleted: ('bridge' | 'inet')[] = [];
  for (const family of ['bridge', 'inet'] as const) {
    const res = await nft(['-j', 'list', 'map', family, ANTISPOOF_TABLE, 'ports'], { ...o, allowFailure: true });
    if (res.exitCode !== 0) continue; // no table (or no map): nothing of ours
    const doc = JSON.parse(res.stdout || '{}') as { nftables?: { map?: { elem?: unknown[] } }[] };
    const map = doc.nftables?.find((x) => x.map)?.map;
    if (!map || (map.elem?.length ?? 0) > 0) continue;
    await nft(['delete', 'table', family, ANTISPOOF_TABLE], o);
    deleted.push(family);
  }
  return deleted;
}
