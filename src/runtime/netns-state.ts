// What a VE set up in its own network namespace — iptables rules (IPv4 and IPv6), routes and
// extra addresses — kept across a checkpoint. runc dumps with `--empty-ns network`, so no netns
// image is ever written; a VE whose netns is made anew on restore (a user-namespace VE, or any VE
// on a migration's target) would otherwise come back with only its declared network and no firewall.
// Saved beside the CRIU images (root-only, moved with them) and put back before the restored VE
// takes a packet. Native nftables tables the VE made itself are not kept (README says so).

import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { KvzError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { CniResult } from './cni.js';
import { run } from './command.js';

export const NETNS_STATE_FILE = 'kvz-netns-state.json';

interface RouteJson {
  type?: string;
  dst: string;
  gateway?: string;
  dev?: string;
  table?: string;
  protocol?: string;
  scope?: string;
  prefsrc?: string;
  metric?: number;
  flags?: string[];
}

interface AddrJson {
  ifname: string;
  addr_info?: { family: string; local: string; prefixlen: number; scope?: string }[];
}

export interface NetnsState {
  /** `iptables-save` / `ip6tables-save` output, absent when the VE has no rules of its own. */
  iptables?: string;
  ip6tables?: string;
  /** `ip` batch lines (addresses first, then routes) that rebuild what the kernel did not make itself. */
  ip: string[];
}

function inNetns(netns: string, cmd: string, args: string[], signal?: AbortSignal, input?: string) {
  return run('nsenter', [`--net=${netns}`, cmd, ...args], { signal, input });
}

/** A ruleset worth restoring: a rule, a user chain, or a policy other than ACCEPT. */
export function hasRules(save: string): boolean {
  return save.split('\n').some((l) => l.startsWith('-A ') || l.startsWith('-N ') || (/^:\S+ (DROP|REJECT|QUEUE|RETURN) /.test(l)));
}

/**
 * `ip` commands that put back the VE's global addresses and its routes — not the kernel's own
 * (connected, local and multicast ones come back with the addresses), nor what CNI sets again
 * (`made`, its ADD result). `replace` keeps them idempotent all the same.
 */
export function ipCommands(addrs: AddrJson[], routes: RouteJson[], made: Pick<CniResult, 'ips' | 'routes'> = {}): string[] {
  const madeAddrs = new Set((made.ips ?? []).map((i) => i.address));
  const madeRoutes = new Set((made.routes ?? []).map((r) => `${r.dst} ${r.gw ?? ''}`));
  const lines: string[] = [];
  for (const link of addrs) {
    for (const a of link.addr_info ?? []) {
      const cidr = `${a.local}/${a.prefixlen}`;
      if (a.scope === 'global' && !madeAddrs.has(cidr)) lines.push(`address replace ${cidr} dev ${link.ifname}`);
    }
  }
  for (const r of routes) {
    if (r.protocol === 'kernel' || r.table === 'local' || (r.type && r.type !== 'unicast') || !r.dev) continue;
    const dst = r.dst === 'default' ? (r.gateway?.includes(':') ? '::/0' : '0.0.0.0/0') : r.dst;
    if (!r.table && madeRoutes.has(`${dst} ${r.gateway ?? ''}`)) continue;
    // The family follows from the destination or gateway (`ip -batch` takes no options per line).
    const words = ['route replace', r.dst];
    if (r.gateway) words.push('via', r.gateway);
    words.push('dev', r.dev);
    if (r.table) words.push('table', r.table);
    if (r.metric !== undefined) words.push('metric', String(r.metric));
    if (r.protocol) words.push('proto', r.protocol);
    if (r.scope) words.push('scope', r.scope);
    if (r.prefsrc) words.push('src', r.prefsrc);
    if (r.flags?.includes('onlink')) words.push('onlink');
    lines.push(words.join(' '));
  }
  return lines;
}

/** Reads the VE's network state from `netns` into `imageDir`; `made`: what CNI set (its ADD result). */
export async function saveNetnsState(netns: string, imageDir: string, made?: CniResult, signal?: AbortSignal): Promise<NetnsState> {
  const [v4, v6, routes, addrs] = await Promise.all([
    inNetns(netns, 'iptables-save', [], signal),
    inNetns(netns, 'ip6tables-save', [], signal),
    inNetns(netns, 'ip', ['-j', 'route', 'show', 'table', 'all'], signal),
    inNetns(netns, 'ip', ['-j', 'address', 'show'], signal),
  ]);
  const state: NetnsState = {
    iptables: hasRules(v4.stdout) ? v4.stdout : undefined,
    ip6tables: hasRules(v6.stdout) ? v6.stdout : undefined,
    ip: ipCommands(JSON.parse(addrs.stdout || '[]') as AddrJson[], JSON.parse(routes.stdout || '[]') as RouteJson[], made),
  };
  await writeFile(join(imageDir, NETNS_STATE_FILE), JSON.stringify(state), { mode: 0o600 });
  return state;
}

/**
 * Puts the saved state into the restored VE's netns (input still held). Images from before this
 * file existed have none: nothing to do. A rule or route that cannot be put back fails the restore:
 * a VE must not come back without its firewall.
 */
export async function restoreNetnsState(netns: string, imageDir: string, log: Logger, signal?: AbortSignal): Promise<void> {
  const text = await readFile(join(imageDir, NETNS_STATE_FILE), 'utf8').catch(() => undefined);
  if (text === undefined) return;
  const state = JSON.parse(text) as NetnsState;
  const fail = (what: string, err: unknown) =>
    new KvzError('CommandFailed', `could not put back the VE's ${what} in its restored network namespace: ${(err as KvzError).details?.stderr ?? (err as Error).message}`, { cause: err });
  // Addresses before routes (a route may leave from one); both before the rules that may name them.
  if (state.ip.length > 0) {
    await inNetns(netns, 'ip', ['-batch', '-'], signal, `${state.ip.join('\n')}\n`).catch((err) => {
      throw fail('addresses and routes', err);
    });
  }
  await Promise.all([
    state.iptables && inNetns(netns, 'iptables-restore', [], signal, state.iptables).catch((err) => { throw fail('iptables rules', err); }),
    state.ip6tables && inNetns(netns, 'ip6tables-restore', [], signal, state.ip6tables).catch((err) => { throw fail('ip6tables rules', err); }),
  ]);
  log.debug({ ip: state.ip.length, iptables: !!state.iptables, ip6tables: !!state.ip6tables }, 'VE network state put back');
}
