// `kvz up`: the single-host stack in one process — embedded API server, controller, node
// agent and the watched manifest directory. Ctrl-C stops the stack; VEs keep running until
// they are stopped on purpose (the host is the truth, the next `kvz up` adopts them).

import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { startApiServer } from '../apiserver/index.js';
import { DEFAULT_STATE_DIR, loadKubeConfig } from '../core/kube-client.js';
import type { Logger } from '../core/logger.js';
import { BeancounterMetrics, startMetricsServer } from '../node-agent/index.js';
import { createRuntime } from '../runtime/index.js';
import { watchManifestDir } from '../sources/index.js';
import { parseLabels, startLeaderElectedController, startNodeAgent } from './components.js';
import { UP_GIT_OPTIONS, UP_GIT_USAGE, gitBannerLine, parseUpGit, startUpGit, type UpGitOptions } from './up-git.js';
import { logBridge, parseListenAddress } from './controller.js';

export const UP_USAGE = `Usage: kvz up [flags]

Runs the single-host stack: embedded API server, controller, node agent, watched directory.

Flags:
  --state-dir DIR     state (database, PKI, kubeconfig, templates, VEs)   [${DEFAULT_STATE_DIR}]
  --manifests DIR     apply every *.yaml/*.yml in DIR and follow changes  [none]
  --listen HOST:PORT  API server address                                  [127.0.0.1:6443]
  --node-name NAME    this node's name                                    [the host name]
  --bridge NAME       node bridge for VE networking                       [kvzbr0]
  --subnet CIDR       node bridge subnet; VEs without addresses get one   [10.213.0.0/24]
                      (an existing --bridge is attached to, never changed or deleted)
  --gateway IP        VEs' default gateway [an existing bridge's own address in the subnet,
                      else the subnet's first address]
  --subnet6 CIDR      node IPv6 subnet (e.g. fd00:213::/64); VEs without addresses get one
                      from it too, and IPv6 addresses are accepted only with it  [none]
  --node-label K=V    label of this node's VENode, for spec.nodeSelector (repeatable)
  --metrics-listen HOST:PORT  Prometheus endpoint (/metrics) of the node agent [off]
  --migration-listen HOST:PORT  the agent's migration data channel [127.0.0.1:0, a free port]
  --migration-address IP  address other nodes reach the channel at  [the bound address]
  --expedited-rcu=false   leave /sys/kernel/rcu_expedited alone during dumps and restores [on
                      while a VE stands frozen for one, then put back]
${UP_GIT_USAGE}`;

export interface UpOptions {
  stateDir: string;
  manifests?: string;
  /** A Git repository as a source (--git, --branch, --path, --interval). */
  git?: UpGitOptions;
  host: string;
  port: number;
  nodeName: string;
  bridge: string;
  subnet: string;
  /** VEs' default gateway on an existing bridge; see RuntimeOptions.bridge. */
  gateway?: string;
  /** The node's IPv6 subnet; see RuntimeOptions.bridge. */
  subnet6?: string;
  nodeLabels?: Record<string, string>;
  /** Where the node agent serves /metrics; undefined = no endpoint. */
  metrics?: { host: string; port: number };
  /** The node agent's migration data channel (HOST:PORT) and the address it advertises. */
  migrationListen?: string;
  migrationAddress?: string;
  /** Expedited RCU while a VE stands frozen (RuntimeOptions.expediteRcu) [true]. */
  expediteRcu?: boolean;
}

export function parseUpArgs(argv: string[]): UpOptions {
  const { values } = parseArgs({
    args: argv,
    options: {
      'state-dir': { type: 'string', default: DEFAULT_STATE_DIR },
      manifests: { type: 'string' },
      listen: { type: 'string', default: '127.0.0.1:6443' },
      'node-name': { type: 'string', default: hostname() },
      bridge: { type: 'string', default: 'kvzbr0' },
      subnet: { type: 'string', default: '10.213.0.0/24' },
      gateway: { type: 'string' },
      subnet6: { type: 'string' },
      'node-label': { type: 'string', multiple: true },
      'metrics-listen': { type: 'string' },
      'migration-listen': { type: 'string', default: '127.0.0.1:0' },
      'migration-address': { type: 'string' },
      // A string, not a boolean: node's parseArgs takes no `--flag=false` for booleans.
      'expedited-rcu': { type: 'string' },
      ...UP_GIT_OPTIONS,
    },
    strict: true,
  });
  const listen = values.listen!;
  const i = listen.lastIndexOf(':');
  const port = Number(listen.slice(i + 1));
  if (i < 0 || !Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`--listen ${listen}: expected HOST:PORT, for example 127.0.0.1:6443`);
  const rcu = values['expedited-rcu'];
  if (rcu !== undefined && rcu !== 'true' && rcu !== 'false') throw new Error(`--expedited-rcu=${rcu}: expected true or false`);
  return {
    stateDir: resolve(values['state-dir']!),
    manifests: values.manifests ? resolve(values.manifests) : undefined,
    git: parseUpGit(values),
    host: listen.slice(0, i) || '127.0.0.1',
    port,
    nodeName: values['node-name']!,
    bridge: values.bridge!,
    subnet: values.subnet!,
    gateway: values.gateway,
    subnet6: values.subnet6,
    nodeLabels: parseLabels(values['node-label'] ?? [], '--node-label'),
    metrics: values['metrics-listen'] === undefined ? undefined : parseListenAddress(values['metrics-listen'], '--metrics-listen', 'up'),
    migrationListen: values['migration-listen'],
    migrationAddress: values['migration-address'],
    expediteRcu: rcu !== 'false',
  };
}

