// Routed (venet-like) mode beyond what the CNI ptp plugin does itself: the VE's further
// addresses of a family (ptp takes one per family) and their host routes. Nothing here puts
// the VE on a bridge; the host reaches each address through a /32 (/128) route over the veth.

import { run } from './command.js';
import { familyOf } from './network-addr.js';

/**
 * Adds `extras` (CIDRs) to the VE's interface without prefix routes (ptp already routes the
 * subnet via the gateway), and a host route per address over the VE's host veth. Idempotent.
 */
export async function addRoutedAddresses(o: { netns: string; ifname: string; hostVeth: string; extras: string[]; signal?: AbortSignal }): Promise<void> {
  if (o.extras.length === 0) return;
  const inside = o.extras.map((a) => `addr replace ${a} dev ${o.ifname} noprefixroute`).join('\n');
  await run('ip', ['-n', o.netns, '-batch', '-'], { input: `${inside}\n`, signal: o.signal });
  const host = o.extras.map((a) => {
    const ip = a.split('/')[0] ?? a;
    // No `-6`: `ip -batch` takes no options per line; the family follows from the address.
    return `route replace ${ip}/${familyOf(a) === 6 ? 128 : 32} dev ${o.hostVeth} scope link`;
  });
  await run('ip', ['-batch', '-'], { input: `${host.join('\n')}\n`, signal: o.signal });
}
