// Multi-node kubevz on one machine: one embedded API server, the controller (`kvz controller`)
// and N real node agents (`kvz node-agent`), each agent in its own network namespace as its
// "host", with its own state dir and its own node bridge (created here, so the agent attaches to
// an existing bridge as on a LAN host). Each node netns has an uplink veth into a shared fabric
// bridge in the root namespace; the root ns routes each node's VE subnet via that node's uplink
// address, and every node routes the others' subnets the same way, so every VE is reachable
// from the root namespace (and from every other node) at its address.
//
// Agents run under `nsenter --net=/run/netns/NODE` — network namespace only, the host's mount
// namespace kept. `ip netns exec` would give each agent a private mount namespace with a fresh
// /sys (hiding /sys/fs/cgroup, which runc needs) and make every mount the agent makes (VE netns
// bind mounts, overlay roots) private to that process: an agent restarted in a new namespace
// could then no longer see, adopt or clean up its running VEs.
//
// Every host object carries the run id; everything made is recorded in DIR/cluster.json before
// it is made, so `teardownCluster(DIR)` (hack/multinode.sh down) removes it all, even after a crash.
//
// Also a CLI (used by hack/multinode.sh):
//   node dist/test/helpers/multinode.js serve --nodes N --dir DIR   runs in the foreground until SIGTERM
//   node dist/test/helpers/multinode.js down --dir DIR              stops and removes everything
//   node dist/test/helpers/multinode.js destroy-node ...            (internal: run inside a node netns)

