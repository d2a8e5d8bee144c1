// `kvz controller` and `kvz node-agent`: the long-running entry points the real-cluster
// manifests run (controller Deployment, agent DaemonSet). Both connect through a kubeconfig
// (or the in-cluster service account) and log JSON lines (pino) to stdout.

import * as k8s from '@kubernetes/client-node';
import { resolve } from 'node:path';
import { pino } from 'pino';
import { DEFAULT_STATE_DIR, loadKubeConfig, withKeepAlive } from '../core/kube-client.js';
import type { Logger } from '../core/logger.js';
import { BeancounterMetrics, startMetricsServer } from '../node-agent/index.js';
import { createRuntime, nodeBridgeAttachment } from '../runtime/index.js';
import { CONNECTION_FLAGS, UsageError, boolFlag, listFlag, parseArgs, parseDuration, stringFlag, type FlagSpec, type ParsedArgs } from './args.js';
import { DEFAULT_LEASE_NAMESPACE, newIdentity, parseLabels, startLeaderElectedController, startNodeAgent } from './components.js';
import { findKubeconfig } from './context.js';

function kubeConfigFor(args: ParsedArgs): { kc: k8s.KubeConfig; where: string } {
  const explicit = stringFlag(args, 'kubeconfig');
  // In a pod without a kubeconfig: the service account, as every controller does.
  if (!explicit && !process.env.KUBECONFIG && process.env.KUBERNETES_SERVICE_HOST) {
    const kc = new k8s.KubeConfig();
    kc.loadFromCluster();
    return { kc: withKeepAlive(kc), where: 'in-cluster service account' };
  }
  const path = findKubeconfig({ kubeconfig: explicit, stateDir: stringFlag(args, 'state-dir') }, process.env);
  return { kc: loadKubeConfig(path), where: path };
}

function makeLogger(): Logger {
  return pino({ level: process.env.KVZ_LOG_LEVEL ?? 'info' }) as unknown as Logger;
}

