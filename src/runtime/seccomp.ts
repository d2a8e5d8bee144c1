// The VE's default seccomp profile: everything a full distribution uses is allowed; the syscalls
// that act on the host kernel as a whole (modules, kexec, clock, swap, kernel keyring, BPF, perf,
// raw port I/O, handle-based opens) fail with EPERM. Most are already denied by the dropped
// capabilities or the user namespace; the filter holds even in privileged mode. Left allowed on
// purpose: mount, unshare/clone (nested namespaces), ptrace, name_to_handle_at and the new mount
// API — init systems use them and treat EPERM as a hard error.

/** Denied syscalls with why, for reviewers and for `kvz` to show. */
export const DENIED_SYSCALLS: Record<string, string> = {
  init_module: 'kernel modules', finit_module: 'kernel modules', delete_module: 'kernel modules',
  kexec_load: 'replacing the host kernel', kexec_file_load: 'replacing the host kernel',
  settimeofday: 'host clock', clock_settime: 'host clock', clock_settime64: 'host clock',
  adjtimex: 'host clock', clock_adjtime: 'host clock', clock_adjtime64: 'host clock', stime: 'host clock',
  swapon: 'host swap', swapoff: 'host swap', acct: 'host process accounting',
  add_key: 'kernel keyring (not namespaced)', request_key: 'kernel keyring (not namespaced)', keyctl: 'kernel keyring (not namespaced)',
  bpf: 'BPF programs (host-wide; also not checkpointable)', perf_event_open: 'host performance counters',
  lookup_dcookie: 'host profiling', open_by_handle_at: 'opening host files by handle',
  iopl: 'raw port I/O', ioperm: 'raw port I/O', syslog: 'host kernel log',
  uselib: 'obsolete', nfsservctl: 'obsolete', vm86: 'obsolete', vm86old: 'obsolete',
};

/** libseccomp architectures for the host (and its compat ABIs). */
export function seccompArchitectures(arch: string = process.arch): string[] {
  switch (arch) {
    case 'x64': return ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32'];
    case 'arm64': return ['SCMP_ARCH_AARCH64', 'SCMP_ARCH_ARM'];
    case 'ppc64': return ['SCMP_ARCH_PPC64LE'];
    case 's390x': return ['SCMP_ARCH_S390X', 'SCMP_ARCH_S390'];
    default: return [];
  }
}

export interface OciSeccomp {
  defaultAction: string;
  architectures: string[];
  syscalls: { names: string[]; action: string; errnoRet?: number }[];
}

const EPERM = 1;

export function defaultSeccompProfile(arch?: string): OciSeccomp {
  return {
    defaultAction: 'SCMP_ACT_ALLOW',
    architectures: seccompArchitectures(arch),
    syscalls: [{ names: Object.keys(DENIED_SYSCALLS).sort(), action: 'SCMP_ACT_ERRNO', errnoRet: EPERM }],
  };
}
