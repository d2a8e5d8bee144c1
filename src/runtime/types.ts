// The runtime's contract with the node agent. The runtime knows nothing of Kubernetes: it is
// given plain, already-validated values (bytes, shares, microseconds) keyed by the VE's uid.

import type { Readable, Writable } from 'node:stream';
import type { Logger } from '../core/logger.js';
import type { EnsureTemplateOptions, TemplateInfo } from './templates.js';
import type { TemplateRecipe } from './template-recipe.js';

export interface VELimits {
  /** memory.limit_in_bytes; undefined = unlimited */
  memoryBytes?: number;
  /** swap allowed on top of memoryBytes (memsw = memory + swap); undefined = same as memory (no swap) */
  swapBytes?: number;
  /** cpu.shares (OpenVZ cpuunits map 1:1 to shares, 1000 → 1024 is not applied: we pass units through) */
  cpuShares?: number;
  /** CFS quota per period, in µs; undefined = no cap */
  cpuQuotaUs?: number;
  cpuPeriodUs?: number;
  /** pids.max */
  pids?: number;
  /** Memory kept under host pressure: memory.soft_limit_in_bytes (v1) / memory.low (v2). */
  memoryGuaranteeBytes?: number;
  /** Host CPUs the VE may run on, cpuset list syntax ("0-1", "0,2"); undefined = all. */
  cpuset?: string;
  /** RLIMIT_NOFILE of init (and what it starts); set at start only, a change waits for a restart. */
  openFiles?: number;
  /** blkio weight (v1, bfq) / io.weight (v2), 10..1000; undefined = the kernel default 100. */
  ioWeight?: number;
  /** Throttles on the block device that holds the VE's files; undefined = unthrottled. */
  readBps?: number;
  writeBps?: number;
  readIops?: number;
  writeIops?: number;
  /** Read back from cgroup v2 only: the raw cpu.weight, since shares → weight is lossy. */
  cpuWeight?: number;
}

/** A resource counter as the kernel keeps it (bytes, processes, ...). limit undefined = unlimited. */
export interface UsageCounter {
  held: number;
  maxheld?: number;
  limit?: number;
  failcnt: number;
}

/** One VE's resource usage, read from its cgroup and its init's netns (disk: VERuntime.diskUsage). */
export interface VEUsage {
  memory: UsageCounter & { oomKills: number };
  /** Swap in use (memsw − memory on v1); undefined when the host does not account swap. */
  swap?: UsageCounter;
  processes: UsageCounter;
  cpu: { usageUs: number; periods: number; throttledPeriods: number; throttledUs: number };
  /** Block I/O totals; read only when asked for (UsageTarget.io): no beancounter row shows them. */
  io?: { readBytes: number; writeBytes: number; readOps: number; writeOps: number };
  /** Open file descriptors summed over the VE's processes; undefined when /proc was not readable. */
  openFiles?: number;
  /** Sockets in the VE's netns (accounted, not enforced). */
  sockets?: { tcp: number; other: number };
  network?: { rxBytes: number; txBytes: number };
}

export interface VEConfig {
  /** The VE's uid: keys every host artifact (state dir, container id, netns, veth). */
  uid: string;
  /** namespace/name, for logs and annotations only. */
  name: string;
  hostname: string;
  /** Template name; its cache is the lower layer of the VE's root. */
  template: string;
  /** IPv4 and IPv6 CIDRs ("10.213.0.10/24", "fd00:213::10/64"). */
  addresses: string[];
  /** Mode and resolver of the VE's eth0; undefined = bridged, no nameservers. */
  network?: VENetworkConfig;
  limits: VELimits;
  /** The VE's own filesystem; undefined = DEFAULT_DISK (2Gi, mkfs's inode ratio). */
  disk?: VEDiskConfig;
  /** Isolation; undefined = the default: an own user namespace, no privileged fallback. */
  security?: VESecurityConfig;
  /** Host devices granted to this VE exclusively (refused while another VE on the node holds one). */
  devices?: VEDeviceGrant[];
}

/** A contiguous block of host ids; the VE's ids 0..size-1 are host ids hostId..hostId+size-1. */
export interface IdRange {
  hostId: number;
  size: number;
}

