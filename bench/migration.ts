// Benchmark: live migration downtime of a busybox VE, in ONE run:
//  (a) the hand-run baseline of PLATFORM-NOTES ("Migration by hand"): runc checkpoint a busybox
//      container holding an established TCP connection, recreate its netns with the same IP and
//      MAC on the "target", copy the images, runc restore under the same id (a second runc root
//      plays the target node); freeze-to-running measured (the freeze marked by a CRIU action
//      script at pre-dump, as kubevz's VEs do), and the stall a client sees;
//  (b) kubevz: a VEMigration of a busybox VE between the two agents of the shared-L2 multi-node
//      harness (test/helpers/multinode.ts), ping-pong A→B→A…; downtime from status.downtimeMs and
//      the stall a client (an established connection from the root ns) sees.
//  (c) with --debian: the same for a Debian 12 VE booted with systemd, in a user namespace, with
//      256 MiB of touched memory (a perl process holding a 256 MiB string) and an echo service
//      (a systemd socket unit, Accept=yes, each connection served by cat).
// (a) and (b) run interleaved (a baseline round, then a kubevz round, …) so that a shared
// machine's changing load falls on both alike.
// Prints medians (downtime, client stall, total time = VEMigration created → Succeeded seen),
// the ratio kubevz/baseline (of the medians, and the median of the interleaved pairs' ratios)
// and the targets of the issue (busybox downtime < 300 ms median;
// kubevz ≤ baseline). Asserts nothing. Root; runc, CRIU at /usr/local/sbin/criu, iproute2, a
// static busybox at /bin/busybox; debootstrap for --debian. `npm run build` first, then:
//   node dist/bench/migration.js [--rounds N] [--baseline-only] [--kubevz-only] [--logs DIR]
//                                [--userns] [--debian | --debian-only] [--template-cache DIR]
// (--userns adds the busybox VE in its own user namespace, kubevz's default, after (a) and (b).)
// (--logs DIR keeps the agents' and controller's logs there, for their stage timings.)
// The Debian template is built on every node before the rounds (debootstrap from the host's
// mirror through a proxy on the fabric: a node's netns reaches nothing else; minutes), so total
// times do not include a build. --template-cache DIR keeps the built template there and seeds the
// nodes' caches from it on the next run (no debootstrap then); remove DIR to rebuild.
// Everything it creates carries the run id and is removed at the end, also after a failure.

import { execFile, spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { VE_RESOURCE, VEM_RESOURCE, VET_RESOURCE, type VEMigration, type VETemplate, type VirtualEnvironment } from '../src/api/types.js';
import { loadKubeConfig, makeResourceClient } from '../src/core/kube-client.js';
import { silentLogger } from '../src/core/logger.js';
import { kvzBin } from '../test/helpers/kvz-up.js';
import { startMirrorProxy, type MirrorProxy } from '../test/helpers/mirror-proxy.js';
import { nodeNsenterArgs, startCluster, sharedAddress, type Cluster } from '../test/helpers/multinode.js';

const run = promisify(execFile);
const CRIU = '/usr/local/sbin/criu';
const PORT = 7000;
const argv = process.argv.slice(2);
const flagValue = (name: string) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
};
const rounds = Number(flagValue('--rounds') ?? 5);
const id = process.pid.toString(36).slice(-5);