import { execFile, spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { pathToFileURL } from 'node:url';
import { startApiServer, type RunningApiServer } from '../../src/apiserver/index.js';
import { silentLogger } from '../../src/core/logger.js';
import { createRuntime } from '../../src/runtime/index.js';
import { kvzBin } from './kvz-up.js';
import { uniqueSuffix } from './prereq.js';

const execFileP = promisify(execFile);

export interface NodeHost {
  name: string;
  /** The node's "host": a network namespace. */
  netns: string;
  stateDir: string;
  /** The node bridge inside the netns (made by the harness: the agent attaches to it as it is). */
  bridge: string;
  subnet: string;
  /** The node bridge's address: the VEs' gateway. */
  gateway: string;
  /** Root-ns end of the uplink veth (a port of the fabric bridge). */
  uplinkRoot: string;
  /** The node's address on the fabric (its uplink, inside the netns). */
  uplinkAddress: string;
  logFile: string;
  /** PID of the running agent (the node process itself: nsenter execs it). */
  agentPid?: number;
}

export interface ClusterState {
  id: string;
  dir: string;
  fabric: { bridge: string; subnet: string; address: string };
  kubeconfig?: string;
  controllerPid?: number;
  /** PID of the `serve` process when run from the CLI. */
  servePid?: number;
  nodes: NodeHost[];
}

export interface Cluster {
  state: ClusterState;
  kubeconfig: string;
  server: RunningApiServer;
  startAgent(name: string): Promise<void>;
  /** SIGTERM to the agent by its recorded PID; its VEs keep running. */
  stopAgent(name: string): Promise<void>;
  /** Stops everything and removes every host object and the run directory. */
  stop(): Promise<void>;
}

export interface ClusterOptions {
  nodes: number;
  /** Run directory (state, logs, cluster.json); created. */
  dir: string;
  /** Agent heartbeat and controller node grace, for fast NotReady in tests. */
  heartbeat?: string;
  nodeGrace?: string;
  logLevel?: string;
}

async function sh(cmd: string, args: string[], opts: { allowFail?: boolean } = {}): Promise<string> {
  try {
    return (await execFileP(cmd, args, { maxBuffer: 16 << 20 })).stdout;
  } catch (err) {
    if (opts.allowFail) return '';
    const e = err as { stderr?: string; code?: number };
    throw new Error(`${cmd} ${args.join(' ')} failed (exit ${e.code}): ${e.stderr ?? String(err)}`);
  }
}

function save(s: ClusterState): void {
  writeFileSync(join(s.dir, 'cluster.json'), `${JSON.stringify(s, null, 2)}\n`);
}

export function loadState(dir: string): ClusterState | undefined {
  const f = join(dir, 'cluster.json');
  return existsSync(f) ? (JSON.parse(readFileSync(f, 'utf8')) as ClusterState) : undefined;
}

/** Third octets not used by any route on this host (another run, another test). */
async function freeOctets(prefix: string, count: number): Promise<number> {
  const routes = await sh('ip', ['-4', 'route', 'show']);
  for (let tries = 0; tries < 50; tries++) {
    const base = 20 + Math.floor(Math.random() * (230 - count));
    let clash = false;
    for (let i = 0; i < count; i++) if (routes.includes(`${prefix}.${base + i}.`)) clash = true;
    if (!clash) return base;
  }
  throw new Error(`no free ${prefix}.x.0/24 range for ${count} subnets; remove stale routes (ip route) or stop other runs`);
}

function alive(pid: number | undefined): boolean {
  if (!pid) return false;
  try {
    process.kill(pid, 0);
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** SIGTERM by recorded PID, SIGKILL after the timeout. */
async function stopPid(pid: number | undefined, timeoutMs = 10_000): Promise<void> {
  if (!alive(pid)) return;
  process.kill(pid!, 'SIGTERM');
  const deadline = Date.now() + timeoutMs;
  while (alive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  if (alive(pid)) process.kill(pid!, 'SIGKILL');
  while (alive(pid)) await new Promise((r) => setTimeout(r, 20));
}

export async function startCluster(o: ClusterOptions): Promise<Cluster> {
  if (o.nodes < 1 || o.nodes > 20) throw new Error(`--nodes ${o.nodes}: give 1 to 20`);
  const dir = resolve(o.dir);
  mkdirSync(dir, { recursive: true });
  // VEs run in user namespaces: their mapped root must be able to walk down to the VE roots.
  chmodSync(dir, 0o711);
  const id = uniqueSuffix().slice(0, 7);
  const f = await freeOctets('10.212', 1);
  const base = await freeOctets('10.213', o.nodes);
  const state: ClusterState = {
    id, dir,
    fabric: { bridge: `kvzf${id}`, subnet: `10.212.${f}.0/24`, address: `10.212.${f}.1` },
    nodes: Array.from({ length: o.nodes }, (_, i) => ({
      name: `node-${i}-${id}`,
      netns: `kvzh${id}n${i}`,
      stateDir: join(dir, 'nodes', `node-${i}`),
      bridge: 'kvzbr0',
      subnet: `10.213.${base + i}.0/24`,
      gateway: `10.213.${base + i}.1`,
      uplinkRoot: `kvzu${id}${i}`.slice(0, 15),
      uplinkAddress: `10.212.${f}.${10 + i}`,
      logFile: join(dir, 'nodes', `node-${i}`, 'agent.log'),
    })),
  };
  save(state);
  let server: RunningApiServer | undefined;
  try {
    // Fabric bridge in the root namespace; the API server listens on its address.
    await sh('ip', ['link', 'add', state.fabric.bridge, 'type', 'bridge']);
    await sh('ip', ['addr', 'add', `${state.fabric.address}/24`, 'dev', state.fabric.bridge]);
    await sh('ip', ['link', 'set', state.fabric.bridge, 'up']);
    for (const n of state.nodes) {
      mkdirSync(n.stateDir, { recursive: true });
      await sh('ip', ['netns', 'add', n.netns]);
      await sh('ip', ['link', 'add', n.uplinkRoot, 'type', 'veth', 'peer', 'name', 'uplink0', 'netns', n.netns]);
      await sh('ip', ['link', 'set', n.uplinkRoot, 'master', state.fabric.bridge, 'up']);
      const batch = [
        `link set lo up`,
        `addr add ${n.uplinkAddress}/24 dev uplink0`,
        `link set uplink0 up`,
        `link add ${n.bridge} type bridge`,
        `addr add ${n.gateway}/24 dev ${n.bridge}`,
        `link set ${n.bridge} up`,
        ...state.nodes.filter((m) => m !== n).map((m) => `route add ${m.subnet} via ${m.uplinkAddress} dev uplink0`),
      ];
      await ipBatch(['-n', n.netns], batch);
      // The node forwards between its uplink and its VE bridge (per-netns sysctl; the host's is untouched).
      await sh('nsenter', [`--net=/run/netns/${n.netns}`, 'sysctl', '-q', '-w', 'net.ipv4.ip_forward=1']);
      await sh('ip', ['route', 'add', n.subnet, 'via', n.uplinkAddress, 'dev', state.fabric.bridge]);
    }
    server = await startApiServer({ stateDir: join(dir, 'api'), host: state.fabric.address, port: 0, log: silentLogger });
    state.kubeconfig = server.kubeconfigPath;
    save(state);
    const env = { ...process.env, KVZ_LOG_LEVEL: o.logLevel ?? 'info' };
    const ctlLog = openSync(join(dir, 'controller.log'), 'a');
    const ctl = spawn(process.execPath, [kvzBin, 'controller', '--kubeconfig', server.kubeconfigPath, '--identity', `harness-${id}`, '--node-grace', o.nodeGrace ?? '40s'], {
      stdio: ['ignore', ctlLog, ctlLog], env, detached: true,
    });
    ctl.unref();
    state.controllerPid = ctl.pid;
    save(state);

    const kubeconfig = server.kubeconfigPath;
    const startAgent = async (name: string): Promise<void> => {
      const n = state.nodes.find((x) => x.name === name);
      if (!n) throw new Error(`no node ${name} in this cluster`);
      if (alive(n.agentPid)) return;
      const out = openSync(n.logFile, 'a');
      const p = spawn(
        'nsenter',
        [`--net=/run/netns/${n.netns}`, '--', process.execPath, kvzBin, 'node-agent', '--kubeconfig', kubeconfig, '--node-name', n.name,
          '--state-dir', n.stateDir, '--bridge', n.bridge, '--subnet', n.subnet, '--heartbeat', o.heartbeat ?? '10s', '--node-label', `kubevz.io/harness=${id}`],
        { stdio: ['ignore', out, out], env, detached: true },
      );
      p.unref();
      n.agentPid = p.pid;
      save(state);
      // Up once it logs that it started (registration done).
      const deadline = Date.now() + 60_000;
      while (!readFileSync(n.logFile, 'utf8').includes('node agent started')) {
        if (!alive(p.pid)) throw new Error(`node agent ${name} exited; see ${n.logFile}:\n${readFileSync(n.logFile, 'utf8').slice(-2000)}`);
        if (Date.now() > deadline) throw new Error(`node agent ${name} did not start in 60 s; see ${n.logFile}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    };
    await Promise.all(state.nodes.map((n) => startAgent(n.name)));
    const srv = server;
    return {
      state, kubeconfig, server: srv, startAgent,
      async stopAgent(name) {
        const n = state.nodes.find((x) => x.name === name);
        await stopPid(n?.agentPid);
      },
      async stop() {
        await teardownCluster(dir, { server: srv });
      },
    };
  } catch (err) {
    await teardownCluster(dir, { server }).catch(() => undefined);
    throw err;
  }
}

async function ipBatch(prefix: string[], lines: string[]): Promise<void> {
  await new Promise<void>((res, rej) => {
    const p = execFile('ip', [...prefix, '-batch', '-'], (err, _out, stderr) => (err ? rej(new Error(`ip ${prefix.join(' ')} -batch failed: ${stderr}\n${lines.join('\n')}`)) : res()));
    p.stdin!.end(`${lines.join('\n')}\n`);
  });
}

/**
 * Stops and removes everything a cluster made, from DIR/cluster.json: agents, controller and
 * serve process (by recorded PID), every VE on every node (runc, cgroups, mounts, VE netns —
 * destroyed by the runtime run inside the node's netns), the node netns, uplinks, fabric
 * bridge and routes, then DIR. Idempotent; safe after a crash half-way through start.
 */
export async function teardownCluster(dir: string, o: { server?: RunningApiServer } = {}): Promise<void> {
  const state = loadState(dir);
  if (!state) {
    await o.server?.close();
    return;
  }
  if (state.servePid && state.servePid !== process.pid) await stopPid(state.servePid, 30_000);
  for (const n of state.nodes) await stopPid(n.agentPid);
  await stopPid(state.controllerPid);
  await o.server?.close();
  const errors: string[] = [];
  for (const n of state.nodes) {
    if (!existsSync(n.stateDir)) continue;
    const inNs = existsSync(`/run/netns/${n.netns}`) ? ['nsenter', `--net=/run/netns/${n.netns}`, '--'] : [];
    const argv = [...inNs, process.execPath, helperPath(), 'destroy-node', '--state-dir', n.stateDir, '--bridge', n.bridge, '--subnet', n.subnet];
    try {
      await sh(argv[0]!, argv.slice(1));
    } catch (err) {
      errors.push(String(err));
    }
  }
  for (const n of state.nodes) {
    // The root end first, synchronously: `ip netns del` destroys the veth asynchronously.
    await sh('ip', ['link', 'delete', 'dev', n.uplinkRoot], { allowFail: true });
    await sh('ip', ['route', 'del', n.subnet, 'via', n.uplinkAddress], { allowFail: true });
    if (existsSync(`/run/netns/${n.netns}`)) await sh('ip', ['netns', 'delete', n.netns], { allowFail: true });
  }
  await sh('ip', ['link', 'delete', 'dev', state.fabric.bridge], { allowFail: true });
  if (errors.length) throw new Error(`tearing down ${dir}: ${errors.join('\n')}\n(host objects are named with ${state.id}; DIR kept for inspection)`);
  rmSync(dir, { recursive: true, force: true });
}

function helperPath(): string {
  return new URL(import.meta.url).pathname;
}

/** Inside a node's netns: destroy every VE the node's runtime has (container, cgroup, mounts, netns, state). */
async function destroyNode(stateDir: string, bridge: string, subnet: string): Promise<void> {
  const rt = createRuntime({ stateDir, bridge: { name: bridge, subnet }, log: silentLogger });
  for (const ve of await rt.list()) await rt.destroy(ve.uid, { timeoutMs: 5_000 });
  // Leftover mounts under the state dir (templates, a crash half-way), deepest first.
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')[4] ?? '').filter((m) => m.startsWith(`${stateDir}/`));
  for (const m of mounts.reverse()) await sh('umount', ['-l', m], { allowFail: true });
  const loops = await sh('losetup', ['-l', '-n', '-O', 'NAME,BACK-FILE'], { allowFail: true });
  for (const l of loops.split('\n').filter((x) => x.includes(`${stateDir}/`))) await sh('losetup', ['-d', l.trim().split(/\s+/)[0] ?? ''], { allowFail: true });
}

function flag(argv: string[], name: string): string | undefined {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : undefined;
}

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  const dir = flag(rest, 'dir');
  if (cmd === 'destroy-node') {
    await destroyNode(flag(rest, 'state-dir')!, flag(rest, 'bridge')!, flag(rest, 'subnet')!);
    return 0;
  }
  if (!dir) {
    process.stderr.write('usage: multinode.js serve --nodes N --dir DIR | down --dir DIR\n');
    return 2;
  }
  if (cmd === 'down') {
    await teardownCluster(resolve(dir));
    return 0;
  }
  if (cmd === 'serve') {
    if (loadState(resolve(dir))) {
      process.stderr.write(`${dir} already holds a cluster; run: hack/multinode.sh down ${dir}\n`);
      return 1;
    }
    const cluster = await startCluster({ nodes: Number(flag(rest, 'nodes') ?? 3), dir, heartbeat: flag(rest, 'heartbeat'), nodeGrace: flag(rest, 'node-grace') });
    cluster.state.servePid = process.pid;
    save(cluster.state);
    writeFileSync(join(cluster.state.dir, 'ready'), `${cluster.kubeconfig}\n`);
    process.stdout.write(`ready: ${cluster.kubeconfig}\n`);
    await new Promise<void>((r) => {
      process.once('SIGTERM', () => r());
      process.once('SIGINT', () => r());
    });
    // `down` (which sent the signal) does the host clean-up; here only what this process holds.
    for (const n of cluster.state.nodes) await stopPid(n.agentPid);
    await stopPid(cluster.state.controllerPid);
    await cluster.server.close();
    return 0;
  }
  process.stderr.write(`unknown command ${cmd}; use serve, down\n`);
  return 2;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err) => {
      process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
      process.exit(1);
    },
  );
}

