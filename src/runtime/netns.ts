// iproute2 wrapped in typed functions: network namespaces and links on the host. Callers never
// build `ip` command lines themselves, so the backend can later move to netlink.

import { existsSync, readFileSync } from 'node:fs';
import { run } from './command.js';

export const NETNS_DIR = '/run/netns';

export function netnsPath(name: string): string {
  return `${NETNS_DIR}/${name}`;
}

export function netnsExists(name: string): boolean {
  return existsSync(netnsPath(name));
}

/**
 * Whether a link exists in the caller's network namespace. /proc/net/dev is per netns of the
 * reading process; /sys/class/net shows the netns of whoever mounted /sys, which is wrong for an
 * agent started with `nsenter --net` (the multi-node harness) and kept in the host's mount ns.
 */
export function linkExists(name: string): boolean {
  let text: string;
  try {
    text = readFileSync('/proc/net/dev', 'utf8');
  } catch {
    return existsSync(`/sys/class/net/${name}`);
  }
  return text.split('\n').some((line) => {
    const i = line.indexOf(':');
    return i > 0 && line.slice(0, i).trim() === name;
  });
}

export async function addNetns(name: string, signal?: AbortSignal): Promise<void> {
  await run('ip', ['netns', 'add', name], { signal });
}

/** Pins the network namespace of a running process as /run/netns/<name> (made by runc or CRIU). */
export async function attachNetns(name: string, pid: number, signal?: AbortSignal): Promise<void> {
  await run('ip', ['netns', 'attach', name, String(pid)], { signal });
}

/** Removes the netns; a missing one is fine. */
export async function deleteNetns(name: string, signal?: AbortSignal): Promise<void> {
  if (!netnsExists(name)) return;
  await run('ip', ['netns', 'delete', name], { signal });
}

/** Deletes a host link synchronously (unlike the deferred clean-up of `ip netns del`). */
export async function deleteLink(name: string, signal?: AbortSignal): Promise<void> {
  if (!linkExists(name)) return;
  const res = await run('ip', ['link', 'delete', 'dev', name], { signal, allowFailure: true });
  if (res.exitCode !== 0 && linkExists(name)) {
    await run('ip', ['link', 'delete', 'dev', name], { signal });
  }
}

export async function renameLink(from: string, to: string, signal?: AbortSignal, opts: { leaveDown?: boolean } = {}): Promise<void> {
  await run('ip', ['-batch', '-'], {
    input: `link set dev ${from} down\nlink set dev ${from} name ${to}\n${opts.leaveDown ? '' : `link set dev ${to} up\n`}`,
    signal,
  });
}

/** Sets a link's MAC inside a netns (a veth accepts it while up). */
export async function setLinkAddress(netns: string, link: string, mac: string, signal?: AbortSignal): Promise<void> {
  await run('ip', ['-n', netns, 'link', 'set', 'dev', link, 'address', mac], { signal });
}

export async function setLinkUp(netns: string, link: string, signal?: AbortSignal): Promise<void> {
  await run('ip', ['-n', netns, 'link', 'set', 'dev', link, 'up'], { signal });
}

interface IpAddrJson {
  ifname: string;
  addr_info?: { family: string; local: string; prefixlen: number; scope?: string }[];
}

/** IPv4 and global IPv6 addresses (CIDR) on the netns' non-loopback links, parsed from `ip -j addr`. */
export function parseIpAddrJson(json: string): string[] {
  const links = JSON.parse(json || '[]') as IpAddrJson[];
  const out: string[] = [];
  for (const l of links) {
    if (l.ifname === 'lo') continue;
    for (const a of l.addr_info ?? []) {
      if (a.family === 'inet' || (a.family === 'inet6' && a.scope === 'global')) out.push(`${a.local}/${a.prefixlen}`);
    }
  }
  return out;
}

export async function netnsAddresses(name: string, signal?: AbortSignal): Promise<string[]> {
  if (!netnsExists(name)) return [];
  const res = await run('ip', ['-n', name, '-j', 'addr', 'show'], { signal, allowFailure: true });
  if (res.exitCode !== 0) return [];
  return parseIpAddrJson(res.stdout);
}
