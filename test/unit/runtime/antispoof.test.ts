// The nft batches of host-side anti-spoofing: what each mode lets in from a VE's veth, and that
// guard and unguard touch only the VE's own element and chain.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ANTISPOOF_TABLE, guardBatch, unguardBatch, type VethGuard } from '../../../src/runtime/antispoof.js';

const base: VethGuard = {
  hostVeth: 'kvz0a1b2c3d4e',
  mac: '02:AB:cd:00:11:22',
  addresses: ['10.219.7.1/24', '10.219.7.5', 'fd00:219::1/64', 'FD00:219:0::0:5'],
  mode: 'bridged',
};

const lines = (batch: string): string[] => batch.trim().split('\n');
const chainRules = (batch: string, family: string, veth: string): string[] =>
  lines(batch).filter((l) => l.startsWith(`add rule ${family} ${ANTISPOOF_TABLE} g_${veth} `)).map((l) => l.slice(`add rule ${family} ${ANTISPOOF_TABLE} g_${veth} `.length));

test('bridged: MAC, ARP sender, IPv4 and IPv6 sources of every address, then drop', () => {
  const b = guardBatch(base);
  const rules = chainRules(b, 'bridge', base.hostVeth);
  assert.deepEqual(rules, [
    'ether saddr != 02:ab:cd:00:11:22 counter drop',
    'ether type != { ip, ip6, arp } counter drop',
    'arp htype . arp ptype . arp hlen . arp plen != { 1 . ip . 6 . 4 } counter drop',
    'arp saddr ether != 02:ab:cd:00:11:22 counter drop',
    'arp saddr ip != { 0.0.0.0, 10.219.7.1, 10.219.7.5 } counter drop',
    'ether type arp accept',
    'ip saddr { 10.219.7.1, 10.219.7.5 } accept',
    'icmpv6 type { nd-router-advert, nd-redirect } counter drop',
    'icmpv6 type nd-neighbor-advert @th,64,16 & 0xffc0 != 0xfe80 @th,64,128 != { 0xfd000219000000000000000000000001, 0xfd000219000000000000000000000005 } counter drop',
    'icmpv6 type nd-neighbor-solicit @th,192,8 1 @th,208,48 != 0x02abcd001122 counter drop',
    'icmpv6 type nd-neighbor-advert @th,192,8 2 @th,208,48 != 0x02abcd001122 counter drop',
    'ip6 saddr :: meta l4proto ipv6-icmp accept',
    'ip6 saddr { fe80::/10, fd00:219::1, fd00:219::5 } accept',
    'counter drop',
  ]);
  // The hooked chain is re-made with exactly one rule; the VE's chain is flushed before its rules
  // and reachable only once complete (the map element comes last).
  const all = lines(b);
  assert.ok(all.includes(`add chain bridge ${ANTISPOOF_TABLE} prerouting { type filter hook prerouting priority -300; policy accept; }`));
  assert.equal(all.filter((l) => l === `add rule bridge ${ANTISPOOF_TABLE} prerouting iifname vmap @ports`).length, 1);
  assert.ok(all.indexOf(`flush chain bridge ${ANTISPOOF_TABLE} prerouting`) < all.indexOf(`add rule bridge ${ANTISPOOF_TABLE} prerouting iifname vmap @ports`));
  assert.ok(all.indexOf(`flush chain bridge ${ANTISPOOF_TABLE} g_${base.hostVeth}`) < all.findIndex((l) => l.startsWith(`add rule bridge ${ANTISPOOF_TABLE} g_`)));
  assert.equal(all.at(-1), `add element bridge ${ANTISPOOF_TABLE} ports { "${base.hostVeth}" : jump g_${base.hostVeth} }`);
  // Nothing hooks the inet family in bridged mode; a routed guard of the same veth is removed.
  assert.ok(!all.some((l) => l.startsWith('add chain inet') && l.includes('hook')));
  assert.ok(all.includes(`delete element inet ${ANTISPOOF_TABLE} ports { "${base.hostVeth}" }`));
  assert.ok(all.includes(`delete chain inet ${ANTISPOOF_TABLE} g_${base.hostVeth}`));
  // Nothing anywhere deletes or flushes a table, or names another veth.
  assert.ok(!all.some((l) => /^(delete|flush) table/.test(l)));
});

