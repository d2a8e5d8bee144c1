// What a kvz client command needs from the outside world, behind one object so tests can run
// commands against a fake API and capture their output: the terminal, the environment, and a
// connection to the API found through the kubeconfig.

import { existsSync, readFileSync } from 'node:fs';
import { homedir, hostname } from 'node:os';
import { join } from 'node:path';
import { VE_RESOURCE, VEM_RESOURCE, VET_RESOURCE, type VEMigration, type VETemplate, type VirtualEnvironment } from '../api/types.js';
import { KvzError } from '../core/errors.js';
import { DEFAULT_STATE_DIR, loadKubeConfig, makeResourceClient, resolveKubeconfigPath, serverOf } from '../core/kube-client.js';
import type { Logger } from '../core/logger.js';
import type { ResourceClient, ResourceRef } from '../core/resource-client.js';
import { kubeApplyTarget, type ApplyTarget } from '../sources/index.js';
import type { VERuntime } from '../runtime/index.js';

export const VE_REF: ResourceRef = { ...VE_RESOURCE, namespaced: true };
export const VEM_REF: ResourceRef = { ...VEM_RESOURCE, namespaced: true };

export interface Connection {
  kubeconfigPath: string;
  server: string;
  target: ApplyTarget;
  ves: ResourceClient<VirtualEnvironment>;
  /** VETemplates (cluster-scoped); optional so older test fakes need not provide it. */
  templates?: ResourceClient<VETemplate>;
  /** VEMigrations; optional so older test fakes need not provide it. */
  migrations?: ResourceClient<VEMigration>;
}

export interface ConnectOptions {
  kubeconfig?: string;
  stateDir?: string;
}

export interface CliIO {
  stdout(s: string): void;
  stderr(s: string): void;
  env: NodeJS.ProcessEnv;
  stdinIsTTY: boolean;
  readStdin(): string;
  now(): Date;
  hostname(): string;
  log: Logger;
  connect(opts: ConnectOptions): Connection;
  /** The host runtime for exec; loaded on demand (it is not needed by the API commands). */
  runtime(opts: { stateDir: string; log: Logger }): Promise<VERuntime>;
  /** Waiting between polls (a fake clock in tests). */
  sleep(ms: number): Promise<void>;
}

/** Where kvz looked for a kubeconfig, in order (for the "not found" message). */
export function kubeconfigCandidates(opts: ConnectOptions, env: NodeJS.ProcessEnv): string[] {
  const out: string[] = [];
  if (opts.kubeconfig) out.push(`--kubeconfig ${opts.kubeconfig}`);
  out.push(env.KUBECONFIG ? `$KUBECONFIG (${env.KUBECONFIG})` : '$KUBECONFIG (not set)');
  if (opts.stateDir) out.push(join(opts.stateDir, 'kubeconfig'));
  out.push(join(DEFAULT_STATE_DIR, 'kubeconfig'), join(homedir(), '.kube', 'config'));
  return out;
}

/** --kubeconfig, then $KUBECONFIG, then --state-dir's kubeconfig, then /var/lib/kubevz/kubeconfig, then ~/.kube/config. */
export function findKubeconfig(opts: ConnectOptions, env: NodeJS.ProcessEnv): string {
  let path = opts.kubeconfig ?? (env.KUBECONFIG?.split(':').find((p) => p && existsSync(p)));
  if (!path && opts.stateDir && existsSync(join(opts.stateDir, 'kubeconfig'))) path = join(opts.stateDir, 'kubeconfig');
  path ??= resolveKubeconfigPath(undefined, { ...env, KUBECONFIG: undefined });
  if (!path) {
    throw new KvzError('NotFound', `no kubeconfig found (looked at: ${kubeconfigCandidates(opts, env).join(', ')}); start the embedded API server with \`kvz up\`, or pass --kubeconfig FILE`);
  }
  return path;
}

export function realConnect(log: Logger, env: NodeJS.ProcessEnv): (opts: ConnectOptions) => Connection {
  return (opts) => {
    const kubeconfigPath = findKubeconfig(opts, env);
    const kc = loadKubeConfig(kubeconfigPath);
    return {
      kubeconfigPath,
      server: serverOf(kc),
      target: kubeApplyTarget(kc, log),
      ves: makeResourceClient<VirtualEnvironment>(kc, VE_REF, log),
      templates: makeResourceClient<VETemplate>(kc, { ...VET_RESOURCE, namespaced: false }, log),
      migrations: makeResourceClient<VEMigration>(kc, VEM_REF, log),
    };
  };
}

/** Errors and warnings of library code go to stderr as single readable lines. */
export function stderrLogger(write: (s: string) => void, level: 'warn' | 'error' = 'warn'): Logger {
  const fmt = (lvl: string, obj: object | string, msg?: string) => {
    const text = typeof obj === 'string' ? obj : msg ?? '';
    const fields = typeof obj === 'object' ? Object.entries(obj).map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`).join(' ') : '';
    write(`${lvl}: ${text}${fields ? ` (${fields})` : ''}\n`);
  };
  const self: Logger = {
    debug() {},
    info() {},
    warn: (o, m) => (level === 'warn' ? fmt('warning', o, m) : undefined),
    error: (o, m) => fmt('error', o, m),
    child: () => self,
  };
  return self;
}

export function processIO(): CliIO {
  const stderr = (s: string) => void process.stderr.write(s);
  const log = stderrLogger(stderr);
  return {
    stdout: (s) => void process.stdout.write(s),
    stderr,
    env: process.env,
    stdinIsTTY: process.stdin.isTTY === true,
    readStdin: () => readFileSync(0, 'utf8'),
    now: () => new Date(),
    hostname: () => hostname(),
    log,
    connect: realConnect(log, process.env),
    runtime: async ({ stateDir, log: rlog }) => {
      const { createRuntime } = await import('../runtime/index.js');
      // exec does not touch networking; the bridge is only needed to create VEs.
      return createRuntime({ stateDir, bridge: { name: 'kvzbr0', subnet: '10.213.0.0/24' }, log: rlog });
    },
    sleep: (ms) => new Promise((r) => setTimeout(r, ms)),
  };
}
