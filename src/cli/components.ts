// How the controller and the node agent are put together from a kubeconfig — one place, used by
// `kvz up`, `kvz controller` and `kvz node-agent`, so all three run the same code path against
// the embedded API server and a real cluster.

import type * as k8s from '@kubernetes/client-node';
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { VE_RESOURCE, VEM_RESOURCE, VENODE_RESOURCE, VET_RESOURCE, type VEMigration, type VENode, type VETemplate, type VirtualEnvironment } from '../api/types.js';
import { Controller, SECRET_REF, type Secret } from '../controller/index.js';
import { errorMessage } from '../core/errors.js';
import { KubeEventRecorder, kubeEventsApi } from '../core/events.js';
import { makeResourceClient } from '../core/kube-client.js';
import { LeaderElector, kubeLeaseApi, type LeaseApi } from '../core/leader-election.js';
import type { Logger } from '../core/logger.js';
import type { ResourceClient } from '../core/resource-client.js';
import { NodeAgent } from '../node-agent/index.js';
import { hostProbe, type BeancounterMetrics, type HostProbe } from '../node-agent/index.js';
import type { VERuntime } from '../runtime/index.js';
import { kvzVersion } from './version.js';

export const DEFAULT_LEASE_NAMESPACE = 'kubevz-system';
export const LEASE_NAME = 'kubevz-controller';

export function veClient(kc: k8s.KubeConfig, log: Logger): ResourceClient<VirtualEnvironment> {
  return makeResourceClient<VirtualEnvironment>(kc, { ...VE_RESOURCE, namespaced: true }, log);
}

export function templateClient(kc: k8s.KubeConfig, log: Logger): ResourceClient<VETemplate> {
  return makeResourceClient<VETemplate>(kc, { ...VET_RESOURCE, namespaced: false }, log);
}

export function nodeClient(kc: k8s.KubeConfig, log: Logger): ResourceClient<VENode> {
  return makeResourceClient<VENode>(kc, { ...VENODE_RESOURCE, namespaced: false }, log);
}

export function migrationClient(kc: k8s.KubeConfig, log: Logger): ResourceClient<VEMigration> {
  return makeResourceClient<VEMigration>(kc, { ...VEM_RESOURCE, namespaced: true }, log);
}

export function secretClient(kc: k8s.KubeConfig, log: Logger): ResourceClient<Secret> {
  return makeResourceClient<Secret>(kc, SECRET_REF, log);
}

/** client-go's identity convention: `<host>_<random>`. */
export function newIdentity(): string {
  return `${hostname()}_${randomBytes(4).toString('hex')}`;
}

export interface ControllerComponentOptions {
  kc: k8s.KubeConfig;
  log: Logger;
  /** Unique per process; a stable one lets a restarted process take its own lease back at once. */
  identity: string;
  leaseNamespace?: string;
  leaseName?: string;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  /** After losing leadership: campaign again (kvz up) or end (kvz controller exits). */
  recampaign: boolean;
  nodeGraceMs?: number;
  /** For tests: a LeaseApi other than client-node's. */
  leaseApi?: LeaseApi;
}

export interface ControllerHandle {
  isLeader(): boolean;
  /** Resolves 'lost' when leadership was lost (and recampaign is off), 'stopped' after stop(). */
  done: Promise<'lost' | 'stopped'>;
  stop(): Promise<void>;
}