test('routed: an inet table with the MAC and IP rules and no ARP or ether-type rules', () => {
  const g: VethGuard = { ...base, hostVeth: 'veth1a2b3c4d', mode: 'routed', addresses: ['10.219.8.1/32', '10.219.8.2/32'] };
  const b = guardBatch(g);
  assert.deepEqual(chainRules(b, 'inet', g.hostVeth), [
    'ether saddr != 02:ab:cd:00:11:22 counter drop',
    'ip saddr { 10.219.8.1, 10.219.8.2 } accept',
    'icmpv6 type { nd-router-advert, nd-redirect } counter drop',
    // No IPv6 address of its own: only link-local targets may be advertised.
    'icmpv6 type nd-neighbor-advert @th,64,16 & 0xffc0 != 0xfe80 counter drop',
    'icmpv6 type nd-neighbor-solicit @th,192,8 1 @th,208,48 != 0x02abcd001122 counter drop',
    'icmpv6 type nd-neighbor-advert @th,192,8 2 @th,208,48 != 0x02abcd001122 counter drop',
    'ip6 saddr :: meta l4proto ipv6-icmp accept',
    'ip6 saddr { fe80::/10 } accept',
    'counter drop',
  ]);
  assert.deepEqual(chainRules(b, 'bridge', g.hostVeth), []);
  assert.ok(lines(b).includes(`add chain inet ${ANTISPOOF_TABLE} prerouting { type filter hook prerouting priority -300; policy accept; }`));
  assert.ok(lines(b).includes(`delete element bridge ${ANTISPOOF_TABLE} ports { "${g.hostVeth}" }`));
});

test('an IPv6-only VE has no IPv4 accept rule: every IPv4 source is dropped, ARP only as probes', () => {
  const rules = chainRules(guardBatch({ ...base, addresses: ['fd00:219::9'] }), 'bridge', base.hostVeth);
  assert.ok(!rules.some((r) => r.startsWith('ip saddr')));
  assert.ok(rules.includes('arp saddr ip != { 0.0.0.0 } counter drop'));
  assert.ok(rules.includes('ip6 saddr { fe80::/10, fd00:219::9 } accept'));
});

test('a re-guard with other addresses is the same batch shape with the new set (one transaction)', () => {
  const a = guardBatch(base);
  const b = guardBatch({ ...base, addresses: ['10.219.7.1/24', '10.219.7.9/24'] });
  assert.equal(lines(a).length - lines(b).length, 0);
  assert.ok(b.includes('ip saddr { 10.219.7.1, 10.219.7.9 } accept'));
  assert.ok(!b.includes('10.219.7.5'));
  // Duplicates collapse.
  assert.ok(guardBatch({ ...base, addresses: ['10.219.7.1', '10.219.7.1/24'] }).includes('ip saddr { 10.219.7.1 } accept'));
});

test('unguard removes the veth from both families, creating only what it deletes again', () => {
  const u = lines(unguardBatch('kvzabc'));
  for (const family of ['bridge', 'inet']) {
    const t = `${family} ${ANTISPOOF_TABLE}`;
    const mine = u.filter((l) => l.includes(` ${t} `) || l.endsWith(` ${t}`));
    assert.deepEqual(mine, [
      `add table ${t}`,
      `add map ${t} ports { type ifname : verdict; }`,
      `add chain ${t} g_kvzabc`,
      `add element ${t} ports { "kvzabc" : jump g_kvzabc }`,
      `delete element ${t} ports { "kvzabc" }`,
      `flush chain ${t} g_kvzabc`,
      `delete chain ${t} g_kvzabc`,
    ]);
  }
  assert.ok(!u.some((l) => l.includes('hook')));
  // Several names (a VE's primary and recorded veth) in one batch, duplicates once.
  const two = lines(unguardBatch(['kvzabc', 'kvsdef', 'kvzabc']));
  assert.equal(two.length, 2 * u.length);
  assert.ok(two.includes(`delete chain bridge ${ANTISPOOF_TABLE} g_kvsdef`));
});

test('names and values that nft would misread are refused', () => {
  assert.throws(() => guardBatch({ ...base, hostVeth: 'eth0; flush ruleset' }), { code: 'Invalid' });
  assert.throws(() => guardBatch({ ...base, hostVeth: 'a-very-long-name-x' }), { code: 'Invalid' });
  assert.throws(() => guardBatch({ ...base, mac: '02:ab:cd:00:11' }), { code: 'Invalid' });
  assert.throws(() => guardBatch({ ...base, addresses: ['10.219.7.300'] }), { code: 'Invalid' });
  assert.throws(() => guardBatch({ ...base, addresses: ['10.0.0.1 } accept'] }), { code: 'Invalid' });
  assert.throws(() => unguardBatch('"x"'), { code: 'Invalid' });
  assert.throws(() => unguardBatch(['ok', 'not ok']), { code: 'Invalid' });
});
