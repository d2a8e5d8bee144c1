// Live migration of a full distribution (issue 6's check; docs/adr/004-migration.md): two real node
// agents on ONE L2 segment and VE subnet (test/helpers/multinode.ts, sharedSubnet), real runc and
// CRIU. Root only. A Debian 12 VE booted with systemd, in its own user namespace (the default),
// runs lighttpd and a counting service on node A; the root namespace holds a keep-alive HTTP
// connection to it. A VEMigration moves it to node B, which builds the template itself while
// preparing (debootstrap, through a proxy to the host's mirror: a node's netns reaches only the
// fabric). Then: the same connection answers (same client port = same socket), systemd is still
// `running` with no failed units, the services are the same processes (same PIDs, same start
// time), the counter went on, the address answers on B, and A keeps nothing of the VE.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { Agent, get } from 'node:http';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { MIGRATION_ANNOTATION, NODE_LABEL, type VEMigration, type VENode, type VirtualEnvironment } from '../../src/api/types.js';
import { findCondition } from '../../src/core/conditions.js';
import type { ResourceClient } from '../../src/core/resource-client.js';
import { containerId } from '../../src/runtime/index.js';
import { kvzBin, sh, waitFor } from '../helpers/kvz-up.js';
import { startMirrorProxy, type MirrorProxy } from '../helpers/mirror-proxy.js';
import { nodeNsenterArgs, sharedAddress, type Cluster, type NodeHost, leftoversOn, runcStateOn, startMigrationPair } from '../helpers/multinode.js';
import { missingPrereqs, uniqueSuffix } from '../helpers/prereq.js';

const run = promisify(execFile);
const CRIU = '/usr/local/sbin/criu';
const prereqs = { root: true, binaries: ['runc', 'ip', 'ping', 'nsenter', 'unshare', 'kubectl', 'losetup', 'debootstrap', 'zstd', CRIU] };
const missing = missingPrereqs(prereqs);
const suffix = uniqueSuffix();
const TEMPLATE_NAME = `mig-deb-dm-${suffix}`;
const MARKER = `debian-migrated-${suffix}`;
/** One debootstrap per node (~1–2 min each on this machine), more on a busy one. */
const BUILD_MS = 360_000;

// lighttpd ends a keep-alive connection idle for 5 s by default, which a migration (with the
// target's template build before the freeze) exceeds: 300 s keeps the client's socket open.
// The counter keeps its count in a shell variable: a restarted service would count from 1 again.
const POST_INSTALL = `echo "${MARKER}" > /var/www/html/index.html
echo "server.max-keep-alive-idle = 300" > /etc/lighttpd/conf-enabled/99-idle.conf
cat > /etc/systemd/system/kvz-counter.service <<'UNIT'
[Unit]
Description=counts in memory, writes the count for lighttpd to serve
[Service]
ExecStart=/bin/sh -c 'i=0; while :; do i=$((i+1)); echo $i > /var/www/html/count.new; mv /var/www/html/count.new /var/www/html/count; sleep 0.2; done'
[Install]
WantedBy=multi-user.target
UNIT
ln -s /etc/systemd/system/kvz-counter.service /etc/systemd/system/multi-user.target.wants/kvz-counter.service
`;