function untilSignal(log: Logger): { promise: Promise<string>; dispose(): void } {
  let onSignal!: (sig: string) => void;
  const promise = new Promise<string>((r) => {
    onSignal = (sig: string) => {
      log.info({ signal: sig }, 'stopping');
      r(sig);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
  return {
    promise,
    dispose: () => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    },
  };
}

const CONTROLLER_FLAGS: FlagSpec[] = [
  ...CONNECTION_FLAGS,
  { name: 'lease-namespace', type: 'string' },
  { name: 'identity', type: 'string' },
  { name: 'lease-duration', type: 'string' },
  { name: 'renew-deadline', type: 'string' },
  { name: 'retry-period', type: 'string' },
  { name: 'node-grace', type: 'string' },
];

/** Exit codes: 0 after SIGINT/SIGTERM, 1 when leadership was lost (the Deployment restarts it). */
export async function runController(argv: string[]): Promise<number> {
  const args = parseArgs(argv, CONTROLLER_FLAGS, 'controller');
  if (args.positionals.length) throw new UsageError(`unexpected argument "${args.positionals[0]}"`, 'controller');
  const dur = (name: string) => {
    const v = stringFlag(args, name);
    return v === undefined ? undefined : parseDuration(v, `--${name}`);
  };
  const { kc, where } = kubeConfigFor(args);
  const log = makeLogger();
  const identity = stringFlag(args, 'identity') ?? newIdentity();
  const leaseNamespace = stringFlag(args, 'lease-namespace') ?? process.env.POD_NAMESPACE ?? DEFAULT_LEASE_NAMESPACE;
  log.info({ kubeconfig: where, server: kc.getCurrentCluster()?.server, identity, lease: `${leaseNamespace}/kubevz-controller` }, 'kvz controller starting; campaigning for the leader lease');
  const handle = startLeaderElectedController({
    kc, log, identity, leaseNamespace, recampaign: false,
    leaseDurationMs: dur('lease-duration'), renewDeadlineMs: dur('renew-deadline'), retryPeriodMs: dur('retry-period'), nodeGraceMs: dur('node-grace'),
  });
  const sig = untilSignal(log);
  const outcome = await Promise.race([sig.promise.then(() => 'signal' as const), handle.done]);
  sig.dispose();
  await handle.stop();
  if (outcome === 'lost') {
    log.error('leadership lost; exiting so that a fresh process campaigns again');
    return 1;
  }
  return 0;
}

const AGENT_FLAGS: FlagSpec[] = [
  ...CONNECTION_FLAGS,
  { name: 'node-name', type: 'string' },
  { name: 'bridge', type: 'string' },
  { name: 'subnet', type: 'string' },
  { name: 'gateway', type: 'string' },
  { name: 'subnet6', type: 'string' },
  { name: 'node-label', type: 'string', multiple: true },
  { name: 'heartbeat', type: 'string' },
  { name: 'migration-listen', type: 'string' },
  { name: 'migration-address', type: 'string' },
  { name: 'metrics-listen', type: 'string' },
  { name: 'expedited-rcu', type: 'boolean' },
];

/** `HOST:PORT` (`[::1]:9464`, `:9464` = 127.0.0.1) of a listening flag, or a UsageError naming the flag. */
export function parseListenAddress(value: string, flag: string, command: string): { host: string; port: number } {
  const i = value.lastIndexOf(':');
  const portText = value.slice(i + 1);
  const port = Number(portText);
  if (i < 0 || !/^\d+$/.test(portText) || port > 65535) throw new UsageError(`${flag} ${value}: expected HOST:PORT, for example 0.0.0.0:9464`, command);
  return { host: value.slice(0, i).replace(/^\[|\]$/g, '') || '127.0.0.1', port };
}

function metricsListenOf(args: ParsedArgs): { host: string; port: number } | undefined {
  const v = stringFlag(args, 'metrics-listen');
  return v === undefined ? undefined : parseListenAddress(v, '--metrics-listen', 'node-agent');
}

/** The node agent's Prometheus endpoint from its command line; undefined = none (the default). */
export function agentMetricsListen(argv: string[]): { host: string; port: number } | undefined {
  return metricsListenOf(parseArgs(argv, AGENT_FLAGS, 'node-agent'));
}

export async function runNodeAgent(argv: string[]): Promise<number> {
  const args = parseArgs(argv, AGENT_FLAGS, 'node-agent');
  if (args.positionals.length) throw new UsageError(`unexpected argument "${args.positionals[0]}"`, 'node-agent');
  const nodeName = stringFlag(args, 'node-name') ?? process.env.NODE_NAME;
  if (!nodeName) throw new UsageError('node-agent needs --node-name NAME (or $NODE_NAME, as the DaemonSet sets it)', 'node-agent');
  let labels: Record<string, string>;
  try {
    labels = parseLabels(listFlag(args, 'node-label'), '--node-label');
  } catch (err) {
    throw new UsageError((err as Error).message, 'node-agent');
  }
  const metricsListen = metricsListenOf(args);
  if (process.getuid?.() !== 0) {
    process.stderr.write('error: kvz node-agent manages namespaces, cgroups and mounts and must run as root\n');
    return 1;
  }
  const stateDir = resolve(stringFlag(args, 'state-dir') ?? DEFAULT_STATE_DIR);
  const bridge = stringFlag(args, 'bridge') ?? 'kvzbr0';
  const subnet = stringFlag(args, 'subnet') ?? '10.213.0.0/24';
  const gateway = stringFlag(args, 'gateway');
  const subnet6 = stringFlag(args, 'subnet6');
  const heartbeat = stringFlag(args, 'heartbeat');
  const { kc, where } = kubeConfigFor(args);
  const log = makeLogger().child({ node: nodeName });
  log.info({ kubeconfig: where, server: kc.getCurrentCluster()?.server, stateDir, bridge, subnet }, 'kvz node-agent starting');
  await logBridge(log, { name: bridge, subnet, gateway });
  const runtime = createRuntime({ stateDir, bridge: { name: bridge, subnet, gateway, subnet6 }, expediteRcu: boolFlag(args, 'expedited-rcu', true), log: log.child({ component: 'runtime' }) });
  // As in `kvz up`: the gauges exist only with an endpoint, so an agent without one pays nothing.
  const metrics = metricsListen ? new BeancounterMetrics() : undefined;
  const metricsServer = metricsListen && metrics ? await startMetricsServer({ ...metricsListen, registry: metrics.registry, log: log.child({ component: 'metrics' }) }) : undefined;
  try {
    const agent = await startNodeAgent({ kc, log, nodeName, runtime, stateDir, bridge, subnet, subnet6, nodeLabels: labels, metrics, heartbeatMs: heartbeat ? parseDuration(heartbeat, '--heartbeat') : undefined, migration: { listen: stringFlag(args, 'migration-listen'), advertise: stringFlag(args, 'migration-address') } });
    const sig = untilSignal(log);
    await sig.promise;
    sig.dispose();
    await agent.stop();
  } finally {
    await metricsServer?.close();
  }
  return 0;
}

/** Says at start whether VEs go onto an existing bridge (left as it is) or one kubevz makes. */
export async function logBridge(log: Logger, bridge: { name: string; subnet: string; gateway?: string }): Promise<void> {
  const a = await nodeBridgeAttachment(bridge);
  if (a.managed) log.info({ bridge: a.name, gateway: a.gateway, exists: a.exists }, 'VEs attach to a bridge kubevz manages (created with the gateway address on first use)');
  else log.info({ bridge: a.name, gateway: a.gateway }, 'VEs attach to an existing bridge; kubevz will not change or delete it');
}