export interface VESecurityConfig {
  /** The VE's root is an unprivileged host id range in its own user namespace. false = privileged mode. */
  userNamespace: boolean;
  /** With userNamespace: run privileged (status says so, with the reason) where the node cannot; default: fail the VE. */
  allowPrivilegedFallback?: boolean;
  /** A range to keep (recorded in status; a migrated VE keeps its file ownership). Taken if free on this node, else the VE fails. */
  uidRange?: IdRange;
}

/** A host device node given to the VE (same path inside). access: cgroup device access, default 'rwm'. */
export interface VEDeviceGrant {
  path: string;
  access?: string;
}

/** How a VE is isolated, as applied on the host. */
export interface VESecurityState {
  userNamespace: boolean;
  /** No user namespace: the VE's root is the host's root (confined by caps, seccomp, devices). */
  privileged: boolean;
  uidRange?: IdRange;
  /** Why it is privileged when a user namespace was asked for (fallback). */
  reason?: string;
}

export interface VENetworkConfig {
  /** bridged: veth on the node bridge; routed: point-to-point veth with host routes (venet-like). */
  mode?: 'bridged' | 'routed';
  /** Written to the VE's /etc/resolv.conf (an empty list gives a file with only a comment). */
  nameservers?: string[];
  searchDomains?: string[];
}

export interface VEDiskConfig {
  /** Image size = disk-space limit. Grows online where possible, else at the next start; never shrinks. */
  sizeBytes: number;
  /** Inode count, fixed at creation (mkfs -N); undefined = one per 16 KiB. */
  inodes?: number;
  /** Second-level quota; > 0 is refused unless nodeFeatures().diskQuotaUgid is available. */
  quotaUgidLimit?: number;
  /** uid of a VE on this node whose disk seeds this one when it is created (clone); ignored afterwards. */
  cloneFrom?: string;
}

/** The VE's filesystem as the host has it. */
export interface VEDiskUsage {
  /** Applied size (bytes) and inode count of the image. */
  sizeBytes: number;
  inodes: number;
  mounted: boolean;
  /** From statfs while mounted. */
  usedBytes?: number;
  availableBytes?: number;
  inodesUsed?: number;
}

/** A node capability the runtime detected (never assumed); `reason` says why, for status and errors. */
export interface NodeFeature {
  available: boolean;
  reason: string;
}

/** 'suspended': no container, a suspend checkpoint on disk (resume restores it). */
export type VERunState = 'running' | 'stopped' | 'created' | 'paused' | 'suspended' | 'absent';

/** What the host says about one VE, read fresh from runc state, netns and mounts. */
export interface VEHostState {
  uid: string;
  /** The runc container's state; 'absent' when there is no container. */
  state: VERunState;
  /** Host PID of the VE's init when running. */
  pid?: number;
  /** Addresses configured in the VE's netns (CIDR). */
  addresses: string[];
  /** Whether the VE's root filesystem, netns, bundle are present on the host. */
  prepared: boolean;
  /** The config the VE was last created with (persisted in its state dir). */
  config?: VEConfig;
  /** Isolation as applied (from the VE's records; survives agent restarts). */
  security?: VESecurityState;
}

export interface StopOptions {
  /** Time to wait after SIGTERM to init before SIGKILL. */
  timeoutMs: number;
  signal?: AbortSignal;
}

export interface ExecOptions {
  tty: boolean;
  /** Environment for the process, KEY=VALUE. */
  env?: string[];
  cwd?: string;
  /** Where the process's stdio goes; default 'inherit' (the CLI's terminal). Streams are for callers that capture output. */
  stdin?: 'inherit' | 'ignore' | Readable;
  stdout?: 'inherit' | Writable;
  stderr?: 'inherit' | Writable;
  signal?: AbortSignal;
}

export type EnsureResult = 'unchanged' | 'created' | 'updated' | 'deleted';

/** One CRIU dump of a VE. */
export interface CheckpointResult {
  /** Absolute directory holding CRIU's images (0700, root only). */
  imageDir: string;
  /** Total size of the images. */
  bytes: number;
  /** Freeze + dump time as runc reported it back to us (wall clock of `runc checkpoint`). */
  ms: number;
  /** When CRIU froze the VE (ms since the epoch), where the VE's action script could tell: a downtime starts there. */
  frozenAt?: number;
  /** With freezeDisk: the disk is frozen, and its data extents when listed (as freezeDisk returns them); absent: not frozen. */
  disk?: { extents?: Array<[number, number]> };
}

