// The OCI runtime spec (config.json) for a system container: the template's init as PID 1 in
// its own pid/mount/uts/ipc/cgroup namespaces, an agent-made network namespace joined by path
// (privileged) or a new one inside the VE's user namespace,
// a capability set fit for a full distribution minus the host-dangerous ones, a device
// allow-list (devices.ts), a seccomp profile (seccomp.ts), by default a user namespace joined by
// path (idmap-mount.ts), and the VE's limits. Pure: everything host-specific comes in as parameters.

import type { HostInfo } from './host-info.js';
import { ociResources, type OciResourceOptions, type OciResources } from './limits.js';
import type { IdRange, VEConfig } from './types.js';
import { DEFAULT_DEVICE_NODES, deviceRules, type DeviceNode, type DeviceRule, type ResolvedDevice } from './devices.js';
import { defaultSeccompProfile, type OciSeccomp } from './seccomp.js';

/**
 * Capabilities a VE never gets: they act on the host kernel as a whole (modules, clock, raw
 * I/O, LSM policy, kernel log, audit config, BPF/perf, suspend). CAP_SYS_BOOT stays: in a
 * child pid namespace reboot(2) only ends the VE's init. CAP_SYS_ADMIN stays because
 * distributions' init systems mount things; the VE's user namespace confines it to what it owns.
 */
export const DROPPED_CAPS = [
  'CAP_SYS_MODULE', 'CAP_SYS_TIME', 'CAP_SYS_RAWIO', 'CAP_MAC_ADMIN', 'CAP_MAC_OVERRIDE',
  'CAP_SYSLOG', 'CAP_AUDIT_CONTROL', 'CAP_AUDIT_READ', 'CAP_WAKE_ALARM', 'CAP_BLOCK_SUSPEND',
  'CAP_BPF', 'CAP_PERFMON', 'CAP_SYS_PACCT', 'CAP_CHECKPOINT_RESTORE',
];

export const MAX_NOFILE = 1_048_576;

/** What a VE does not see of the host's /proc and /sys (runc covers each with /dev/null or an empty read-only tmpfs). */
export const MASKED_PATHS: readonly string[] = [
  '/proc/acpi', '/proc/asound', '/proc/kcore', '/proc/keys', '/proc/latency_stats', '/proc/timer_list',
  '/proc/timer_stats', '/proc/sched_debug', '/proc/scsi', '/sys/firmware', '/sys/devices/virtual/powercap',
];

export interface OciSpecInput {
  config: VEConfig;
  /** Absolute path of the VE's mounted root. */
  rootfs: string;
  /**
   * Absolute path of the VE's network namespace (/run/netns/<id>) to join; undefined = a new one
   * (runc makes it on create, CRIU on restore) inside the VE's user namespace: CRIU can only put a
   * VE with a user namespace back into a netns it made itself (ADR 004).
   */
  netnsPath?: string;
  cgroupsPath: string;
  /** Init argv inside the VE. */
  init: string[];
  host: HostInfo;
  /** The VE's block device, for I/O throttles in the bundle. */
  resourceOptions?: OciResourceOptions;
  /** What the template's init needs (template meta.json); default: a plain init stopped with TERM. */
  boot?: BootProfile;
  /**
   * The VE's user namespace and its host id range; undefined = privileged mode. `path`: the pinned
   * namespace runc joins on create; none on restore, where CRIU makes it anew from the images.
   */
  userns?: { path?: string; range: IdRange };
  /** Host devices granted to the VE (devices.ts, already checked exclusive). */
  devices?: ResolvedDevice[];
  /** The VE's own CRIU config file (checkpoint.ts); runc reads it on checkpoint and restore. */
  criuConfig?: string;
  /** Node files bound over the VE's /proc (and /sys) files: lxcfs's (lxcfs.ts); undefined = the VE's own. */
  procBinds?: { source: string; destination: string }[];
}

/**
 * Binds come after /proc and /sys are mounted (they land on those files). runc (and CRIU, which
 * gets them as external mounts on checkpoint and restore) accepts binds over /proc only for
 * lxcfs's files. nosuid/nodev/noexec as the host's lxcfs mount has them.
 */
function procBindMounts(binds: { source: string; destination: string }[] | undefined): Mount[] {
  return (binds ?? []).map((b) => ({ destination: b.destination, type: 'bind', source: b.source, options: ['bind', 'nosuid', 'nodev', 'noexec'] }));
}

/** runc's per-container CRIU config file annotation (instead of the host-wide /etc/criu/runc.conf). */
export const CRIU_CONFIG_ANNOTATION = 'org.criu.config';

/** The template's init as the bundle sees it. */
export interface BootProfile {
  /** Extra init environment (KEY=VALUE; replaces a default of the same key). */
  env: string[];
  /** Graceful-stop signal, recorded in the bundle's annotations for stop and restore. */
  stopSignal: string;
  /** systemd as PID 1: writable cgroup mount, tmpfs /run/lock and /tmp; legacyCgroup (v1 hosts) = checkpointable legacy mode. */
  systemd?: { legacyCgroup: boolean };
}

/** Annotation holding the VE's graceful-stop signal. */
export const STOP_SIGNAL_ANNOTATION = 'io.kubevz.stop-signal';

/**
 * systemd in pure legacy cgroup mode: in hybrid mode its cgroup-BPF programs cannot be
 * checkpointed (PLATFORM-NOTES, "Checkpointing full distributions").
 */