/** GET over `agent` (a keep-alive one: the same socket each time) or a fresh connection. */
function httpGet(address: string, path: string, agent: Agent | false, timeoutMs = 5000): Promise<{ status: number; body: string; localPort?: number }> {
  return new Promise((resolve, reject) => {
    const req = get({ host: address, port: 80, path, timeout: timeoutMs, agent }, (res) => {
      const chunks: Buffer[] = [];
      const localPort = res.socket.localPort;
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), localPort }));
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${path} timed out`)));
    req.on('error', reject);
  });
}

async function readCounter(address: string): Promise<number> {
  const r = await httpGet(address, '/count', false);
  const n = Number(r.body.trim());
  if (r.status !== 200 || !Number.isInteger(n)) throw new Error(`/count answered ${r.status} "${r.body}"`);
  return n;
}

describe('live migration of a Debian 12 systemd VE between two real node agents', { skip: missing.length && process.env.CI !== 'true' ? `needs ${missing.join(', ')}` : false }, () => {
  let cluster: Cluster;
  let proxy: MirrorProxy | undefined;
  let ves: ResourceClient<VirtualEnvironment>;
  let vems: ResourceClient<VEMigration>;
  let nodes: ResourceClient<VENode>;
  let A: NodeHost;
  let B: NodeHost;
  const ns = 'migdeb';
  const name = 'web';
  let addr = '';

  const kubectl = (args: string[], input?: string) => cluster.kubectl(args, input);
  /** `kvz exec` on node `n` (its mount and network namespace, its state dir): exit code and stdout+stderr. */
  const inVe = async (n: NodeHost, argv: string[]): Promise<{ code: number; out: string }> => {
    const args = [...nodeNsenterArgs(n), '--', process.execPath, kvzBin, 'exec', name, '-n', ns, '--kubeconfig', cluster.kubeconfig, '--state-dir', n.stateDir, '--', ...argv];
    try {
      const r = await run('nsenter', args, { maxBuffer: 16 << 20, timeout: 60_000 });
      return { code: 0, out: r.stdout + r.stderr };
    } catch (err) {
      const e = err as { code?: number; stdout?: string; stderr?: string };
      return { code: typeof e.code === 'number' ? e.code : 1, out: `${e.stdout ?? ''}${e.stderr ?? ''}` };
    }
  };
  /** What identifies a running service instance: its main PID and when it became active. */
  const serviceIdentity = async (n: NodeHost, unit: string): Promise<string> => {
    const r = await inVe(n, ['systemctl', 'show', unit, '-p', 'MainPID', '-p', 'ActiveEnterTimestampMonotonic', '-p', 'ActiveState']);
    assert.equal(r.code, 0, r.out);
    const props = r.out.trim().split('\n').sort().join(' ');
    assert.match(props, /ActiveState=active/, `${unit} is active`);
    assert.doesNotMatch(props, /MainPID=0\b/, `${unit} has a main process`);
    return props;
  };
  /** The nodes on which the VE's container is running (runc state of each node's runc root). */
  const runningOn = async (uid: string): Promise<string[]> => {
    const out: string[] = [];
    for (const n of [A, B]) if ((await runcStateOn(n, uid)) === 'running') out.push(n.name);
    return out;
  };
  const leftovers = leftoversOn;
  const runningVe = (node: string, timeoutMs: number) => waitFor(`${name} Running on ${node}`, async () => {
    const v = await ves.get(name, ns);
    return v?.status?.phase === 'Running' && v.status.nodeName === node && v.status.initPid && !v.metadata.annotations?.[MIGRATION_ANNOTATION] ? v : undefined;
  }, timeoutMs).catch(async (err) => {
    throw new Error(`${String(err)}\n${await diagnosis()}`);
  });
  /** For a failure message: the VE's and the template's status, the agents' last warnings. */
  const diagnosis = async (): Promise<string> => {
    const v = await ves.get(name, ns).catch(() => undefined);
    const tpl = await kubectl(['get', 'vetemplate', TEMPLATE_NAME, '-o', 'jsonpath={.status}']).catch((e: unknown) => String(e));
    const logs = [A, B].map((n) => {
      const lines = existsSync(n.logFile) ? readFileSync(n.logFile, 'utf8').split('\n').filter((l) => /"level":(40|50|60)\b/.test(l)) : [];
      return `${n.name} agent warnings (last 15):\n${lines.slice(-15).join('\n')}`;
    });
    return `VE status: ${JSON.stringify(v?.status)}\nVETemplate status: ${tpl}\n${logs.join('\n')}`;
  };
  const nodeReady = (n: NodeHost) => waitFor(`${n.name} Ready`, async () => findCondition((await nodes.get(n.name))?.status?.conditions, 'Ready')?.status === 'True', 60_000);
  /** systemd's own verdict, once it has finished booting (`starting` until then). */
  const systemState = (n: NodeHost) => waitFor(`systemd on ${n.name} to finish booting`, async () => {
    const r = await inVe(n, ['systemctl', 'is-system-running']);
    const s = r.out.trim().split('\n').pop() ?? '';
    return s === 'initializing' || s === 'starting' || s === '' ? undefined : s;
  }, 60_000);
  /**
   * The counter passes `c0` (it ticks every 0.2 s; a loaded machine is given seconds) and is
   * returned; when it does not, the failure says what systemd knows of the counter service.
   */
  const counterPast = (n: NodeHost, c0: number) => waitFor(`the counter past ${c0}`, async () => {
    const c = await readCounter(addr).catch(() => undefined);
    return c !== undefined && c > c0 ? c : undefined;
  }, 15_000).catch(async (err) => {
    const status = await inVe(n, ['systemctl', 'status', '--no-pager', '-n', '5', 'kvz-counter']);
    throw new Error(`${String(err)} (last read ${await readCounter(addr).catch(String)})\n${status.out}`);
  });
  const failedUnits = async (n: NodeHost) => (await inVe(n, ['systemctl', '--failed', '--no-legend', '--plain'])).out.trim();

  before(async () => {
    if (missing.length) throw new Error(`prerequisite missing under CI: needs ${missing.join(', ')}`);
    ({ cluster, A, B, ves, vems, nodes } = await startMigrationPair('kvz-migdeb-'));
    addr = sharedAddress(cluster.state, 30);
    proxy = await startMirrorProxy(cluster.state.fabric.address);
    await kubectl(['apply', '-f', '-'], JSON.stringify({
      apiVersion: 'kubevz.io/v1alpha1', kind: 'VETemplate', metadata: { name: TEMPLATE_NAME },
      spec: {
        source: 'debootstrap',
        debootstrap: { suite: 'bookworm', include: ['systemd-sysv', 'dbus', 'iproute2', 'procps', 'lighttpd'], mirror: proxy.url },
        postInstall: POST_INSTALL,
      },
    }));
  });

  after(async () => {
    try {
      await cluster?.stop();
    } finally {
      await proxy?.close();
    }
  });

  let booted = false;

  it('a Debian 12 systemd VE in a user namespace boots to running on A and serves HTTP', async () => {
    await nodeReady(A);
    await nodeReady(B);
    await ves.create({
      apiVersion: 'kubevz.io/v1alpha1', kind: 'VirtualEnvironment', metadata: { name, namespace: ns },
      spec: { template: TEMPLATE_NAME, nodeName: A.name, resources: { memory: { limit: '512Mi' }, processes: 512 }, network: { addresses: [`${addr}/24`] } },
    } as VirtualEnvironment);
    const t0 = Date.now();
    const v = await runningVe(A.name, BUILD_MS);
    process.stderr.write(`# template build on A + boot: ${Date.now() - t0} ms (${proxy!.requests()} mirror requests)\n`);
    assert.equal(v.status?.security?.userNamespace, true, 'the VE has a user namespace');
    assert.deepEqual(await runningOn(v.metadata.uid!), [A.name]);
    assert.equal(await systemState(A), 'running', `failed units: ${await failedUnits(A)}`);
    assert.equal(await failedUnits(A), '', 'no failed units');
    const res = await waitFor('lighttpd', async () => httpGet(addr, '/', false).catch(() => undefined), 30_000);
    assert.equal(res.body.trim(), MARKER);
    const c0 = await waitFor('the counter', async () => readCounter(addr).catch(() => undefined), 30_000);
    await counterPast(A, c0);
    booted = true;
  });

  it('moves live to B (which builds the template): same keep-alive connection, same services, counter continues, nothing left on A', async () => {
    assert.ok(booted, 'the VE did not boot on A (see the test before)');
    const before = await runningVe(A.name, 10_000);
    const uid = before.metadata.uid!;
    const keepAlive = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const first = await httpGet(addr, '/', keepAlive);
      assert.equal(first.body.trim(), MARKER);
      const lighttpd0 = await serviceIdentity(A, 'lighttpd');
      const counter0 = await serviceIdentity(A, 'kvz-counter');
      const c0 = await readCounter(addr);

      const t0 = Date.now();
      await vems.create({
        apiVersion: 'kubevz.io/v1alpha1', kind: 'VEMigration', metadata: { name: 'deb-live', namespace: ns },
        spec: { ve: name, targetNode: B.name, mode: 'live', timeoutSeconds: BUILD_MS / 1000 + 120 },
      });
      const m = await waitFor('VEMigration deb-live ended', async () => {
        const x = await vems.get('deb-live', ns);
        return x?.status?.phase === 'Succeeded' || x?.status?.phase === 'Failed' ? x : undefined;
      }, BUILD_MS + 180_000);
      assert.equal(m.status?.phase, 'Succeeded', `${m.status?.reason}: ${m.status?.message}\n${m.status?.criuLog ?? ''}`);
      process.stderr.write(`# Debian VE migrated in ${Date.now() - t0} ms: downtime ${m.status?.downtimeMs} ms, ${m.status?.bytesTransferred} B, method ${m.status?.method}, timings ${JSON.stringify(m.status?.timings)}\n`);
      assert.equal(m.status?.sourceNode, A.name);
      assert.equal(m.status?.veUid, uid);
      assert.ok(typeof m.status?.downtimeMs === 'number' && m.status.downtimeMs > 0, `downtimeMs ${m.status?.downtimeMs}`);

      const v = await runningVe(B.name, 60_000);
      assert.equal(v.metadata.uid, uid, 'the same VE object');
      assert.equal(v.metadata.labels?.[NODE_LABEL], B.name);
      assert.deepEqual(v.status?.security?.uidRange, before.status?.security?.uidRange, 'the same host id range on B');
      assert.deepEqual(await runningOn(uid), [B.name], 'exactly one running copy, on B');
      assert.ok(readdirSync(B.netnsDir!).includes(containerId(uid)), "the VE's netns is on B");
      await waitFor('nothing of the VE left on A', async () => (await leftovers(A, uid)).length === 0, 60_000).catch(async (err) => {
        throw new Error(`${String(err)}; A still has: ${(await leftovers(A, uid)).join('; ')}`);
      });

      // The connection opened on A answers from B: the same socket (same client port).
      const again = await httpGet(addr, '/', keepAlive, 30_000);
      assert.equal(again.body.trim(), MARKER);
      assert.equal(again.localPort, first.localPort, 'the keep-alive connection is the same');

      // Restored, not rebooted: systemd still running, the same service instances, the count went on.
      assert.equal(await systemState(B), 'running', `failed units: ${await failedUnits(B)}`);
      assert.equal(await failedUnits(B), '', 'no failed units after the migration');
      assert.equal(await serviceIdentity(B, 'lighttpd'), lighttpd0, 'lighttpd is the same process');
      assert.equal(await serviceIdentity(B, 'kvz-counter'), counter0, 'the counter service is the same process');
      const c1 = await counterPast(B, c0);
      process.stderr.write(`# counter ${c0} → ${c1}; ${lighttpd0}\n`);

      // The address answers on B: from the root namespace and from node A.
      assert.match(await sh('ping', ['-c', '1', '-W', '2', addr]), /1 received/);
      assert.match(await sh('nsenter', [...nodeNsenterArgs(A), 'ping', '-c', '1', '-W', '2', addr]), /1 received/, 'from node A');
    } finally {
      keepAlive.destroy();
    }
  });
});
