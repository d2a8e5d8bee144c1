// Multi-node kubevz on one machine: one embedded API server, the controller (`kvz controller`)
// and N real node agents (`kvz node-agent`), each agent in its own network namespace as its
// "host", with its own state dir and its own node bridge (created here, so the agent attaches to
// an existing bridge as on a LAN host). Each node netns has an uplink veth into a shared fabric
// bridge in the root namespace; the root ns routes each node's VE subnet via that node's uplink
// address, and every node routes the others' subnets the same way, so every VE is reachable
// from the root namespace (and from every other node) at its address.
//
// Shared-L2 mode (`sharedSubnet: true`, `serve --shared`), for live migration (a migrated VE keeps
// its address): every node's uplink is enslaved to its node bridge, so all node bridges and the
// fabric bridge form one L2 segment with ONE VE subnet. The fabric bridge's address (root ns) is
// the VEs' gateway (`--gateway`); each node bridge has its own address in the subnet — the node's
// own address, through which its agent reaches the API server and the other agents (migration
// channel: `--migration-listen 0.0.0.0:PORT --migration-address NODE_ADDR`). The agent has no
// pool range, so VEs in this mode should declare their addresses (automatic allocation would
// hand the same address out on two nodes); node addresses are .200+i, above what tests use.
// A migrated VE's netns has the same name (/run/netns/kvz-<uid>) on both nodes, so in this mode
// each agent also gets a persistent mount namespace (bound at DIR/mntns/NODE) that differs from
// the host's in one place only: /run/netns is the node's own directory (DIR/nodes/NODE/netns; its
// files, one per VE netns, are visible from the host there). DIR is made a shared bind mount
// first, so the VE mounts agents make under it (loop, overlay) still show on the host.
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
//   node dist/test/helpers/multinode.js serve --nodes N --dir DIR [--shared]   runs in the foreground until SIGTERM
//   node dist/test/helpers/multinode.js down --dir DIR              stops and removes everything
//   node dist/test/helpers/multinode.js destroy-node ...            (internal: run inside a node netns)

