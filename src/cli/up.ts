// `kvz up`: the single-host stack in one process — embedded API server, controller, node
// agent and the watched manifest directory. Ctrl-C stops the stack; VEs keep running until
// they are stopped on purpose (the host is the truth, the next `kvz up` adopts them).

import { hostname } from 'node:os';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { VE_RESOURCE, type VirtualEnvironment } from '../api/types.js';
import { startApiServer } from '../apiserver/index.js';
import { Controller } from '../controller/index.js';
import { DEFAULT_STATE_DIR, loadKubeConfig, makeResourceClient } from '../core/kube-client.js';
import type { Logger } from '../core/logger.js';
import { NodeAgent } from '../node-agent/index.js';
import { createRuntime } from '../runtime/index.js';
import { watchManifestDir } from '../sources/index.js';

export const UP_USAGE = `Usage: kvz up [flags]

Runs the single-host stack: embedded API server, controller, node agent, watched directory.

Flags:
  --state-dir DIR     state (database, PKI, kubeconfig, templates, VEs)   [${DEFAULT_STATE_DIR}]
  --manifests DIR     apply every *.yaml/*.yml in DIR and follow changes  [none]
  --listen HOST:PORT  API server address                                  [127.0.0.1:6443]
  --node-name NAME    this node's name                                    [the host name]
  --bridge NAME       node bridge for VE networking                       [kvzbr0]
  --subnet CIDR       node bridge subnet; VEs without addresses get one   [10.213.0.0/24]
`;

export interface UpOptions {
  stateDir: string;
  manifests?: string;
  host: string;
  port: number;
  nodeName: string;
  bridge: string;
  subnet: string;
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
    },
    strict: true,
  });
  const listen = values.listen!;
  const i = listen.lastIndexOf(':');
  const port = Number(listen.slice(i + 1));
  if (i < 0 || !Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`--listen ${listen}: expected HOST:PORT, for example 127.0.0.1:6443`);
  return {
    stateDir: resolve(values['state-dir']!),
    manifests: values.manifests ? resolve(values.manifests) : undefined,
    host: listen.slice(0, i) || '127.0.0.1',
    port,
    nodeName: values['node-name']!,
    bridge: values.bridge!,
    subnet: values.subnet!,
  };
}

export interface RunningStack {
  kubeconfigPath: string;
  url: string;
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
    const ves = makeResourceClient<VirtualEnvironment>(kc, { ...VE_RESOURCE, namespaced: true }, log);

    const controller = new Controller({ client: ves, defaultNode: o.nodeName, log });
    await controller.start();
    stops.push(() => controller.stop());

    const runtime = createRuntime({ stateDir: o.stateDir, bridge: { name: o.bridge, subnet: o.subnet }, log: log.child({ component: 'runtime' }) });
    const agent = new NodeAgent({ nodeName: o.nodeName, client: ves, runtime, subnet: o.subnet, log });
    await agent.start();
    stops.push(() => agent.stop());

    if (o.manifests) {
      const watcher = await watchManifestDir({ dir: o.manifests, kubeconfig: kc, log: log.child({ component: 'manifests' }) });
      stops.push(() => watcher.close());
    }
    return { kubeconfigPath: server.kubeconfigPath, url: server.url, stop: stopAll };
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
      opts.manifests ? `  watching:    ${opts.manifests} (add, edit or remove *.yaml files)` : '',
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
