// Host-side anti-spoofing on the real kernel. The whole topology lives in network namespaces of
// its own: a "node" netns (bridge, host veths, the kvz_antispoof tables) and one netns per "VE".
// nft runs only inside the node netns, so the machine's own ruleset is never read or changed,
// and deleting the namespaces removes everything the test made.
//
// Each blocked case is shown passing once the guard is removed (or widened), which proves the
// guard — not the topology — did the blocking.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { guardVeth, removeAntispoofTables, unguardVeth } from '../../src/runtime/antispoof.js';
import { requirePrereqs, uniqueSuffix } from '../helpers/prereq.js';

const execFileP = promisify(execFile);

async function sh(cmd: string, args: string[]): Promise<{ ok: boolean; stdout: string }> {
  try {
    const r = await execFileP(cmd, args, { timeout: 20_000 });
    return { ok: true, stdout: r.stdout };
  } catch (err) {
    return { ok: false, stdout: String((err as { stdout?: string }).stdout ?? '') };
  }
}

/** Runs in netns `ns`; throws on failure. */
async function inNs(ns: string, ...args: string[]): Promise<string> {
  const r = await sh('ip', ['netns', 'exec', ns, ...args]);
  if (!r.ok) throw new Error(`ip netns exec ${ns} ${args.join(' ')} failed`);
  return r.stdout;
}
const ping = async (ns: string, ...args: string[]): Promise<boolean> => (await sh('ip', ['netns', 'exec', ns, 'ping', '-c', '1', '-W', '1', '-q', ...args])).ok;

// An unsolicited neighbour advertisement (override) for TARGET with MAC as its target link-layer
// address, sent from the interface's link-local address: iputils and busybox cannot forge one.
const SEND_NA = `
import socket, struct, sys
ifname, target, mac = sys.argv[1], sys.argv[2], bytes.fromhex(sys.argv[3].replace(':', ''))
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
na = struct.pack('!BBHI', 136, 0, 0, 0x20000000) + socket.inet_pton(socket.AF_INET6, target) + bytes([2, 1]) + mac
s.sendto(na, ('ff02::1', 0, 0, socket.if_nametoindex(ifname)))
`;

const MAC1 = '02:00:00:21:97:01';
const MAC2 = '02:00:00:21:97:02';
const MAC3 = '02:00:00:21:97:03';
const NODE4 = '10.219.7.254';
const NODE6 = 'fd00:219::fe';

async function neighMac(ns: string, ip: string, dev: string): Promise<string | undefined> {
  const entries = JSON.parse((await inNs(ns, 'ip', '-j', 'neigh', 'show', ip, 'dev', dev)) || '[]') as { lladdr?: string }[];
  return entries[0]?.lladdr;
}

