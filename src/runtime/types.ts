// The runtime's contract with the node agent. The runtime knows nothing of Kubernetes: it is
// given plain, already-validated values (bytes, shares, microseconds) keyed by the VE's uid.

import type { Readable, Writable } from 'node:stream';
import type { Logger } from '../core/logger.js';

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
}

export interface VEConfig {
  /** The VE's uid: keys every host artifact (state dir, container id, netns, veth). */
  uid: string;
  /** namespace/name, for logs and annotations only. */
  name: string;
  hostname: string;
  /** Template name; its cache is the lower layer of the VE's root. */
  template: string;
  /** IPv4 CIDRs ("10.213.0.10/24"). */
  addresses: string[];
  limits: VELimits;
}

export type VERunState = 'running' | 'stopped' | 'created' | 'paused' | 'absent';

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

/**
 * One node's VE runtime. Every method is idempotent and safe to repeat after a crash; a
 * multi-step method that fails undoes its partial steps before it throws.
 */
export interface VERuntime {
  /** Builds the template cache if missing; returns its read-only root path. */
  ensureTemplate(name: string, signal?: AbortSignal): Promise<{ rootfs: string; result: EnsureResult }>;
  /** Root fs + netns + CNI + bundle + runc create/start; 'unchanged' when it is already running with this config. */
  ensureRunning(config: VEConfig, signal?: AbortSignal): Promise<EnsureResult>;
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
}

export interface RuntimeOptions {
  /** Root of this agent's state: templates/, ves/<uid>/, runc/ live under it. */
  stateDir: string;
  /** Node bridge name and its subnet (gateway is the first host address). */
  bridge: { name: string; subnet: string };
  log: Logger;
}