export interface CheckpointOptions {
  /** Where the images go (created, must not exist or be empty). */
  imageDir: string;
  /** Keep the VE running after the dump (a copy); default false: the VE's processes end with the dump. */
  leaveRunning?: boolean;
  /**
   * Freeze the VE's disk at the end of the dump, while CRIU still holds the VE frozen (its action
   * script, no spawn from the agent on the downtime): what freezeDisk does. Not with leaveRunning.
   */
  freezeDisk?: boolean;
  /**
   * With freezeDisk: called with the frozen disk's extents (as CheckpointResult.disk) as soon as
   * the action script has listed them, while CRIU and runc still finish the dump — so the last
   * delta's digest can start then. Not called when the script could not list them.
   */
  onDiskFrozen?: (extents: Array<[number, number]> | undefined) => void;
  signal?: AbortSignal;
}

/**
 * What migration needs from a runtime beyond the VE lifecycle. The data channel between nodes is
 * the node agent's; the runtime only reads and writes local files and host state.
 */
export interface VEMigrationRuntime {
  /** CRIU dump through runc. On failure the VE keeps running and the KvzError ('CheckpointFailed') carries CRIU's log tail. */
  checkpoint(uid: string, opts: CheckpointOptions): Promise<CheckpointResult>;
  /**
   * Restores a VE from `imageDir` under the same identity: netns with the same addresses and MAC,
   * disk mounted, bundle written from `config`, then `runc restore`. After restore an unsolicited
   * ARP / NA announces the addresses. A failure undoes what it set up except the disk image.
   */
  restore(config: VEConfig, imageDir: string, signal?: AbortSignal): Promise<{ ms: number }>;
  /** The VE's disk image file (sparse ext4); exists once the VE was created or an incoming one was prepared. */
  diskImagePath(uid: string): string;
  /** Unmounts the VE's root (overlay and its image) after a dump, so the image file is consistent to copy. Idempotent. */
  releaseDisk(uid: string): Promise<void>;
  /**
   * Makes this node ready to receive VE `config`: its dir, the same uid range (config.security.uidRange),
   * the template cache, and an empty sparse disk image of the config's size at diskImagePath(uid) for
   * the sender to fill. Idempotent; `abortIncoming` removes all of it.
   */
  prepareIncoming(config: VEConfig, signal?: AbortSignal): Promise<void>;
  abortIncoming(uid: string): Promise<void>;
  /**
   * Live-migration speed-ups, all optional (a runtime without them takes the plain path):
   * freezeDisk makes a dumped VE's image consistent without unmounting it (thawDisk undoes it,
   * before any restore or release here) and returns the image file's data extents as of then
   * (byte ranges; undefined when the file system cannot tell), so the last delta's digest needs no
   * second look-up; on the target, mountIncomingDisk mounts the filled image and the VE's root fs
   * on it, and prepareRestoreNetwork wires the VE's netns (input held) ahead of `restore`.
   * syncDisk writes a running VE's dirty file data to its image (syncfs), so a pre-copy finds it
   * there and the freeze has little left to flush.
   */
  syncDisk?(uid: string, signal?: AbortSignal): Promise<void>;
  freezeDisk?(uid: string, signal?: AbortSignal): Promise<Array<[number, number]> | undefined>;
  thawDisk?(uid: string, signal?: AbortSignal): Promise<void>;
  mountIncomingDisk?(uid: string, signal?: AbortSignal): Promise<void>;
  /** Target side, once the images are in: what the restore would mount from them beside the disk (the VE's tmpfs). */
  mountIncomingTmpfs?(uid: string, imageDir: string, signal?: AbortSignal): Promise<void>;
  prepareRestoreNetwork?(config: VEConfig, signal?: AbortSignal): Promise<void>;
}

/**
 * One node's VE runtime. Every method is idempotent and safe to repeat after a crash; a
 * multi-step method that fails undoes its partial steps before it throws.
 */
