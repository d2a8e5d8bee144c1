// Starts `kvz up` as a child process in a temporary state dir with unique node, bridge and
// subnet names, and drives it with real kubectl and the kvz CLI. Cleanup deletes what the
// test created, stops the stack by its recorded PID, and removes the bridge and state dir.

import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { uniqueSuffix } from './prereq.js';
import { teardownNode } from '../../src/runtime/index.js';

const run = promisify(execFile);
export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
export const kvzBin = join(repoRoot, 'dist/src/bin/kvz.js');

export async function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => res(port));
    });
    srv.on('error', rej);
  });
}

export interface Stack {
  stateDir: string;
  manifests: string;
  kubeconfig: string;
  nodeName: string;
  bridge: string;
  subnet: string;
  /** Third octet of the subnet 10.213.N.0/24, for addresses in tests. */
  net: number;
  port: number;
  proc: ChildProcess;
  logs: string[];
  kubectl(args: string[], opts?: { allowFail?: boolean; input?: string }): Promise<{ stdout: string; stderr: string; code: number }>;
  kvz(args: string[], opts?: { allowFail?: boolean; input?: string }): Promise<{ stdout: string; stderr: string; code: number }>;
  stop(): Promise<void>;
}

async function runCmd(cmd: string, args: string[], env: NodeJS.ProcessEnv, allowFail: boolean, input?: string) {
  try {
    const p = run(cmd, args, { env, maxBuffer: 16 << 20, timeout: 120_000 });
    if (input !== undefined) p.child.stdin?.end(input);
    const { stdout, stderr } = await p;
    return { stdout, stderr, code: 0 };
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; code?: number };
    if (!allowFail) throw new Error(`${cmd} ${args.join(' ')} failed (${e.code}): ${e.stderr}${e.stdout}`);
    return { stdout: e.stdout ?? '', stderr: e.stderr ?? '', code: typeof e.code === 'number' ? e.code : 1 };
  }
}

export async function startKvzUp(opts: { manifestsDir?: string; extraArgs?: string[]; /** Third octet of the subnet, when the test must know it before start. */ net?: number; /** Flags for node itself (e.g. --cpu-prof in benchmarks). */ nodeArgs?: string[]; /** KVZ_LOG_LEVEL of the stack (default debug, for test failure output). */ logLevel?: string } = {}): Promise<Stack> {
  const id = uniqueSuffix();
  const stateDir = mkdtempSync(join(tmpdir(), 'kvz-e2e-'));
  const manifests = opts.manifestsDir ?? mkdtempSync(join(tmpdir(), 'kvz-e2e-manifests-'));
  const port = await freePort();
  const net = opts.net ?? 100 + Math.floor(Math.random() * 150);
  const nodeName = `e2e-${id}`;
  const bridge = `kvzb${id}`.slice(0, 15);
  const subnet = `10.213.${net}.0/24`;
  const logs: string[] = [];
  const proc = spawn(
    process.execPath,
    [...(opts.nodeArgs ?? []), kvzBin, 'up', '--state-dir', stateDir, '--manifests', manifests, '--listen', `127.0.0.1:${port}`, '--node-name', nodeName, '--bridge', bridge, '--subnet', subnet, ...(opts.extraArgs ?? [])],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, KVZ_LOG_LEVEL: opts.logLevel ?? 'debug' } },
  );
  proc.stdout!.on('data', (d) => logs.push(String(d)));
  proc.stderr!.on('data', (d) => logs.push(String(d)));
  const kubeconfig = join(stateDir, 'kubeconfig');
  const home = join(stateDir, 'kubectl-home');
  const env = { ...process.env, HOME: home, KUBECONFIG: kubeconfig };

  const deadline = Date.now() + 60_000;
  while (!logs.join('').includes('kubevz is up')) {
    if (proc.exitCode !== null) throw new Error(`kvz up exited with ${proc.exitCode}:\n${logs.join('')}`);
    if (Date.now() > deadline) throw new Error(`kvz up did not come up in 60 s:\n${logs.join('')}`);
    await new Promise((r) => setTimeout(r, 100));
  }

  const stack: Stack = {
    stateDir, manifests, kubeconfig, nodeName, bridge, subnet, net, port, proc, logs,
    kubectl: (args, o = {}) => runCmd('kubectl', ['--kubeconfig', kubeconfig, ...args], env, o.allowFail ?? false, o.input),
    kvz: (args, o = {}) => runCmd(process.execPath, [kvzBin, '--kubeconfig', kubeconfig, ...args], env, o.allowFail ?? false, o.input),
    async stop() {
      if (proc.exitCode === null) {
        const exited = new Promise((r) => proc.once('exit', r));
        proc.kill('SIGTERM');
        await Promise.race([exited, new Promise((r) => setTimeout(r, 15_000))]);
        if (proc.exitCode === null) proc.kill('SIGKILL');
      }
      await run('ip', ['link', 'del', bridge]).catch(() => {});
      // The node's lxcfs outlives `kvz up` (as VEs do; its FUSE mount is under the state dir), and
      // so do the parking bridge and the anti-spoofing tables.
      await teardownNode({ bridge, stateDir }).catch(() => {});
      if (existsSync(stateDir)) rmSync(stateDir, { recursive: true, force: true });
      if (!opts.manifestsDir) rmSync(manifests, { recursive: true, force: true });
    },
  };
  return stack;
}

export async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

export async function sh(cmd: string, args: string[]): Promise<string> {
  return (await run(cmd, args, { maxBuffer: 16 << 20 })).stdout;
}