function median(xs: number[]): number {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

async function sh(cmd: string, args: string[], allowFail = false): Promise<string> {
  try {
    return (await run(cmd, args, { maxBuffer: 16 << 20 })).stdout;
  } catch (err) {
    if (allowFail) return '';
    const e = err as { stderr?: string };
    throw new Error(`${cmd} ${args.join(' ')}: ${e.stderr ?? String(err)}`);
  }
}

/** runc detaches the container but keeps its stdio: give it /dev/null, or we wait on pipes forever. */
function runDetached(cmd: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: 'ignore' });
    p.on('error', reject);
    p.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${cmd} ${args.join(' ')} exited with ${code}`))));
  });
}

/**
 * A client holding one established connection to an echo service, one line in flight every
 * 10 ms; `stallMs` is the longest time between two echoes while it ran.
 */
class StallProbe {
  private sock!: Socket;
  private timer?: NodeJS.Timeout;
  private last = 0;
  private inFlight = false;
  stallMs = 0;
  errors = 0;

  async open(host: string, port: number): Promise<void> {
    this.sock = await new Promise<Socket>((res, rej) => {
      const s = connect({ host, port }, () => res(s));
      s.once('error', rej);
    });
    this.sock.setNoDelay(true);
    this.sock.on('error', () => this.errors++);
    this.sock.on('data', () => {
      const now = performance.now();
      if (this.last) this.stallMs = Math.max(this.stallMs, now - this.last);
      this.last = now;
      this.inFlight = false;
    });
  }

  start(): void {
    this.last = performance.now();
    this.stallMs = 0;
    const tick = () => {
      if (!this.inFlight) {
        this.inFlight = true;
        this.sock.write('x\n');
      }
      this.timer = setTimeout(tick, 10);
    };
    tick();
  }

  /** Stops after the connection answered again (or 30 s). */
  async stop(): Promise<void> {
    const t0 = performance.now();
    const seen = this.last;
    while (this.last === seen && performance.now() - t0 < 30_000) await new Promise((r) => setTimeout(r, 10));
    clearTimeout(this.timer);
    this.sock.destroy();
  }
}

async function waitTcp(host: string, port: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((res) => {
      const s = connect({ host, port }, () => {
        s.destroy();
        res(true);
      });
      s.on('error', () => res(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`${host}:${port} did not answer in ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A free 10.213.x.0/24 (no route on this host uses it). */
async function freeNet(): Promise<number> {
  const routes = await sh('ip', ['-4', 'route', 'show']);
  for (let i = 0; i < 100; i++) {
    const x = 20 + Math.floor(Math.random() * 200);
    if (!routes.includes(`10.213.${x}.`)) return x;
  }
  throw new Error('no free 10.213.x.0/24');
}

// ---------- (a) the hand-run baseline ----------

interface Round {
  downtimeMs: number;
  stallMs: number;
  errors: number;
  /** VEMigration created → Succeeded seen (kubevz rounds only). */
  totalMs?: number;
}

/** One side of the comparison: rounds run one at a time, interleaved with the other side's. */
interface Runner {
  round(i: number): Promise<Round>;
  close(): Promise<void>;
}