import { execFile, spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { pathToFileURL } from 'node:url';
import { startApiServer, type RunningApiServer } from '../../src/apiserver/index.js';
import { VE_RESOURCE, VEM_RESOURCE, VENODE_RESOURCE, type VEMigration, type VENode, type VirtualEnvironment } from '../../src/api/types.js';
import { loadKubeConfig, makeResourceClient } from '../../src/core/kube-client.js';
import { silentLogger } from '../../src/core/logger.js';
import type { ResourceClient } from '../../src/core/resource-client.js';
import { containerId, createRuntime, hostVethName, removeKerndatCache, removeMigrationScratch, stopNodeServices } from '../../src/runtime/index.js';
import { kvzBin } from './kvz-up.js';
import { uniqueSuffix } from './prereq.js';

const execFileP = promisify(execFile);

export interface NodeHost {
  name: string;
  /** Routed: its own VE subnet behind its uplink address. Shared: one L2 segment and subnet for all. */
  mode?: 'routed' | 'shared';
  /** The node's "host": a network namespace. */
  netns: string;
  stateDir: string;
  /** The node bridge inside the netns (made by the harness: the agent attaches to it as it is). */
  bridge: string;
  subnet: string;
  /** The VEs' gateway: the node bridge's address (routed), the fabric bridge's (shared). */
  gateway: string;
  /** Root-ns end of the uplink veth (a port of the fabric bridge). */
  uplinkRoot: string;
  /** The node's own address: its uplink's (routed) or its node bridge's (shared). */
  uplinkAddress: string;
  /** Migration listener port (inside the node netns), when the agent was given one. */
  migrationPort?: number;
  logFile: string;
  /** Shared mode: the node's persistent mount namespace (a bind of the ns file) and its /run/netns directory. */
  mountNs?: string;
  netnsDir?: string;
  /** PID of the running agent (the node process itself: nsenter execs it). */
  agentPid?: number;
}

export interface ClusterState {
  id: string;
  dir: string;
  mode?: 'routed' | 'shared';
  /** Shared mode: host mounts made (DIR bound on itself, shared; DIR/mntns private), removed last. */
  hostMounts?: string[];
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
  /** The installed kubectl against this cluster's API server; its stdout. */
  kubectl(args: string[], input?: string): Promise<string>;
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
  /** One L2 segment and one VE subnet for all nodes (live migration); default: routed, one subnet per node. */
  sharedSubnet?: boolean;
  /**
   * Port of each agent's migration listener (`--migration-listen 0.0.0.0:PORT`, in the node's own
   * netns, so every node may use the same one). Default: 7650 in shared mode, none routed; 0: none.
   */
  migrationPort?: number;
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

function nodeNames(id: string, dir: string, i: number): Pick<NodeHost, 'name' | 'netns' | 'stateDir' | 'bridge' | 'uplinkRoot' | 'logFile'> {
  return {
    name: `node-${i}-${id}`,
    netns: `kvzh${id}n${i}`,
    stateDir: join(dir, 'nodes', `node-${i}`),
    bridge: 'kvzbr0',
    uplinkRoot: `kvzu${id}${i}`.slice(0, 15),
    logFile: join(dir, 'nodes', `node-${i}`, 'agent.log'),
  };
}

/** A fabric subnet 10.212.f.0/24 and one routed VE subnet 10.213.x.0/24 per node. */
async function routedLayout(id: string, dir: string, count: number, migrationPort: number): Promise<ClusterState> {
  const f = await freeOctets('10.212', 1);
  const base = await freeOctets('10.213', count);
  return {
    id, dir, mode: 'routed',
    fabric: { bridge: `kvzf${id}`, subnet: `10.212.${f}.0/24`, address: `10.212.${f}.1` },
    nodes: Array.from({ length: count }, (_, i) => ({
      ...nodeNames(id, dir, i),
      mode: 'routed' as const,
      subnet: `10.213.${base + i}.0/24`,
      gateway: `10.213.${base + i}.1`,
      uplinkAddress: `10.212.${f}.${10 + i}`,
      ...(migrationPort ? { migrationPort } : {}),
    })),
  };
}

/** One VE subnet 10.213.x.0/24 for all: .1 the fabric (VE gateway, API server), .200+i node i. */
async function sharedLayout(id: string, dir: string, count: number, migrationPort: number): Promise<ClusterState> {
  const x = await freeOctets('10.213', 1);
  const subnet = `10.213.${x}.0/24`;
  return {
    id, dir, mode: 'shared',
    fabric: { bridge: `kvzf${id}`, subnet, address: `10.213.${x}.1` },
    nodes: Array.from({ length: count }, (_, i) => ({
      ...nodeNames(id, dir, i),
      mode: 'shared' as const,
      mountNs: join(dir, 'mntns', `node-${i}`),
      netnsDir: join(dir, 'nodes', `node-${i}`, 'netns'),
      subnet,
      gateway: `10.213.${x}.1`,
      uplinkAddress: `10.213.${x}.${200 + i}`,
      ...(migrationPort ? { migrationPort } : {}),
    })),
  };
}

/** An address in the shared subnet for tests: host number n (keep 2..199; nodes are .200+). */
export function sharedAddress(state: ClusterState, n: number): string {
  if (state.mode !== 'shared') throw new Error('sharedAddress: the cluster runs in routed mode; start it with sharedSubnet: true');
  return `${state.fabric.subnet.replace(/0\/24$/, '')}${n}`;
}

export async function startCluster(o: ClusterOptions): Promise<Cluster> {
  if (o.nodes < 1 || o.nodes > 20) throw new Error(`--nodes ${o.nodes}: give 1 to 20`);
  const dir = resolve(o.dir);
  mkdirSync(dir, { recursive: true });
  // VEs run in user namespaces: their mapped root must be able to walk down to the VE roots.
  chmodSync(dir, 0o711);
  const id = uniqueSuffix().slice(0, 7);
  const migrationPort = o.migrationPort ?? (o.sharedSubnet ? 7650 : 0);
  const state = o.sharedSubnet ? await sharedLayout(id, dir, o.nodes, migrationPort) : await routedLayout(id, dir, o.nodes, migrationPort);
  save(state);
  let server: RunningApiServer | undefined;
  try {
    // Fabric bridge in the root namespace; the API server listens on its address.
    await sh('ip', ['link', 'add', state.fabric.bridge, 'type', 'bridge']);
    await sh('ip', ['addr', 'add', `${state.fabric.address}/24`, 'dev', state.fabric.bridge]);
    await sh('ip', ['link', 'set', state.fabric.bridge, 'up']);
    if (state.mode === 'shared') await makeNodeMountNamespaces(state);
    for (const n of state.nodes) {
      mkdirSync(n.stateDir, { recursive: true });
      await sh('ip', ['netns', 'add', n.netns]);
      await sh('ip', ['link', 'add', n.uplinkRoot, 'type', 'veth', 'peer', 'name', 'uplink0', 'netns', n.netns]);
      await sh('ip', ['link', 'set', n.uplinkRoot, 'master', state.fabric.bridge, 'up']);
      if (state.mode === 'shared') {
        // Layer 2: the uplink is a port of the node bridge, which carries the node's own address.
        await ipBatch(['-n', n.netns], [
          `link set lo up`,
          `link add ${n.bridge} type bridge`,
          `addr add ${n.uplinkAddress}/24 dev ${n.bridge}`,
          `link set uplink0 master ${n.bridge}`,
          `link set uplink0 up`,
          `link set ${n.bridge} up`,
        ]);
        continue;
      }
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
      // The log is appended to across restarts: only what this agent writes counts below.
      const from = existsSync(n.logFile) ? statSync(n.logFile).size : 0;
      const out = openSync(n.logFile, 'a');
      const p = spawn(
        'nsenter',
        [...nodeNsenterArgs(n), '--', process.execPath, kvzBin, 'node-agent', '--kubeconfig', kubeconfig, '--node-name', n.name,
          '--state-dir', n.stateDir, '--bridge', n.bridge, '--subnet', n.subnet, '--heartbeat', o.heartbeat ?? '10s', '--node-label', `kubevz.io/harness=${id}`,
          // Shared L2: the gateway is the fabric's address, not the node bridge's own one.
          ...(state.mode === 'shared' ? ['--gateway', n.gateway] : []),
          ...(n.migrationPort ? ['--migration-listen', `0.0.0.0:${n.migrationPort}`, '--migration-address', n.uplinkAddress] : [])],
        { stdio: ['ignore', out, out], env, detached: true },
      );
      p.unref();
      n.agentPid = p.pid;
      save(state);
      // Up once it logs that it started (registration done).
      const deadline = Date.now() + 60_000;
      while (!readFileSync(n.logFile).subarray(from).toString('utf8').includes('node agent started')) {
        if (!alive(p.pid)) throw new Error(`node agent ${name} exited; see ${n.logFile}:\n${readFileSync(n.logFile, 'utf8').slice(-2000)}`);
        if (Date.now() > deadline) throw new Error(`node agent ${name} did not start in 60 s; see ${n.logFile}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    };
    await Promise.all(state.nodes.map((n) => startAgent(n.name)));
    const srv = server;
    return {
      state, kubeconfig, server: srv, startAgent,
      async kubectl(args, input) {
        const p = execFileP('kubectl', ['--kubeconfig', kubeconfig, ...args], { maxBuffer: 16 << 20 });
        if (input !== undefined) p.child.stdin?.end(input);
        return (await p).stdout;
      },
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
    const inNs = existsSync(`/run/netns/${n.netns}`) ? ['nsenter', ...nodeNsenterArgs(n), '--'] : [];
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
    // Shared mode has no per-node route (the subnet is the fabric's own, gone with the bridge).
    if (n.mode !== 'shared') await sh('ip', ['route', 'del', n.subnet, 'via', n.uplinkAddress], { allowFail: true });
    if (existsSync(`/run/netns/${n.netns}`)) await sh('ip', ['netns', 'delete', n.netns], { allowFail: true });
  }
  await sh('ip', ['link', 'delete', 'dev', state.fabric.bridge], { allowFail: true });
  // Mount namespaces: each lives while its bind (and any later node's copy of it) exists.
  for (const n of [...state.nodes].reverse()) if (n.mountNs && isMountPoint(n.mountNs)) await sh('umount', [n.mountNs], { allowFail: true });
  for (const m of [...(state.hostMounts ?? [])].reverse()) {
    // A freed node mount namespace still holds its copy (a peer) for a moment: retry, then detach.
    for (let i = 0; i < 50 && isMountPoint(m); i++) {
      await sh('umount', [m], { allowFail: true });
      if (isMountPoint(m)) await new Promise((r) => setTimeout(r, 100));
    }
    if (isMountPoint(m)) await sh('umount', ['-l', m], { allowFail: true });
    if (isMountPoint(m)) errors.push(`${m} is still mounted (busy?)`);
  }
  if (errors.length) throw new Error(`tearing down ${dir}: ${errors.join('\n')}\n(host objects are named with ${state.id}; DIR kept for inspection)`);
  rmSync(dir, { recursive: true, force: true });
}

/** nsenter flags that put a process on node `n` (its netns; in shared mode also its mount ns). */
export function nodeNsenterArgs(n: NodeHost): string[] {
  return [...(n.mountNs ? [`--mount=${n.mountNs}`] : []), `--net=/run/netns/${n.netns}`];
}

function isMountPoint(path: string): boolean {
  return readFileSync('/proc/self/mountinfo', 'utf8').split('\n').some((l) => l.split(' ')[4] === path);
}

/**
 * Shared mode: DIR becomes a shared bind mount of itself (so mounts the agents make below it
 * propagate to the host: `/` is private here), DIR/mntns a private one (a mount namespace file
 * can only be bound onto a non-shared mount), and each node gets a persistent mount namespace
 * whose /run/netns is covered by the node's own directory, made privately so that nothing of it
 * propagates back to the host's /run/netns.
 */
async function makeNodeMountNamespaces(state: ClusterState): Promise<void> {
  const nsDir = join(state.dir, 'mntns');
  state.hostMounts = [state.dir, nsDir];
  save(state);
  await sh('mount', ['--bind', state.dir, state.dir]);
  await sh('mount', ['--make-shared', state.dir]);
  mkdirSync(nsDir, { recursive: true });
  await sh('mount', ['--bind', nsDir, nsDir]);
  await sh('mount', ['--make-private', nsDir]);
  mkdirSync('/run/netns', { recursive: true });
  for (const n of state.nodes) {
    mkdirSync(n.netnsDir!, { recursive: true });
    writeFileSync(n.mountNs!, '');
    // /run/netns is made a mount point in the new namespace if it is not one, then privately covered.
    const script = `set -e
mountpoint -q /run/netns || mount --bind /run/netns /run/netns
mount --make-private /run/netns
mount --bind ${n.netnsDir} /run/netns
mount --make-private /run/netns`;
    await sh('unshare', [`--mount=${n.mountNs}`, '--propagation', 'unchanged', '--', 'sh', '-c', script]);
  }
}

function helperPath(): string {
  return new URL(import.meta.url).pathname;
}

/** Inside a node's netns: destroy every VE the node's runtime has (container, cgroup, mounts, netns, state). */
async function destroyNode(stateDir: string, bridge: string, subnet: string): Promise<void> {
  const rt = createRuntime({ stateDir, bridge: { name: bridge, subnet }, log: silentLogger });
  for (const ve of await rt.list()) await rt.destroy(ve.uid, { timeoutMs: 5_000 });
  // The node's lxcfs (started by its agent, outlives it) and its FUSE mount under the state dir.
  await stopNodeServices({ stateDir });
  // Its migrations' scratch dir on /dev/shm, and the CRIU probe cache its agent installed (teardownNode does both).
  await removeMigrationScratch(stateDir);
  await removeKerndatCache();
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
    process.stderr.write('usage: multinode.js serve --nodes N --dir DIR [--shared] | down --dir DIR\n');
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
    const cluster = await startCluster({ nodes: Number(flag(rest, 'nodes') ?? 3), dir, heartbeat: flag(rest, 'heartbeat'), nodeGrace: flag(rest, 'node-grace'), sharedSubnet: rest.includes('--shared') });
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

/** runc's state of a VE's container on a node host (its runc root), or undefined when there is none. */
export async function runcStateOn(n: NodeHost, uid: string): Promise<string | undefined> {
  try {
    const r = await execFileP('runc', ['--root', join(n.stateDir, 'runc'), 'state', containerId(uid)]);
    return (JSON.parse(r.stdout) as { status: string }).status;
  } catch {
    return undefined;
  }
}

/** What a node host still holds of a VE: runc container, netns, host veth, mounts, loop devices, state dir. */
export async function leftoversOn(n: NodeHost, uid: string): Promise<string[]> {
  const found: string[] = [];
  const st = await runcStateOn(n, uid);
  if (st) found.push(`runc container (${st})`);
  if (n.netnsDir && readdirSync(n.netnsDir).includes(containerId(uid))) found.push(`netns ${containerId(uid)}`);
  if ((await execFileP('ip', ['-n', n.netns, '-br', 'link'])).stdout.includes(hostVethName(uid))) found.push(`veth ${hostVethName(uid)}`);
  const veDir = join(n.stateDir, 'ves', uid);
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => l.includes(veDir));
  if (mounts.length) found.push(`mounts: ${mounts.map((l) => l.split(' ')[4]).join(', ')}`);
  const loops = (await execFileP('losetup', ['-l', '-n', '-O', 'NAME,BACK-FILE'])).stdout.split('\n').filter((l) => l.includes(veDir));
  if (loops.length) found.push(`loop: ${loops.join(', ')}`);
  if (existsSync(veDir)) found.push(`state dir ${veDir}`);
  return found;
}

export interface MigrationPair {
  cluster: Cluster;
  A: NodeHost;
  B: NodeHost;
  ves: ResourceClient<VirtualEnvironment>;
  vems: ResourceClient<VEMigration>;
  nodes: ResourceClient<VENode>;
}

/**
 * Two node agents on one L2 segment and VE subnet (live migration tests), fast heartbeats, debug
 * logs, in a new run directory named by `prefix`; with typed clients of its API. `cluster.stop()` ends it.
 */
export async function startMigrationPair(prefix: string): Promise<MigrationPair> {
  const t0 = Date.now();
  const cluster = await startCluster({ nodes: 2, dir: mkdtempSync(join(tmpdir(), prefix)), heartbeat: '1s', nodeGrace: '4s', sharedSubnet: true, logLevel: 'debug' });
  process.stderr.write(`# 2 node agents (shared L2 ${cluster.state.fabric.subnet}) up in ${Date.now() - t0} ms (run ${cluster.state.id})\n`);
  const [A, B] = cluster.state.nodes as [NodeHost, NodeHost];
  const kc = loadKubeConfig(cluster.kubeconfig);
  return {
    cluster, A, B,
    ves: makeResourceClient<VirtualEnvironment>(kc, { ...VE_RESOURCE, namespaced: true }, silentLogger),
    vems: makeResourceClient<VEMigration>(kc, { ...VEM_RESOURCE, namespaced: true }, silentLogger),
    nodes: makeResourceClient<VENode>(kc, { ...VENODE_RESOURCE, namespaced: false }, silentLogger),
  };
}
