// The node agent's VENode: registers the node (labels, capacity, allocatable, runtime features,
// host info) and posts a heartbeat (status.heartbeatTime + Ready=True) every heartbeatMs. The
// controller marks the node Ready=Unknown when heartbeats stop. Capacity and features are read
// once at start (a HostProbe, faked in tests; the features are the runtime's own nodeFeatures(),
// with their reasons); a VENode deleted by hand is registered again on the next heartbeat.

import { execFile } from 'node:child_process';
import { accessSync, constants, statfsSync } from 'node:fs';
import { availableParallelism, hostname, release, totalmem } from 'node:os';
import { delimiter, join } from 'node:path';
import { API_VERSION, NODE_LABEL, type NodeFeatures, type VENode } from '../api/types.js';
import { findCondition, setCondition } from '../core/conditions.js';
import { errorCode, errorMessage } from '../core/errors.js';
import { nullRecorder, type EventRecorder } from '../core/events.js';
import type { Logger } from '../core/logger.js';
import type { ResourceClient } from '../core/resource-client.js';
import { detectCgroupVersion, type NodeFeature, type VERuntime } from '../runtime/index.js';

export interface HostCapacity {
  cpuMilli: number;
  memoryBytes: number;
  diskBytes: number;
}

/** What the registration reads from the host. */
export interface HostProbe {
  capacity(): HostCapacity;
  features(): Promise<NodeFeatures>;
  info(): { kernelVersion: string; hostname: string };
}

function onPath(bin: string): boolean {
  return (process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin').split(delimiter).some((dir) => {
    try {
      accessSync(join(dir, bin), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

function run(cmd: string, args: string[], timeoutMs: number): Promise<{ ok: boolean; out: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: timeoutMs }, (err, stdout, stderr) => resolve({ ok: !err, out: `${stdout}${stderr}` }));
  });
}

/** The runtime's own word on what it will do on this node (VERuntime.nodeFeatures). */
export type FeatureSource = Pick<VERuntime, 'nodeFeatures'>;

/** VENode feature name → the runtime's NodeFeature it publishes (runtime/types.ts nodeFeatures()). */
const PUBLISHED = {
  criu: 'checkpoint',
  onlineDiskGrow: 'diskOnlineGrow',
  secondLevelQuota: 'diskQuotaUgid',
  userNamespaces: 'userNamespace',
  lxcfs: 'lxcfs',
} as const satisfies Record<string, string>;

type Published = keyof typeof PUBLISHED;

/**
 * The VENode's features from the runtime's NodeFeatures: `available` as the boolean, `reason` in
 * features.reasons. Never from tool presence: the runtime decides what it will do (a quota tool on
 * PATH does not make the runtime enable second-level quota), so the node says exactly that. A
 * feature the runtime does not report is published unavailable, saying so.
 */
export function publishedFeatures(runtime: Record<string, NodeFeature>, facts: Pick<NodeFeatures, 'cgroupVersion' | 'criuVersion'> = {}): NodeFeatures {
  const out: NodeFeatures = { ...facts };
  const reasons: Partial<Record<Published, string>> = {};
  for (const [name, key] of Object.entries(PUBLISHED) as [Published, string][]) {
    const f = runtime[key];
    out[name] = f?.available ?? false;
    reasons[name] = f?.reason ?? `this node's runtime does not report ${key}`;
  }
  return { ...out, reasons };
}

/**
 * The real host: CPUs, memory, the state dir's filesystem; the features are the runtime's. CRIU
 * is published usable only when `criu check` agrees too (a CRIU new enough can still find this
 * kernel lacking): the controller's live-migration pre-flight relies on it.
 */
export function hostProbe(stateDir: string, runtime: FeatureSource): HostProbe {
  return {
    capacity() {
      const fs = statfsSync(stateDir);
      return { cpuMilli: availableParallelism() * 1000, memoryBytes: totalmem(), diskBytes: fs.bsize * fs.blocks };
    },
    async features() {
      const version = onPath('criu') ? /Version:\s*(\S+)/.exec((await run('criu', ['--version'], 5_000)).out)?.[1] : undefined;
      const features = publishedFeatures(await runtime.nodeFeatures(), { cgroupVersion: detectCgroupVersion(), ...(version ? { criuVersion: version } : {}) });
      if (features.criu) {
        // `criu check` needs root; it is what CRIU itself says about this kernel.
        const check = process.getuid?.() === 0 ? await run('criu', ['check'], 30_000) : { ok: false, out: 'the node agent is not root' };
        if (!check.ok) {
          features.criu = false;
          features.reasons = { ...features.reasons, criu: `\`criu check\` fails on this node: ${check.out.trim().split('\n').at(-1) ?? 'no output'}` };
        }
      }
      return features;
    },
    info() {
      return { kernelVersion: release(), hostname: hostname() };
    },
  };
}

