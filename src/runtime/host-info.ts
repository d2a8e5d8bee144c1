// Facts about the host that shape a VE's bundle: which capabilities the agent itself may hand
// out (its bounding set; e.g. CAP_SYS_RESOURCE is missing on some hosts) and the hard
// RLIMIT_NOFILE (runc fails to start a VE asking for more). Detected, never assumed.

import { readFileSync } from 'node:fs';

export const CAPABILITY_NAMES = [
  'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_DAC_READ_SEARCH', 'CAP_FOWNER', 'CAP_FSETID', 'CAP_KILL',
  'CAP_SETGID', 'CAP_SETUID', 'CAP_SETPCAP', 'CAP_LINUX_IMMUTABLE', 'CAP_NET_BIND_SERVICE',
  'CAP_NET_BROADCAST', 'CAP_NET_ADMIN', 'CAP_NET_RAW', 'CAP_IPC_LOCK', 'CAP_IPC_OWNER',
  'CAP_SYS_MODULE', 'CAP_SYS_RAWIO', 'CAP_SYS_CHROOT', 'CAP_SYS_PTRACE', 'CAP_SYS_PACCT',
  'CAP_SYS_ADMIN', 'CAP_SYS_BOOT', 'CAP_SYS_NICE', 'CAP_SYS_RESOURCE', 'CAP_SYS_TIME',
  'CAP_SYS_TTY_CONFIG', 'CAP_MKNOD', 'CAP_LEASE', 'CAP_AUDIT_WRITE', 'CAP_AUDIT_CONTROL',
  'CAP_SETFCAP', 'CAP_MAC_OVERRIDE', 'CAP_MAC_ADMIN', 'CAP_SYSLOG', 'CAP_WAKE_ALARM',
  'CAP_BLOCK_SUSPEND', 'CAP_AUDIT_READ', 'CAP_PERFMON', 'CAP_BPF', 'CAP_CHECKPOINT_RESTORE',
] as const;

export interface HostInfo {
  /** Capability names in this process's bounding set. */
  boundingCaps: string[];
  /** Hard RLIMIT_NOFILE of this process (Infinity when unlimited). */
  nofileHard: number;
}

export function capsFromMask(hex: string): string[] {
  const mask = BigInt(`0x${hex}`);
  return CAPABILITY_NAMES.filter((_, bit) => (mask >> BigInt(bit)) & 1n);
}

export function parseProcStatusCapBnd(status: string): string[] {
  const m = /^CapBnd:\s*([0-9a-f]+)$/m.exec(status);
  return m?.[1] ? capsFromMask(m[1]) : [...CAPABILITY_NAMES];
}

export function parseNofileHard(limits: string): number {
  const m = /^Max open files\s+\S+\s+(\S+)/m.exec(limits);
  if (!m?.[1] || m[1] === 'unlimited') return Infinity;
  return Number(m[1]);
}

let cached: HostInfo | undefined;

export function hostInfo(): HostInfo {
  cached ??= {
    boundingCaps: parseProcStatusCapBnd(readFileSync('/proc/self/status', 'utf8')),
    nofileHard: parseNofileHard(readFileSync('/proc/self/limits', 'utf8')),
  };
  return cached;
}