test('a guarded veth cannot spoof addresses or MACs; unguarded it can', async (t) => {
  if (!requirePrereqs(t, { root: true, binaries: ['ip', 'nft', 'nsenter', 'ping', 'busybox', 'python3'] })) return;
  const s = uniqueSuffix();
  const node = `kvzsp${s}n`;
  const ve1 = `kvzsp${s}a`;
  const ve2 = `kvzsp${s}b`;
  const ve3 = `kvzsp${s}c`;
  const made: string[] = [];
  t.after(async () => {
    // The node netns holds the bridge, the host veths and the tables: deleting it removes them all.
    for (const ns of made.reverse()) await sh('ip', ['netns', 'del', ns]);
  });
  const nodeNs = { netnsPath: `/run/netns/${node}` };
  for (const ns of [node, ve1, ve2, ve3]) {
    const r = await sh('ip', ['netns', 'add', ns]);
    assert.ok(r.ok, `ip netns add ${ns}`);
    made.push(ns);
  }
  const batch = [
    'link add br0 type bridge',
    'link set br0 up',
    `addr add ${NODE4}/24 dev br0`,
    `addr add ${NODE6}/64 dev br0 nodad`,
    `link add h1 type veth peer name eth0 netns ${ve1}`,
    `link add h2 type veth peer name eth0 netns ${ve2}`,
    'link set h1 master br0 up',
    'link set h2 master br0 up',
    `link add r3 type veth peer name eth0 netns ${ve3}`,
    'link set r3 up',
    'addr add 10.219.8.254/32 dev r3',
    'route add 10.219.8.1/32 dev r3',
    // Where replies to the routed VE's spoofed source would go, so that only the guard stops them.
    'route add 10.219.8.9/32 dev r3',
  ];
  for (const line of batch) await inNs(node, 'ip', ...line.split(' '));
  // Neighbour entries may change at once (default locktime 1 s would make the poisoning check racy).
  await inNs(node, 'sysctl', '-q', '-w', 'net.ipv4.neigh.br0.locktime=0', 'net.ipv6.neigh.br0.locktime=0');
  for (const [ns, mac, n] of [[ve1, MAC1, 1], [ve2, MAC2, 2]] as const) {
    for (const line of [`link set eth0 address ${mac}`, 'link set eth0 up', 'link set lo up', `addr add 10.219.7.${n}/24 dev eth0`, `addr add fd00:219::${n}/64 dev eth0 nodad`]) {
      await inNs(ns, 'ip', ...line.split(' '));
    }
  }
  for (const line of [`link set eth0 address ${MAC3}`, 'link set eth0 up', 'addr add 10.219.8.1/32 dev eth0', 'route add 10.219.8.254/32 dev eth0', 'route add default via 10.219.8.254 dev eth0']) {
    await inNs(ve3, 'ip', ...line.split(' '));
  }

  await guardVeth({ hostVeth: 'h1', mac: MAC1, addresses: ['10.219.7.1/24', 'fd00:219::1/64'], mode: 'bridged', ...nodeNs });
  await guardVeth({ hostVeth: 'h2', mac: MAC2, addresses: ['10.219.7.2/24', 'fd00:219::2/64'], mode: 'bridged', ...nodeNs });
  await guardVeth({ hostVeth: 'r3', mac: MAC3, addresses: ['10.219.8.1/32'], mode: 'routed', ...nodeNs });

  // (1) Honest traffic flows: VE to VE, VE to node, both families, and in routed mode.
  assert.ok(await ping(ve1, '10.219.7.2'), 'VE1 → VE2 (IPv4)');
  assert.ok(await ping(ve1, '-6', 'fd00:219::2'), 'VE1 → VE2 (IPv6)');
  assert.ok(await ping(ve2, NODE4), 'VE2 → node');
  assert.ok(await ping(ve3, '10.219.8.254'), 'routed VE3 → node');

  // (2) Spoofed sources. Static neighbour entries on both sides take ARP/ND out of the picture:
  // only the IP source decides.
  const brMac = JSON.parse(await inNs(node, 'ip', '-j', 'link', 'show', 'br0'))[0].address as string;
  await inNs(ve1, 'ip', 'addr', 'add', '10.219.7.3/32', 'dev', 'eth0');
  await inNs(ve1, 'ip', 'addr', 'add', 'fd00:219::3/128', 'dev', 'eth0', 'nodad');
  await inNs(ve1, 'ip', 'neigh', 'replace', NODE4, 'lladdr', brMac, 'dev', 'eth0', 'nud', 'permanent');
  await inNs(ve1, 'ip', 'neigh', 'replace', NODE6, 'lladdr', brMac, 'dev', 'eth0', 'nud', 'permanent');
  await inNs(node, 'ip', 'neigh', 'replace', '10.219.7.3', 'lladdr', MAC1, 'dev', 'br0', 'nud', 'permanent');
  await inNs(node, 'ip', 'neigh', 'replace', 'fd00:219::3', 'lladdr', MAC1, 'dev', 'br0', 'nud', 'permanent');
  const spoof4 = () => ping(ve1, '-I', '10.219.7.3', NODE4);
  const spoof6 = () => ping(ve1, '-6', '-I', 'fd00:219::3', NODE6);
  assert.equal(await spoof4(), false, 'IPv4 from an address that is not VE1\'s is dropped');
  assert.equal(await spoof6(), false, 'IPv6 from an address that is not VE1\'s is dropped');
  await inNs(ve3, 'ip', 'addr', 'add', '10.219.8.9/32', 'dev', 'eth0');
  const spoofRouted = () => ping(ve3, '-I', '10.219.8.9', '10.219.8.254');
  assert.equal(await spoofRouted(), false, 'routed: IPv4 from a foreign address is dropped');

  // ARP poisoning: VE1 claims VE2's address towards the node. The node knows VE2's MAC first.
  assert.ok(await ping(node, '10.219.7.2'));
  assert.equal(await neighMac(node, '10.219.7.2', 'br0'), MAC2);
  await inNs(ve1, 'ip', 'addr', 'add', '10.219.7.2/32', 'dev', 'eth0');
  const poison = () => sh('ip', ['netns', 'exec', ve1, 'busybox', 'arping', '-c', '2', '-w', '1', '-I', 'eth0', '-s', '10.219.7.2', NODE4]);
  await poison();
  assert.equal(await neighMac(node, '10.219.7.2', 'br0'), MAC2, 'the node still maps VE2\'s address to VE2');
  // The same in IPv6: a forged neighbour advertisement for VE2's address, from VE1's link-local.
  assert.ok(await ping(node, '-6', 'fd00:219::2'));
  assert.equal(await neighMac(node, 'fd00:219::2', 'br0'), MAC2);
  const forgeNa = () => inNs(ve1, 'python3', '-c', SEND_NA, 'eth0', 'fd00:219::2', MAC1);
  await forgeNa();
  assert.equal(await neighMac(node, 'fd00:219::2', 'br0'), MAC2, 'the node still maps VE2\'s IPv6 address to VE2');

  // The address list may change: a re-guard that grants 10.219.7.3 lets it through, and taking it away stops it again.
  await guardVeth({ hostVeth: 'h1', mac: MAC1, addresses: ['10.219.7.1/24', '10.219.7.3/32', 'fd00:219::1/64'], mode: 'bridged', ...nodeNs });
  assert.equal(await spoof4(), true, 'granted address passes after re-guard');
  assert.equal(await spoof6(), false, 'IPv6 list unchanged: still dropped');
  await guardVeth({ hostVeth: 'h1', mac: MAC1, addresses: ['10.219.7.1/24', 'fd00:219::1/64'], mode: 'bridged', ...nodeNs });
  assert.equal(await spoof4(), false, 'withdrawn address is dropped again');

  // (3) A MAC other than the VE's cuts all its traffic.
  await inNs(ve1, 'ip', 'addr', 'del', '10.219.7.2/32', 'dev', 'eth0');
  await inNs(ve1, 'ip', 'link', 'set', 'eth0', 'address', '02:00:00:21:97:99');
  await inNs(ve2, 'ip', 'neigh', 'flush', 'dev', 'eth0');
  assert.equal(await ping(ve1, '10.219.7.2'), false, 'a changed MAC gets nothing through');
  await inNs(ve1, 'ip', 'link', 'set', 'eth0', 'address', MAC1);
  await inNs(ve2, 'ip', 'neigh', 'flush', 'dev', 'eth0');
  assert.ok(await ping(ve1, '10.219.7.2'), 'its own MAC again: traffic flows');

  // The drops were counted in VE1's chain, and VE2's guard is another chain.
  const chain = await inNs(node, 'nft', 'list', 'chain', 'bridge', 'kvz_antispoof', 'g_h1');
  assert.ok([...chain.matchAll(/counter packets (\d+)/g)].some((m) => Number(m[1]) > 0), chain);

  // (4) Unguarded, every one of those spoofs passes: the guard did the blocking.
  await unguardVeth('h1', undefined, nodeNs);
  await unguardVeth('h1', undefined, nodeNs); // idempotent
  await unguardVeth('r3', undefined, nodeNs);
  assert.equal(await spoof4(), true, 'unguarded: spoofed IPv4 passes');
  assert.equal(await spoof6(), true, 'unguarded: spoofed IPv6 passes');
  assert.equal(await spoofRouted(), true, 'unguarded routed: spoofed IPv4 passes');
  await inNs(ve1, 'ip', 'addr', 'add', '10.219.7.2/32', 'dev', 'eth0');
  await poison();
  assert.equal(await neighMac(node, '10.219.7.2', 'br0'), MAC1, 'unguarded: VE1 poisons the node\'s entry for VE2');
  await forgeNa();
  assert.equal(await neighMac(node, 'fd00:219::2', 'br0'), MAC1, 'unguarded: a forged advertisement poisons the node\'s IPv6 entry for VE2');
  await inNs(ve1, 'ip', 'addr', 'del', '10.219.7.2/32', 'dev', 'eth0');
  await inNs(ve1, 'ip', 'link', 'set', 'eth0', 'address', '02:00:00:21:97:99');
  assert.ok(await ping(ve1, NODE4), 'unguarded: a changed MAC passes');

  // VE2 is still guarded: its element and chain were untouched by VE1's unguard.
  const ports = await inNs(node, 'nft', 'list', 'map', 'bridge', 'kvz_antispoof', 'ports');
  assert.match(ports, /"h2" : jump g_h2/);
  assert.doesNotMatch(ports, /"h1"/);
  await inNs(ve2, 'ip', 'addr', 'add', '10.219.7.4/32', 'dev', 'eth0');
  await inNs(ve2, 'ip', 'neigh', 'replace', NODE4, 'lladdr', brMac, 'dev', 'eth0', 'nud', 'permanent');
  await inNs(node, 'ip', 'neigh', 'replace', '10.219.7.4', 'lladdr', MAC2, 'dev', 'br0', 'nud', 'permanent');
  assert.equal(await ping(ve2, '-I', '10.219.7.4', NODE4), false, 'VE2 still cannot spoof');

  // Tables go only when they guard nothing: the bridge table stays while h2 is guarded.
  assert.deepEqual(await removeAntispoofTables(nodeNs), ['inet']);
  await unguardVeth(['h2', 'h1'], undefined, nodeNs); // several names, one nft
  assert.deepEqual((await removeAntispoofTables(nodeNs)).sort(), ['bridge', 'inet']);
  assert.doesNotMatch(await inNs(node, 'nft', 'list', 'tables'), /kvz_antispoof/);
});