export interface NodeRegistrationOptions {
  nodes: ResourceClient<VENode>;
  nodeName: string;
  probe: HostProbe;
  /** Extra VENode labels (for spec.nodeSelector); kubevz.io/node=<name> is always set. */
  labels?: Record<string, string>;
  /** Kept back from capacity for the host itself (default: memory min(1Gi, 10%), disk 10%). */
  reserved?: Partial<HostCapacity>;
  nodeInfo?: { agentVersion?: string; bridge?: string; subnet?: string };
  heartbeatMs?: number;
  events?: EventRecorder;
  log: Logger;
  now?: () => Date;
}

export class NodeRegistration {
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private registered = false;
  private static_: Record<string, unknown> | undefined;

  constructor(private readonly o: NodeRegistrationOptions) {}

  private now(): Date {
    return this.o.now?.() ?? new Date();
  }

  /** Registers and posts the first heartbeat, then keeps heartbeating. */
  async start(): Promise<void> {
    this.stopped = false;
    await this.register();
    this.schedule();
  }

  /** Stops heartbeating (the controller will mark the node Ready=Unknown after its grace period). */
  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      void this.heartbeat().finally(() => this.schedule());
    }, this.o.heartbeatMs ?? 10_000);
    this.timer.unref?.();
  }

  /** What does not change while the agent runs: capacity, allocatable, features, info. */
  private async staticStatus(): Promise<Record<string, unknown>> {
    if (this.static_) return this.static_;
    const { probe } = this.o;
    const cap = probe.capacity();
    const reserved = {
      cpuMilli: this.o.reserved?.cpuMilli ?? 0,
      memoryBytes: this.o.reserved?.memoryBytes ?? Math.min(1 << 30, Math.floor(cap.memoryBytes * 0.1)),
      diskBytes: this.o.reserved?.diskBytes ?? Math.floor(cap.diskBytes * 0.1),
    };
    const ki = (n: number) => `${Math.max(0, Math.floor(n / 1024))}Ki`;
    const cpu = (m: number) => (m % 1000 === 0 ? String(Math.max(0, m) / 1000) : `${Math.max(0, m)}m`);
    const features = await probe.features();
    this.static_ = {
      capacity: { cpu: cpu(cap.cpuMilli), memory: ki(cap.memoryBytes), disk: ki(cap.diskBytes) },
      allocatable: { cpu: cpu(cap.cpuMilli - reserved.cpuMilli), memory: ki(cap.memoryBytes - reserved.memoryBytes), disk: ki(cap.diskBytes - reserved.diskBytes) },
      features,
      nodeInfo: { ...probe.info(), ...this.o.nodeInfo },
    };
    return this.static_;
  }

  /** Creates the VENode if needed, sets its labels, and writes the full status. Idempotent. */
  async register(): Promise<void> {
    const { nodes, nodeName, log } = this.o;
    const labels = { [NODE_LABEL]: nodeName, ...this.o.labels };
    let node = await nodes.get(nodeName);
    if (!node) {
      try {
        node = await nodes.create({ apiVersion: API_VERSION, kind: 'VENode', metadata: { name: nodeName, labels }, spec: {} });
        log.info({ node: nodeName }, 'registered the node');
        (this.o.events ?? nullRecorder).event(node, 'Normal', 'Registered', `node agent registered node ${nodeName}`);
      } catch (err) {
        if (errorCode(err) !== 'AlreadyExists') throw err;
        node = (await nodes.get(nodeName))!;
      }
    } else if (Object.entries(labels).some(([k, v]) => node!.metadata.labels?.[k] !== v)) {
      node = await nodes.mergePatch(nodeName, undefined, { metadata: { labels } });
    }
    const status = { ...(await this.staticStatus()), ...this.heartbeatPatch(node) };
    await nodes.patchStatus(nodeName, undefined, status);
    this.registered = true;
  }

  private heartbeatPatch(node: VENode): Record<string, unknown> {
    const now = this.now();
    const patch: Record<string, unknown> = { heartbeatTime: now.toISOString(), observedGeneration: node.metadata.generation ?? 1 };
    const ready = findCondition(node.status?.conditions, 'Ready');
    if (ready?.status !== 'True') {
      patch.conditions = setCondition(node.status?.conditions, { type: 'Ready', status: 'True', reason: 'AgentReady', message: 'the node agent is posting heartbeats', observedGeneration: node.metadata.generation ?? 1 }, now);
      if (ready) (this.o.events ?? nullRecorder).event(node, 'Normal', 'NodeReady', `node ${node.metadata.name} is Ready again (was ${ready.status}: ${ready.reason})`);
    }
    return patch;
  }

  /** One heartbeat; failures are logged and the next one tries again. */
  async heartbeat(): Promise<void> {
    const { nodes, nodeName, log } = this.o;
    try {
      if (!this.registered) return await this.register();
      const node = await nodes.get(nodeName);
      if (!node) {
        log.warn({ node: nodeName }, 'the VENode was deleted; registering again');
        return await this.register();
      }
      await nodes.patchStatus(nodeName, undefined, this.heartbeatPatch(node));
    } catch (err) {
      log.warn({ node: nodeName, err: errorMessage(err) }, 'heartbeat failed; will retry');
    }
  }
}
