// Files inside the VE's root that describe its network: /etc/resolv.conf from the declared
// nameservers and search domains. The host's own resolver is never copied in (debootstrap
// does that; we overwrite it), so a VE resolves only through what its spec names.

import { lstat, mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { VENetworkConfig } from './types.js';

/** The resolv.conf text for a VE's network config. */
export function resolvConf(net: VENetworkConfig | undefined): string {
  const servers = net?.nameservers ?? [];
  const search = net?.searchDomains ?? [];
  const lines = ['# Written by kubevz from spec.network.nameservers and spec.network.searchDomains; edits are replaced at the next start.'];
  if (servers.length === 0) lines.push('# No nameservers declared: this VE has no DNS resolver.');
  if (search.length) lines.push(`search ${search.join(' ')}`);
  for (const s of servers) lines.push(`nameserver ${s}`);
  return `${lines.join('\n')}\n`;
}

/**
 * Replaces <root>/etc/resolv.conf. A symlink there (systemd-resolved's stub, or anything the
 * template ships) is removed first: writing through it would follow an absolute link to the
 * host's file.
 */
export async function writeResolvConf(root: string, net: VENetworkConfig | undefined): Promise<void> {
  const etc = join(root, 'etc');
  await mkdir(etc, { recursive: true });
  const path = join(etc, 'resolv.conf');
  const st = await lstat(path).catch(() => undefined);
  if (st && !st.isFile()) await rm(path, { recursive: true, force: true });
  await writeFile(path, resolvConf(net));
}