export const SYSTEMD_LEGACY_CMDLINE = 'SYSTEMD_PROC_CMDLINE=systemd.unified_cgroup_hierarchy=0 systemd.legacy_systemd_cgroup_controller=1';

function withBoot(spec: OciSpec, boot: BootProfile | undefined): OciSpec {
  if (!boot) return spec;
  const keys = new Set(boot.env.map((e) => e.split('=')[0]));
  const env = [...spec.process.env.filter((e) => !keys.has(e.split('=')[0])), ...boot.env];
  spec.annotations[STOP_SIGNAL_ANNOTATION] = boot.stopSignal;
  if (boot.systemd) {
    const cg = spec.mounts.find((m) => m.destination === '/sys/fs/cgroup');
    if (cg) cg.options = cg.options.map((o) => (o === 'ro' ? 'rw' : o));
    spec.mounts.push(
      { destination: '/run/lock', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', 'noexec', 'mode=1777', 'size=5120k'] },
      { destination: '/tmp', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', 'mode=1777'] },
    );
    if (boot.systemd.legacyCgroup) {
      env.push(SYSTEMD_LEGACY_CMDLINE);
      spec.linux.maskedPaths.push('/sys/fs/cgroup/unified');
    }
  }
  spec.process.env = env;
  return spec;
}

interface Mount {
  destination: string;
  type: string;
  source: string;
  options: string[];
}


export interface OciSpec {
  ociVersion: string;
  process: {
    terminal: boolean;
    user: { uid: number; gid: number };
    args: string[];
    env: string[];
    cwd: string;
    capabilities: { bounding: string[]; effective: string[]; permitted: string[] };
    rlimits: { type: string; hard: number; soft: number }[];
    noNewPrivileges: boolean;
  };
  root: { path: string; readonly: boolean };
  hostname: string;
  mounts: Mount[];
  annotations: Record<string, string>;
  linux: {
    namespaces: { type: string; path?: string }[];
    cgroupsPath: string;
    resources: OciResources & { devices: DeviceRule[] };
    maskedPaths: string[];
    readonlyPaths: string[];
    uidMappings?: { containerID: number; hostID: number; size: number }[];
    gidMappings?: { containerID: number; hostID: number; size: number }[];
    seccomp?: OciSeccomp;
    devices?: DeviceNode[];
  };
}

export function veCapabilities(host: HostInfo): string[] {
  return host.boundingCaps.filter((c) => !DROPPED_CAPS.includes(c));
}


/** VE ids 0..size-1 → the range, for users and groups alike. */
function userMappings(r: IdRange): Pick<OciSpec['linux'], 'uidMappings' | 'gidMappings'> {
  const m = [{ containerID: 0, hostID: r.hostId, size: r.size }];
  return { uidMappings: m, gidMappings: m.map((x) => ({ ...x })) };
}

export function buildOciSpec(input: OciSpecInput): OciSpec {
  const { config, host } = input;
  const caps = veCapabilities(host);
  // More than the host's hard limit makes runc fail to start the VE: cap it (status then shows the cap).
  const nofile = Math.min(config.limits.openFiles ?? MAX_NOFILE, MAX_NOFILE, host.nofileHard);
  return withBoot({
    ociVersion: '1.0.2-dev',
    process: {
      terminal: false,
      user: { uid: 0, gid: 0 },
      args: input.init,
      env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'container=kubevz', 'TERM=xterm'],
      cwd: '/',
      capabilities: { bounding: caps, effective: caps, permitted: caps },
      rlimits: [{ type: 'RLIMIT_NOFILE', hard: nofile, soft: nofile }],
      noNewPrivileges: false,
    },
    root: { path: input.rootfs, readonly: false },
    hostname: config.hostname,
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
      { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
      { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'] },
      { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
      { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
      // A real sysfs (the VE owns its netns), read-only.
      { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
      { destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['nosuid', 'noexec', 'nodev', 'relatime', 'ro'] },
      { destination: '/run', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', 'mode=755', 'size=65536k'] },
      ...procBindMounts(input.procBinds),
    ],
    annotations: {
      'io.kubevz.uid': config.uid,
      'io.kubevz.name': config.name,
      'io.kubevz.template': config.template,
      ...(input.criuConfig ? { [CRIU_CONFIG_ANNOTATION]: input.criuConfig } : {}),
    },
    linux: {
      namespaces: [
        { type: 'pid' },
        { type: 'mount' },
        { type: 'uts' },
        { type: 'ipc' },
        { type: 'cgroup' },
        input.netnsPath ? { type: 'network', path: input.netnsPath } : { type: 'network' },
        // Joined on create (the agent pinned it), so a netns made after it is owned by the VE's root.
        ...(input.userns ? [input.userns.path ? { type: 'user', path: input.userns.path } : { type: 'user' }] : []),
      ],
      cgroupsPath: input.cgroupsPath,
      resources: { ...ociResources(config.limits, input.resourceOptions), devices: deviceRules(input.devices ?? []) },
      devices: [...DEFAULT_DEVICE_NODES, ...(input.devices ?? []).map(({ access: _a, ...node }) => node)],
      seccomp: defaultSeccompProfile(),
      ...(input.userns ? userMappings(input.userns.range) : {}),
      maskedPaths: [...MASKED_PATHS],
      readonlyPaths: ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'],
    },
  }, input.boot);
}