async function baseline(): Promise<Runner> {
  const dir = mkdtempSync(join(tmpdir(), `kvz-bench-mig-${id}-`));
  const net = await freeNet();
  const br = `kvzbm${id}`;
  const ip = `10.213.${net}.10`;
  const mac = '02:4b:56:5a:00:10';
  const rootfs = join(dir, 'rootfs');
  const ctr = `kvzbm-${id}`;
  const roots = { src: join(dir, 'runc-src'), dst: join(dir, 'runc-dst') };
  const made: { netns: string[]; links: string[] } = { netns: [], links: [] };

  // A minimal busybox root: the static busybox and the applets the service needs.
  for (const d of ['bin', 'proc', 'dev', 'sys', 'tmp', 'var']) mkdirSync(join(rootfs, d), { recursive: true });
  cpSync('/bin/busybox', join(rootfs, 'bin/busybox'));
  for (const a of ['sh', 'nc', 'cat', 'sleep', 'usleep', 'mv', 'echo']) symlinkSync('busybox', join(rootfs, 'bin', a));

  const frozenAtFile = join(dir, 'frozen-at');
  const freezeMarkScript = join(dir, 'freeze-mark.sh');
  writeFileSync(freezeMarkScript, `#!/bin/sh\n[ "$CRTOOLS_SCRIPT_ACTION" = pre-dump ] && date +%s%N > ${frozenAtFile}\nexit 0\n`, { mode: 0o700 });
  const freezeMarkConfig = join(dir, 'criu.conf');
  writeFileSync(freezeMarkConfig, `action-script ${freezeMarkScript}\n`);
  const bundle = (name: string, netns: string) => {
    const b = join(dir, name);
    mkdirSync(b, { recursive: true });
    const spec = {
      ociVersion: '1.0.2',
      process: {
        terminal: false, user: { uid: 0, gid: 0 }, cwd: '/', env: ['PATH=/bin'],
        args: ['/bin/sh', '-c', `(i=0; while :; do i=$((i+1)); echo $i > /var/c; usleep 100000; done) & exec nc -ll -p ${PORT} -e /bin/cat`],
        capabilities: Object.fromEntries(['bounding', 'effective', 'permitted'].map((k) => [k, ['CAP_NET_BIND_SERVICE', 'CAP_KILL', 'CAP_AUDIT_WRITE']])),
        noNewPrivileges: true,
      },
      root: { path: rootfs, readonly: false },
      hostname: 'bench',
      mounts: [
        { destination: '/proc', type: 'proc', source: 'proc' },
        { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
        { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
      ],
      linux: {
        cgroupsPath: `/kvzbench-${id}/${ctr}`,
        namespaces: [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }, { type: 'network', path: `/run/netns/${netns}` }],
        maskedPaths: ['/proc/kcore'], readonlyPaths: ['/proc/sys'],
      },
      // The freeze marked as kubevz's VEs mark it (an action script at CRIU's pre-dump, just
      // before the freeze), so both downtimes run from the freeze.
      annotations: { 'org.criu.config': freezeMarkConfig },
    };
    writeFileSync(join(b, 'config.json'), JSON.stringify(spec));
    return b;
  };
  // The VE's netns with its address, the host end of the veth on the bridge; same IP and MAC on both sides.
  const makeNetns = async (netns: string, veth: string) => {
    made.netns.push(netns);
    made.links.push(veth);
    await sh('ip', ['netns', 'add', netns]);
    await sh('ip', ['link', 'add', veth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', netns]);
    await sh('ip', ['link', 'set', veth, 'master', br, 'up']);
    await sh('ip', ['-n', netns, 'link', 'set', 'eth0', 'address', mac]);
    await sh('ip', ['-n', netns, 'addr', 'add', `${ip}/24`, 'dev', 'eth0']);
    await sh('ip', ['-n', netns, 'link', 'set', 'eth0', 'up']);
    await sh('ip', ['-n', netns, 'link', 'set', 'lo', 'up']);
  };
  // The host veth first (synchronous): `ip netns del` destroys it asynchronously.
  const dropNetns = async (netns: string, veth: string) => {
    await sh('ip', ['link', 'del', veth], true);
    await sh('ip', ['netns', 'del', netns], true);
  };

  const close = async () => {
    for (const r of [roots.src, roots.dst]) await sh('runc', ['--root', r, 'delete', '-f', ctr], true);
    for (const l of made.links.reverse()) await sh('ip', ['link', 'del', l], true);
    for (const n of made.netns) if ((await sh('ip', ['netns', 'list'], true)).includes(n)) await sh('ip', ['netns', 'del', n], true);
    // runc removes the container's cgroup; its parent (this run's own) is left in each v1 hierarchy.
    for (const c of readdirSync('/sys/fs/cgroup')) if (existsSync(`/sys/fs/cgroup/${c}/kvzbench-${id}`)) await sh('rmdir', [`/sys/fs/cgroup/${c}/kvzbench-${id}`], true);
    rmSync(dir, { recursive: true, force: true });
  };
  made.links.push(br);
  try {
    await sh('ip', ['link', 'add', br, 'type', 'bridge']);
    await sh('ip', ['addr', 'add', `10.213.${net}.1/24`, 'dev', br]);
    await sh('ip', ['link', 'set', br, 'up']);
  } catch (err) {
    await close();
    throw err;
  }
  return {
    close,
    async round(i: number): Promise<Round> {
      const src = { netns: `kvzbm${id}s${i}`, veth: `kvzbm${id}s${i}`.slice(0, 15) };
      const dst = { netns: `kvzbm${id}d${i}`, veth: `kvzbm${id}d${i}`.slice(0, 15) };
      const img = join(dir, `img-${i}`);
      const img2 = join(dir, `img-${i}-copy`);
      await makeNetns(src.netns, src.veth);
      await runDetached('runc', ['--root', roots.src, 'run', '-d', '--bundle', bundle(`bundle-src-${i}`, src.netns), ctr]);
      await waitTcp(ip, PORT);
      const probe = new StallProbe();
      await probe.open(ip, PORT);
      probe.start();
      await new Promise((r) => setTimeout(r, 300));
      const t0 = performance.now();
      const lap: Record<string, number> = {};
      let tl = t0;
      const mark = (k: string) => {
        const now = performance.now();
        lap[k] = Math.round(now - tl);
        tl = now;
      };
      rmSync(frozenAtFile, { force: true });
      await sh('runc', ['--criu', CRIU, '--root', roots.src, 'checkpoint', '--image-path', img, '--work-path', join(dir, `work-${i}`), '--tcp-established', ctr]);
      mark('checkpoint');
      await dropNetns(src.netns, src.veth);
      await makeNetns(dst.netns, dst.veth);
      mark('netns');
      cpSync(img, img2, { recursive: true });
      mark('copy');
      await runDetached('runc', ['--criu', CRIU, '--root', roots.dst, 'restore', '-d', '--bundle', bundle(`bundle-dst-${i}`, dst.netns), '--image-path', img2, '--work-path', join(dir, `work-${i}-r`), '--tcp-established', ctr]);
      const frozenAt = Number(BigInt(readFileSync(frozenAtFile, 'utf8').trim()) / 1_000_000n);
      const downtimeMs = Date.now() - frozenAt;
      mark('restore');
      await probe.stop();
      process.stderr.write(`  baseline round ${i + 1}: freeze-to-running ${downtimeMs.toFixed(0)} ms, client stall ${probe.stallMs.toFixed(0)} ms, errors ${probe.errors} ${JSON.stringify(lap)}\n`);
      await sh('runc', ['--root', roots.dst, 'delete', '-f', ctr], true);
      await dropNetns(dst.netns, dst.veth);
      return { downtimeMs, stallMs: probe.stallMs, errors: probe.errors };
    },
  };
}

// ---------- (b) kubevz ----------

/** What a kubevz run migrates: its template and the VE's spec. */
interface Workload {
  label: string;
  /** The VETemplate (a Debian one names the mirror proxy). */
  template: (mirror?: MirrorProxy) => { apiVersion: string; kind: string; metadata: { name: string }; spec: Record<string, unknown> };
  ve: Partial<VirtualEnvironment['spec']>;
  /** Build the template on every node before the VE exists (a debootstrap, or seeded from --template-cache). */
  prebuild: boolean;
  /** How long the VE may take to answer on PORT once Running. */
  bootMs: number;
  /** A command run in the VE once it answers, its output printed (what the VE holds). */
  report?: string;
}

const BUSYBOX: Workload = {
  label: 'busybox',
  template: () => ({
    apiVersion: 'kubevz.io/v1alpha1', kind: 'VETemplate', metadata: { name: 'bench-echo' },
    spec: {
      source: 'busybox',
      postInstall: `printf '#!/bin/sh\\n[ "$1" = start ] && nc -ll -p ${PORT} -e /bin/cat </dev/null >/dev/null 2>&1 &\\nexit 0\\n' > /etc/init.d/S50echo
chmod 755 /etc/init.d/S50echo
`,
    },
  }),
  ve: { security: { userNamespace: false }, resources: { memory: { limit: '64Mi' }, processes: 64 } },
  prebuild: false,
  bootMs: 30_000,
};

/** The same VE in its own user namespace (kubevz's default): CRIU makes its netns, wired at the handoff. */
const BUSYBOX_USERNS: Workload = { ...BUSYBOX, label: 'busybox in a user namespace', ve: { ...BUSYBOX.ve, security: { userNamespace: true } } };

// Debian minbase has neither nc nor python: systemd itself accepts the echo connections (one cat
// per connection), and perl-base (always there) holds the memory: "a" x N writes every byte. N
// comes from an argument: a constant would be folded at compile time, a second copy in memory
// ($$ in the unit: systemd expands $x itself).
const DEBIAN: Workload = {
  label: 'Debian 12 systemd, 256 MiB touched',
  template: (mirror) => ({
    apiVersion: 'kubevz.io/v1alpha1', kind: 'VETemplate', metadata: { name: 'bench-debian-mem' },
    spec: {
      source: 'debootstrap',
      debootstrap: { suite: 'bookworm', include: ['systemd-sysv', 'dbus', 'procps'], ...(mirror ? { mirror: mirror.url } : {}) },
      postInstall: `cat > /etc/systemd/system/bench-echo.socket <<'UNIT'
[Socket]
ListenStream=${PORT}
Accept=yes
[Install]
WantedBy=sockets.target
UNIT
cat > /etc/systemd/system/bench-echo@.service <<'UNIT'
[Service]
ExecStart=/bin/cat
StandardInput=socket
UNIT
cat > /etc/systemd/system/bench-mem.service <<'UNIT'
[Service]
ExecStart=/usr/bin/perl -e '$$x = "a" x ($$ARGV[0] << 20); sleep' 256
[Install]
WantedBy=multi-user.target
UNIT
mkdir -p /etc/systemd/system/sockets.target.wants /etc/systemd/system/multi-user.target.wants
ln -s /etc/systemd/system/bench-echo.socket /etc/systemd/system/sockets.target.wants/bench-echo.socket
ln -s /etc/systemd/system/bench-mem.service /etc/systemd/system/multi-user.target.wants/bench-mem.service
`,
    },
  }),
  ve: { resources: { memory: { limit: '1Gi' }, processes: 512 } },
  prebuild: true,
  bootMs: 120_000,
  report: 'systemctl is-system-running; systemctl --failed --no-legend --plain; systemctl status --no-pager bench-mem; ps -o pid=,rss=,args= -C perl',
};

/** Copies the template from --template-cache (when it holds it) into every node's cache, whole or not at all. */
async function seedTemplate(cluster: Cluster, name: string): Promise<void> {
  const cache = flagValue('--template-cache');
  const cached = cache ? join(cache, name) : undefined;
  if (!cached || !existsSync(join(cached, 'meta.json'))) return;
  for (const n of cluster.state.nodes) {
    const dir = join(n.stateDir, 'templates');
    mkdirSync(dir, { recursive: true });
    await sh('cp', ['-a', cached, join(dir, `seed-${id}`)]);
    await sh('mv', ['-T', join(dir, `seed-${id}`), join(dir, name)]);
  }
  process.stderr.write(`  seeded the nodes' template caches from ${cached}\n`);
}

/**
 * Builds the template on every node now (`kvz template build`; a seeded cache is found unchanged:
 * the mirror is not part of the digest), then keeps node A's build in --template-cache when that
 * holds none or an older recipe's.
 */
async function prebuildTemplate(cluster: Cluster, name: string): Promise<void> {
  const cache = flagValue('--template-cache');
  const cached = cache ? join(cache, name) : undefined;
  const t0 = performance.now();
  await sh(process.execPath, [kvzBin, 'template', 'build', name, '--kubeconfig', cluster.kubeconfig]);
  const vets = makeResourceClient<VETemplate>(loadKubeConfig(cluster.kubeconfig), { ...VET_RESOURCE, namespaced: false }, silentLogger);
  const deadline = Date.now() + 900_000;
  for (;;) {
    const entries = (await vets.get(name))?.status?.nodes ?? [];
    const failed = entries.find((e) => e.stage === 'Failed');
    if (failed) throw new Error(`building template ${name} on ${failed.node} failed: ${failed.message}`);
    if (cluster.state.nodes.every((n) => entries.some((e) => e.node === n.name && e.stage === 'Ready'))) break;
    if (Date.now() > deadline) throw new Error(`template ${name} not built on every node in 15 min: ${JSON.stringify(entries)}`);
    await new Promise((r) => setTimeout(r, 1000));
  }
  process.stderr.write(`  template ${name} ready on every node in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
  const built = join(cluster.state.nodes[0]!.stateDir, 'templates', name);
  const digest = (dir: string) => (existsSync(join(dir, 'meta.json')) ? (JSON.parse(readFileSync(join(dir, 'meta.json'), 'utf8')) as { digest?: string }).digest : undefined);
  if (cached && digest(cached) !== digest(built)) {
    // Missing or from an older recipe: replaced whole.
    mkdirSync(cache!, { recursive: true });
    const tmp = `${cached}.tmp-${id}`;
    await sh('cp', ['-a', built, tmp]);
    await sh('rm', ['-rf', '--one-file-system', cached]);
    await sh('mv', ['-T', tmp, cached]);
    process.stderr.write(`  kept the template in ${cached} for the next run\n`);
  }
}

async function viaKubevz(w: Workload): Promise<Runner> {
  const dir = mkdtempSync(join(tmpdir(), `kvz-bench-mign-${id}-`));
  const cluster = await startCluster({ nodes: 2, dir, heartbeat: '2s', nodeGrace: '10s', sharedSubnet: true, logLevel: flagValue('--logs') ? 'debug' : 'info' });
  let mirror: MirrorProxy | undefined;
  // KVZ_BENCH_PERF=FILE: a system-wide record of process forks, execs and exits while the rounds
  // run (`perf script -i FILE`), to see which commands sit on the critical path and for how long.
  const tracers: ReturnType<typeof spawn>[] = [];
  if (process.env.KVZ_BENCH_PERF) {
    writeFileSync(`${process.env.KVZ_BENCH_PERF}.pids`, JSON.stringify(cluster.state.nodes.map((n) => ({ name: n.name, pid: n.agentPid }))));
    tracers.push(spawn('perf', ['record', '-q', '-a', '-e', 'sched:sched_process_fork', '-e', 'sched:sched_process_exec', '-e', 'sched:sched_process_exit', '-o', process.env.KVZ_BENCH_PERF], { stdio: 'ignore' }));
    await new Promise((r) => setTimeout(r, 1000));
  }
  const close = async () => {
    for (const t of tracers) {
      t.kill('SIGINT');
      await new Promise((r) => t.once('exit', r));
    }
    const keep = flagValue('--logs');
    if (keep) {
      mkdirSync(keep, { recursive: true });
      for (const n of cluster.state.nodes) if (existsSync(n.logFile)) cpSync(n.logFile, join(keep, `${n.name.replace(/-[^-]+$/, '')}.log`));
      if (existsSync(join(dir, 'controller.log'))) cpSync(join(dir, 'controller.log'), join(keep, 'controller.log'));
    }
    try {
      await cluster.stop();
    } finally {
      await mirror?.close();
    }
  };
  try {
    const kc = loadKubeConfig(cluster.kubeconfig);
    const ves = makeResourceClient<VirtualEnvironment>(kc, { ...VE_RESOURCE, namespaced: true }, silentLogger);
    const vems = makeResourceClient<VEMigration>(kc, { ...VEM_RESOURCE, namespaced: true }, silentLogger);
    if (w.prebuild) mirror = await startMirrorProxy(cluster.state.fabric.address);
    const template = w.template(mirror);
    // Seeded before the VETemplate exists: an agent that saw it first could start building.
    if (w.prebuild) await seedTemplate(cluster, template.metadata.name);
    await cluster.kubectl(['apply', '-f', '-'], JSON.stringify(template));
    if (w.prebuild) await prebuildTemplate(cluster, template.metadata.name);
    const [A, B] = cluster.state.nodes;
    const ip = sharedAddress(cluster.state, 10);
    await ves.create({
      apiVersion: 'kubevz.io/v1alpha1', kind: 'VirtualEnvironment', metadata: { name: 'bench', namespace: 'default' },
      spec: { ...w.ve, template: template.metadata.name, nodeName: A!.name, network: { addresses: [`${ip}/24`] } },
    } as VirtualEnvironment);
    const runningOn = async (node: string) => {
      const deadline = Date.now() + 180_000;
      for (;;) {
        const v = await ves.get('bench', 'default').catch(() => undefined);
        if (v?.status?.phase === 'Running' && v.status.nodeName === node && !v.metadata.annotations?.['kubevz.io/migration']) return;
        if (Date.now() > deadline) {
          const why = (v?.status?.conditions ?? []).map((c) => `${c.type}=${c.status} ${c.reason ?? ''}: ${c.message ?? ''}`).join('; ');
          throw new Error(`the bench VE is not Running on ${node} after 180 s (phase ${v?.status?.phase ?? 'none'} on ${v?.status?.nodeName ?? 'no node'}; ${why || 'no conditions'})`);
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    };
    await runningOn(A!.name);
    await waitTcp(ip, PORT, w.bootMs);
    if (w.report) {
      // `kvz exec` on node A (its mount and network namespace, its state dir).
      const argv = [...nodeNsenterArgs(A!), '--', process.execPath, kvzBin, 'exec', 'bench', '--kubeconfig', cluster.kubeconfig, '--state-dir', A!.stateDir, '--', 'sh', '-c', w.report];
      const out = await run('nsenter', argv, { maxBuffer: 16 << 20 }).then(
        (r) => r.stdout + r.stderr,
        (e: { stdout?: string; stderr?: string }) => `(failed) ${e.stdout ?? ''}${e.stderr ?? ''}`,
      );
      process.stderr.write(`  in the VE: ${w.report}\n${out.replace(/^/gm, '    ')}`);
    }
    return {
      close,
      async round(i: number): Promise<Round> {
      const to = i % 2 === 0 ? B! : A!;
      const probe = new StallProbe();
      await probe.open(ip, PORT);
      probe.start();
      await new Promise((r) => setTimeout(r, 300));
      const name = `bench-${i}`;
      const t0 = performance.now();
      await vems.create({ apiVersion: 'kubevz.io/v1alpha1', kind: 'VEMigration', metadata: { name, namespace: 'default' }, spec: { ve: 'bench', targetNode: to.name, mode: 'live' } });
      let m: VEMigration | undefined;
      const deadline = Date.now() + 180_000;
      while (!(m?.status?.phase === 'Succeeded' || m?.status?.phase === 'Failed')) {
        if (Date.now() > deadline) throw new Error(`VEMigration ${name} did not end in 180 s (phase ${m?.status?.phase})`);
        await new Promise((r) => setTimeout(r, 50));
        m = await vems.get(name, 'default');
      }
      const totalMs = performance.now() - t0;
      await probe.stop();
      if (m.status?.phase !== 'Succeeded') throw new Error(`VEMigration ${name} failed: ${m.status?.reason}: ${m.status?.message}`);
      process.stderr.write(`  kubevz ${w.label} round ${i + 1} (→ ${to.name}): total ${totalMs.toFixed(0)} ms, downtime ${m.status.downtimeMs} ms, client stall ${probe.stallMs.toFixed(0)} ms, ${m.status.bytesTransferred} B, ${JSON.stringify(m.status.timings)}\n`);
      await runningOn(to.name);
      return { downtimeMs: m.status.downtimeMs ?? NaN, stallMs: probe.stallMs, errors: probe.errors, totalMs };
      },
    };
  } catch (err) {
    await close();
    throw err;
  }
}

/**
 * Rounds of each runner in turn (A1 B1 A2 B2 …), so that a shared machine's changing load falls on
 * both sides alike; all runners are closed at the end.
 */
async function interleaved(open: Array<() => Promise<Runner>>): Promise<Round[][]> {
  const runners: Runner[] = [];
  try {
    for (const o of open) runners.push(await o());
    const out: Round[][] = runners.map(() => []);
    for (let i = 0; i < rounds; i++) for (const [k, r] of runners.entries()) out[k]!.push(await r.round(i));
    return out;
  } finally {
    for (const r of runners.reverse()) await r.close();
  }
}

function summary(label: string, r: Round[]): string {
  const totals = r.flatMap((x) => (x.totalMs === undefined ? [] : [x.totalMs]));
  const total = totals.length ? `, median total ${median(totals).toFixed(0)} ms` : '';
  return `${label}: median downtime ${median(r.map((x) => x.downtimeMs)).toFixed(0)} ms${total}, median client stall ${median(r.map((x) => x.stallMs)).toFixed(0)} ms, connection errors ${r.reduce((a, x) => a + x.errors, 0)} (${r.length} rounds)`;
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('run as root: needs netns, runc and CRIU');
  readFileSync(CRIU);
  // --debian adds (c); --debian-only runs it alone.
  const debianOnly = argv.includes('--debian-only');
  const sides: Array<() => Promise<Runner>> = [];
  if (!argv.includes('--kubevz-only') && !debianOnly) sides.push(baseline);
  if (!argv.includes('--baseline-only') && !debianOnly) sides.push(() => viaKubevz(BUSYBOX));
  const results = sides.length ? await interleaved(sides) : [];
  const base = !argv.includes('--kubevz-only') && !debianOnly ? results.shift()! : [];
  const kvz = results.shift() ?? [];
  const userns = (argv.includes('--userns') && !debianOnly ? await interleaved([() => viaKubevz(BUSYBOX_USERNS)]) : [])[0] ?? [];
  const deb = (argv.includes('--debian') || debianOnly ? await interleaved([() => viaKubevz(DEBIAN)]) : [])[0] ?? [];
  if (base.length) console.log(summary('hand-run baseline (runc checkpoint → new netns → copy → restore)', base));
  if (kvz.length) console.log(summary('kubevz live migration (VEMigration, 2-node shared L2)', kvz));
  if (userns.length) console.log(summary(`kubevz live migration of a ${BUSYBOX_USERNS.label} VE`, userns));
  if (deb.length) console.log(summary(`kubevz live migration of a ${DEBIAN.label} VE`, deb));
  if (base.length && kvz.length) {
    const d = median(kvz.map((x) => x.downtimeMs)) / median(base.map((x) => x.downtimeMs));
    const s = median(kvz.map((x) => x.stallMs)) / median(base.map((x) => x.stallMs));
    // Each kubevz round ran right after a baseline round: the median of those pairs' ratios.
    const paired = median(kvz.map((x, i) => x.downtimeMs / base[i]!.downtimeMs));
    console.log(`ratio kubevz/baseline: downtime ${d.toFixed(2)} (median of the ${kvz.length} interleaved pairs: ${paired.toFixed(2)}), client stall ${s.toFixed(2)}`);
    console.log(`target: busybox downtime < 300 ms median → ${median(kvz.map((x) => x.downtimeMs)) < 300 ? 'met' : 'NOT met'}; kubevz ≤ baseline → ${d <= 1 ? 'met' : 'NOT met'}`);
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
    process.exit(1);
  },
);