export interface VERuntime {
  /**
   * Builds the template cache from `recipe` unless it is cached with the same digest; returns
   * its info (read-only root path, digest, init profile, sizes). Without a recipe: what is
   * cached; the built-in `busybox` is built if missing; any other name is NotFound.
   */
  ensureTemplate(name: string, recipe?: TemplateRecipe, opts?: EnsureTemplateOptions): Promise<TemplateInfo & { result: EnsureResult }>;
  /** Removes a template's cache from this node; a Conflict naming the VEs while VEs on this node use it. */
  removeTemplate(name: string): Promise<EnsureResult>;
  /** Every template cached on this node. */
  listTemplates(): Promise<TemplateInfo[]>;
  /**
   * Root fs + netns + CNI + bundle + runc create/start; 'unchanged' when it is already running with this config.
   * Limits changed on the host behind the runtime's back are put back, and onLimitsRestored is
   * told what the kernel held (the one place that both sees and mends it, so no caller races it).
   */
  ensureRunning(config: VEConfig, signal?: AbortSignal, onLimitsRestored?: (found: VELimits) => void): Promise<EnsureResult>;
  /**
   * Graceful stop (SIGTERM to init, SIGKILL after timeout), then the runc container is deleted;
   * keeps disk and netns. Afterwards inspect() says state 'absent' with prepared: true.
   */
  ensureStopped(uid: string, opts: StopOptions): Promise<EnsureResult>;
  /** Applies limits live to a running VE (runc update) and records them. */
  updateLimits(uid: string, limits: VELimits, signal?: AbortSignal): Promise<EnsureResult>;
  /** Removes everything the VE has on the host: container, netns, veth, mounts, state dir. */
  destroy(uid: string, opts: StopOptions): Promise<EnsureResult>;
  /** Fresh view of one VE. */
  inspect(uid: string): Promise<VEHostState>;
  /** Every VE this runtime has on the host (for adoption and orphan clean-up). */
  list(): Promise<VEHostState[]>;
  /** Runs a command inside a running VE with inherited stdio; resolves to its exit code. */
  exec(uid: string, argv: string[], opts: ExecOptions): Promise<number>;
  /** Reads the VE's cgroup limit files as the kernel holds them (for checks and drift detection). */
  readLimits(uid: string): Promise<VELimits>;
  /**
   * Usage and failure counters of a VE (cgroup files, netns sockets, fds, statfs). `pid` is
   * the init PID the caller already knows (saves a runc call); without it the runtime asks runc.
   */
  readUsage(uid: string, pid?: number): Promise<VEUsage>;
  /** The VE's disk: applied size/inodes and, while mounted, usage (statfs, cheap). undefined = no disk yet. */
  diskUsage(uid: string): Promise<VEDiskUsage | undefined>;
  /** What this node can do, by feature name (e.g. diskOnlineGrow, diskQuotaUgid, checkpoint), for the agent to publish. */
  nodeFeatures(): Promise<Record<string, NodeFeature>>;
  /**
   * Checkpoints a running VE into its state dir (ves/<uid>/checkpoints/, a retention count kept) and
   * removes its container; disk and netns stay. inspect() then says 'suspended'. A VE that cannot be
   * checkpointed keeps running and the error ('CheckpointFailed') says why (CRIU's reason).
   */
  suspend(uid: string, signal?: AbortSignal): Promise<EnsureResult>;
  /** Restores the newest suspend checkpoint ('unchanged' when already running). A failed restore leaves the checkpoint. */
  resume(config: VEConfig, signal?: AbortSignal): Promise<EnsureResult>;
  readonly migration: VEMigrationRuntime;
  /**
   * Starts (or adopts) the node services VEs rely on — lxcfs, for the VE's own figures in /proc —
   * and supervises them: a dead one is restarted and put back into running VEs. Never fails (VEs
   * run without them; nodeFeatures().lxcfs says why). Optional: runtimes without node services.
   */
  startNodeServices?(): Promise<void>;
  /** Stops supervising; the services keep serving running VEs (only teardownNode ends them). */
  releaseNodeServices?(): void;
}

export interface RuntimeOptions {
  /** Root of this agent's state: templates/, ves/<uid>/, runc/ live under it. */
  stateDir: string;
  /**
   * Node bridge name and its subnet. A bridge that does not exist is created (gateway: the
   * subnet's first address, or `gateway`); an existing one is attached to as it is, never
   * changed or deleted (gateway: `gateway`, else its own address in the subnet, else the first).
   */
  bridge: { name: string; subnet: string; gateway?: string; subnet6?: string };
  log: Logger;
}