export interface RunningStack {
  kubeconfigPath: string;
  url: string;
  /** The node agent's /metrics URL when --metrics-listen was given. */
  metricsUrl?: string;
  /** The `git:` banner line (source and applied commit) when --git was given. */
  gitStatusLine?: () => string;
  stop(): Promise<void>;
}

export async function startStack(o: UpOptions, log: Logger): Promise<RunningStack> {
  const stops: (() => Promise<void>)[] = [];
  const stopAll = async () => {
    for (const stop of stops.reverse()) await stop().catch((err) => log.warn({ err: String(err) }, 'stopping a component failed'));
  };
  try {
    const server = await startApiServer({ stateDir: o.stateDir, host: o.host, port: o.port, log });
    stops.push(() => server.close());
    const kc = loadKubeConfig(server.kubeconfigPath);

    // The same construction as `kvz controller` / `kvz node-agent` (components.ts). The identity
    // is stable per node, so a restarted `kvz up` takes its own lease back without waiting.
    const controller = startLeaderElectedController({ kc, log, identity: `${hostname()}_kvz-up-${o.nodeName}`, recampaign: true });
    stops.push(() => controller.stop());

    await logBridge(log, { name: o.bridge, subnet: o.subnet, gateway: o.gateway });
    const runtime = createRuntime({ stateDir: o.stateDir, bridge: { name: o.bridge, subnet: o.subnet, gateway: o.gateway, subnet6: o.subnet6 }, expediteRcu: o.expediteRcu, log: log.child({ component: 'runtime' }) });
    const metrics = o.metrics ? new BeancounterMetrics() : undefined;
    let metricsUrl: string | undefined;
    if (o.metrics && metrics) {
      const ms = await startMetricsServer({ ...o.metrics, registry: metrics.registry, log: log.child({ component: 'metrics' }) });
      stops.push(() => ms.close());
      metricsUrl = ms.url;
    }
    const agent = await startNodeAgent({ kc, log, nodeName: o.nodeName, runtime, stateDir: o.stateDir, bridge: o.bridge, subnet: o.subnet, subnet6: o.subnet6, nodeLabels: o.nodeLabels, metrics, migration: { listen: o.migrationListen ?? '127.0.0.1:0', advertise: o.migrationAddress } });
    stops.push(() => agent.stop());

    // Each source keeps its inventory (what each file applied) under <state-dir>/sources.
    if (o.manifests) {
      const watcher = await watchManifestDir({ dir: o.manifests, kubeconfig: kc, inventoryDir: join(o.stateDir, 'sources'), log: log.child({ component: 'manifests' }) });
      stops.push(() => watcher.close());
    }
    let gitStatusLine: (() => string) | undefined;
    if (o.git) {
      const git = await startUpGit(o.git, kc, o.stateDir, log);
      stops.push(() => git.close());
      gitStatusLine = () => gitBannerLine(git);
    }
    return { kubeconfigPath: server.kubeconfigPath, url: server.url, metricsUrl, gitStatusLine, stop: stopAll };
  } catch (err) {
    await stopAll();
    throw err;
  }
}

export async function runUp(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(UP_USAGE);
    return 0;
  }
  let opts: UpOptions;
  try {
    opts = parseUpArgs(argv);
  } catch (err) {
    process.stderr.write(`error: ${(err as Error).message}\n\n${UP_USAGE}`);
    return 2;
  }
  if (process.getuid?.() !== 0) {
    process.stderr.write('error: kvz up manages namespaces, cgroups and mounts and must run as root (try: sudo npx kvz up)\n');
    return 1;
  }
  const log = pino({ level: process.env.KVZ_LOG_LEVEL ?? 'info' }) as unknown as Logger;
  const stack = await startStack(opts, log);
  process.stderr.write(
    [
      '',
      `kubevz is up: API server ${stack.url}, node ${opts.nodeName}`,
      `  kubeconfig:  ${stack.kubeconfigPath}`,
      `  kubectl:     kubectl --kubeconfig ${stack.kubeconfigPath} get ve`,
      `               (or: export KUBECONFIG=${stack.kubeconfigPath})`,
      `  kvz:         npx kvz get ve    npx kvz exec NAME -- ps aux    npx kvz enter NAME`,
      stack.metricsUrl ? `  metrics:     ${stack.metricsUrl}` : '',
      opts.manifests ? `  watching:    ${opts.manifests} (add, edit or remove *.yaml files)` : '',
      stack.gitStatusLine?.() ?? '',
      '  Ctrl-C stops the stack; VEs keep running.',
      '',
    ].join('\n') + '\n',
  );
  await new Promise<void>((resolveStop) => {
    const onSignal = (sig: string) => {
      log.info({ signal: sig }, 'stopping kubevz');
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      resolveStop();
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
  await stack.stop();
  return 0;
}