/** Runs the controller only while this process holds the leader Lease. */
export function startLeaderElectedController(o: ControllerComponentOptions): ControllerHandle {
  const log = o.log.child({ component: 'controller' });
  const elector = new LeaderElector({
    api: o.leaseApi ?? kubeLeaseApi(o.kc),
    namespace: o.leaseNamespace ?? DEFAULT_LEASE_NAMESPACE,
    name: o.leaseName ?? LEASE_NAME,
    identity: o.identity,
    leaseDurationMs: o.leaseDurationMs,
    renewDeadlineMs: o.renewDeadlineMs,
    retryPeriodMs: o.retryPeriodMs,
    log,
  });
  const abort = new AbortController();
  let leading = false;
  const events = new KubeEventRecorder({ api: kubeEventsApi(o.kc), component: 'kubevz-controller', host: hostname(), log });
  const done = (async (): Promise<'lost' | 'stopped'> => {
    for (;;) {
      await elector.run(
        {
          onStartedLeading: async (signal) => {
            leading = true;
            const controller = new Controller({
              client: veClient(o.kc, log),
              nodes: nodeClient(o.kc, log),
              migrations: migrationClient(o.kc, log),
              secrets: secretClient(o.kc, log),
              events,
              log,
              nodeGraceMs: o.nodeGraceMs,
            });
            try {
              await controller.start();
              await new Promise<void>((r) => (signal.aborted ? r() : signal.addEventListener('abort', () => r(), { once: true })));
            } catch (err) {
              log.error({ err: errorMessage(err) }, 'controller failed to start');
            } finally {
              leading = false;
              await controller.stop();
            }
          },
        },
        abort.signal,
      );
      if (abort.signal.aborted) return 'stopped';
      if (!o.recampaign) return 'lost';
    }
  })();
  return {
    isLeader: () => leading,
    done,
    stop: async () => {
      abort.abort();
      await done;
      await events.flush();
    },
  };
}

export interface AgentComponentOptions {
  kc: k8s.KubeConfig;
  log: Logger;
  nodeName: string;
  runtime: VERuntime;
  stateDir: string;
  bridge: string;
  subnet: string;
  /** The node's IPv6 subnet (`--subnet6`), if any. */
  subnet6?: string;
  nodeLabels?: Record<string, string>;
  heartbeatMs?: number;
  probe?: HostProbe;
  /** Defaults to a client-node client; tests may share one. */
  ves?: ResourceClient<VirtualEnvironment>;
  /** Prometheus gauges for the beancounters (served by --metrics-listen). */
  metrics?: BeancounterMetrics;
  /** Migration source/target roles; `listen` (HOST:PORT) serves the data channel, `advertise` is how other nodes reach it. */
  migration?: { listen?: string; advertise?: string };
}

/** A node agent that registers its VENode, heartbeats and records Events. */
export async function startNodeAgent(o: AgentComponentOptions): Promise<NodeAgent> {
  const events = new KubeEventRecorder({ api: kubeEventsApi(o.kc), component: 'kubevz-node-agent', host: o.nodeName, log: o.log });
  const agent = new NodeAgent({
    nodeName: o.nodeName,
    client: o.ves ?? veClient(o.kc, o.log),
    runtime: o.runtime,
    subnet: o.subnet,
    subnet6: o.subnet6,
    stateDir: o.stateDir,
    log: o.log,
    events,
    metrics: o.metrics,
    templates: templateClient(o.kc, o.log),
    ...(o.migration ? { migrations: { client: migrationClient(o.kc, o.log), secrets: secretClient(o.kc, o.log), listen: o.migration.listen, advertise: o.migration.advertise } } : {}),
    registration: {
      nodes: nodeClient(o.kc, o.log),
      probe: o.probe ?? hostProbe(o.stateDir, o.runtime),
      labels: o.nodeLabels,
      heartbeatMs: o.heartbeatMs,
      nodeInfo: { agentVersion: kvzVersion(), bridge: o.bridge, subnet: o.subnet },
    },
  });
  await agent.start();
  return agent;
}

/** `k=v,k2=v2` or repeated `k=v` → labels; the message says what is wrong. */
export function parseLabels(values: string[], flag: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const v of values.flatMap((s) => s.split(',')).filter(Boolean)) {
    const i = v.indexOf('=');
    if (i <= 0) throw new Error(`${flag} ${v}: expected KEY=VALUE, for example zone=a`);
    out[v.slice(0, i)] = v.slice(i + 1);
  }
  return out;
}
