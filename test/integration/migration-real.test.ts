// Live migration end to end (docs/adr/004-migration.md): two real node agents on ONE L2 segment
// and VE subnet (test/helpers/multinode.ts, sharedSubnet), real runc and CRIU. Root only.
// A privileged busybox VE on node A serves TCP (an echo service and a counter that counts in a
// shell loop); the root namespace holds an established connection to it. `kvz migrate` moves it
// to node B: the connection continues, the counter continues, the address answers, node A keeps
// nothing of it; a VE with a user namespace moves the same way. Fault cases (target agent killed
// or stopped, VEMigration deleted, dry run, the data channel cut after the dump, the target's disk
// full) each end with exactly one running copy, on A, and nothing left on B.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { MIGRATION_ANNOTATION, NODE_LABEL, type VEMigration, type VENode, type VirtualEnvironment } from '../../src/api/types.js';
import { findCondition } from '../../src/core/conditions.js';
import type { ResourceClient } from '../../src/core/resource-client.js';
import { containerId } from '../../src/runtime/index.js';
import { kvzBin, sh, waitFor } from '../helpers/kvz-up.js';
import { nodeNsenterArgs, sharedAddress, type Cluster, type NodeHost, leftoversOn, runcStateOn, startMigrationPair } from '../helpers/multinode.js';
import { missingPrereqs } from '../helpers/prereq.js';

const run = promisify(execFile);
const CRIU = '/usr/local/sbin/criu';
const prereqs = { root: true, binaries: ['runc', 'ip', 'ping', 'nsenter', 'unshare', 'kubectl', 'losetup', CRIU] };
const missing = missingPrereqs(prereqs);
const ECHO_PORT = 7000;
const COUNTER_PORT = 7001;

// The VE's init (rcS) starts the services: a counter kept in a shell variable (a restarted VE
// would count from 1 again), an echo server and a server that answers with the counter.
const TEMPLATE = `apiVersion: kubevz.io/v1alpha1
kind: VETemplate
metadata: {name: mig-svc}
spec:
  source: busybox
  postInstall: |
    cat > /etc/init.d/S50svc <<'SH'
    #!/bin/sh
    case "$1" in
      start)
        (i=0; while :; do i=$((i+1)); echo $i > /var/counter.new; mv /var/counter.new /var/counter; usleep 100000; done) </dev/null >/dev/null 2>&1 &
        nc -ll -p ${ECHO_PORT} -e /bin/cat </dev/null >/dev/null 2>&1 &
        nc -ll -p ${COUNTER_PORT} -e /bin/cat /var/counter </dev/null >/dev/null 2>&1 &
        ;;
    esac
    SH
    chmod 755 /etc/init.d/S50svc
`;

/** One long-lived TCP connection to the VE's echo service, exchanging a line every 50 ms. */
class EchoClient {
  private sock!: Socket;
  private buf = '';
  private waiters: ((line: string) => void)[] = [];
  private timer?: NodeJS.Timeout;
  private seq = 0;
  errors: string[] = [];
  lastReply = Date.now();
  maxGapMs = 0;

  async open(host: string, port: number): Promise<void> {
    this.sock = await new Promise<Socket>((res, rej) => {
      const s = connect({ host, port }, () => res(s));
      s.once('error', rej);
    });
    this.sock.setNoDelay(true);
    this.sock.on('error', (e) => this.errors.push(String(e)));
    this.sock.on('close', () => this.errors.push('closed'));
    this.sock.on('data', (d) => {
      this.buf += String(d);
      let i: number;
      while ((i = this.buf.indexOf('\n')) >= 0) {
        const line = this.buf.slice(0, i);
        this.buf = this.buf.slice(i + 1);
        const now = Date.now();
        this.maxGapMs = Math.max(this.maxGapMs, now - this.lastReply);
        this.lastReply = now;
        this.waiters.shift()?.(line);
      }
    });
  }

  /** Sends a line and waits for its echo. */
  async exchange(line: string, timeoutMs = 30_000): Promise<string> {
    const reply = new Promise<string>((res, rej) => {
      const t = setTimeout(() => rej(new Error(`no echo of "${line}" in ${timeoutMs} ms`)), timeoutMs);
      this.waiters.push((l) => {
        clearTimeout(t);
        res(l);
      });
    });
    this.sock.write(`${line}\n`);
    return reply;
  }

  /** Keeps exchanging in the background; one line in flight at a time. */
  keepBusy(): void {
    const tick = async () => {
      try {
        await this.exchange(`bg-${++this.seq}`);
      } catch (err) {
        this.errors.push(String(err));
      }
      if (this.timer) this.timer = setTimeout(tick, 50);
    };
    this.timer = setTimeout(tick, 50);
  }

  async quiet(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    // Let a line in flight come back (on a loaded host it can take longer than a fixed pause).
    for (const end = Date.now() + 30_000; this.waiters.length && Date.now() < end;) await new Promise((r) => setTimeout(r, 20));
    this.waiters = [];
  }

  close(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.sock?.destroy();
  }
}

async function readCounter(host: string): Promise<number> {
  return new Promise((res, rej) => {
    let out = '';
    const s = connect({ host, port: COUNTER_PORT });
    s.setTimeout(5_000, () => s.destroy(new Error('counter read timed out')));
    s.on('data', (d) => (out += String(d)));
    s.on('error', rej);
    s.on('close', () => (/^\d+$/.test(out.trim()) ? res(Number(out.trim())) : rej(new Error(`counter said "${out}"`))));
  });
}

describe('live migration between two real node agents on one L2 segment', { skip: missing.length && process.env.CI !== 'true' ? `needs ${missing.join(', ')}` : false }, () => {
  let cluster: Cluster;
  let ves: ResourceClient<VirtualEnvironment>;
  let vems: ResourceClient<VEMigration>;
  let nodes: ResourceClient<VENode>;
  let A: NodeHost;
  let B: NodeHost;
  const ns = 'migreal';
  const svc = 'svc';
  let addr = '';

  const kubectl = (args: string[], input?: string) => cluster.kubectl(args, input);
  const kvz = async (args: string[]) => {
    try {
      const r = await run(process.execPath, [kvzBin, ...args, '--kubeconfig', cluster.kubeconfig], { maxBuffer: 16 << 20, timeout: 180_000 });
      return { code: 0, out: r.stdout + r.stderr };
    } catch (err) {
      const e = err as { code?: number; stdout?: string; stderr?: string };
      return { code: typeof e.code === 'number' ? e.code : 1, out: `${e.stdout ?? ''}${e.stderr ?? ''}` };
    }
  };
  /** The nodes on which the VE's container is running (runc state of each node's runc root). */
  const runningOn = async (uid: string): Promise<string[]> => {
    const out: string[] = [];
    for (const n of [A, B]) if ((await runcStateOn(n, uid)) === 'running') out.push(n.name);
    return out;
  };
  const leftovers = leftoversOn;
  const nothingLeft = (n: NodeHost, uid: string, what: string) =>
    waitFor(`nothing of ${what} left on ${n === A ? 'A' : 'B'}`, async () => (await leftovers(n, uid)).length === 0, 60_000).catch(async (err) => {
      throw new Error(`${String(err)}; it still has: ${(await leftovers(n, uid)).join('; ')}`);
    });
  const runningVe = (name: string, node: string) => waitFor(`${name} Running on ${node}`, async () => {
    const v = await ves.get(name, ns);
    return v?.status?.phase === 'Running' && v.status.nodeName === node && v.status.initPid && !v.metadata.annotations?.[MIGRATION_ANNOTATION] ? v : undefined;
  }, 120_000);
  const terminal = (name: string, timeoutMs = 120_000) => waitFor(`VEMigration ${name} ended`, async () => {
    const m = await vems.get(name, ns);
    return m?.status?.phase === 'Succeeded' || m?.status?.phase === 'Failed' ? m : undefined;
  }, timeoutMs);
  const createVem = (name: string, spec: Partial<VEMigration['spec']> = {}) => vems.create({
    apiVersion: 'kubevz.io/v1alpha1', kind: 'VEMigration', metadata: { name, namespace: ns },
    spec: { ve: svc, targetNode: B.name, mode: 'live', timeoutSeconds: 60, ...spec },
  });
  /**
   * After a failed or aborted migration: the VE runs on A only, as before, and B holds nothing of
   * it. `counterBefore` (the VE's counter before the migration): the migration may have got as far
   * as the dump, and the VE then runs restored from it — other host pids, the same processes, so
   * its counter went on from there.
   */
  const assertStillOnA = async (before: VirtualEnvironment, counterBefore?: number) => {
    const v = await runningVe(svc, A.name);
    const uid = v.metadata.uid!;
    assert.equal(v.metadata.labels?.[NODE_LABEL], A.name);
    assert.deepEqual(await runningOn(uid), [A.name], 'exactly one running copy, on A');
    if (counterBefore === undefined || v.status!.initPid === before.status!.initPid) {
      assert.equal(v.status!.initPid, before.status!.initPid, 'the same init process (not restarted)');
    } else {
      const now = await waitFor('the counter', async () => readCounter(addr).catch(() => undefined), 30_000);
      assert.ok(now >= counterBefore, `restored from its dump, not restarted: the counter went on (${counterBefore} → ${now})`);
    }
    await nothingLeft(B, uid, svc);
    assert.match(await sh('ping', ['-c', '1', '-W', '2', addr]), /1 received/);
  };
  const nodeReady = (n: NodeHost) => waitFor(`${n.name} Ready`, async () => findCondition((await nodes.get(n.name))?.status?.conditions, 'Ready')?.status === 'True', 60_000);

  before(async () => {
    if (missing.length) throw new Error(`prerequisite missing under CI: needs ${missing.join(', ')}`);
    ({ cluster, A, B, ves, vems, nodes } = await startMigrationPair('kvz-migreal-'));
    addr = sharedAddress(cluster.state, 20);
    await kubectl(['apply', '-f', '-'], TEMPLATE);
  });

  after(async () => {
    await cluster?.stop();
  });

  it('the shared-L2 cluster: a privileged VE on A answers at its address from the root ns and from node B', async () => {
    await nodeReady(A);
    await nodeReady(B);
    await ves.create({
      apiVersion: 'kubevz.io/v1alpha1', kind: 'VirtualEnvironment', metadata: { name: svc, namespace: ns },
      spec: {
        template: 'mig-svc', nodeName: A.name, security: { userNamespace: false },
        resources: { memory: { limit: '64Mi' }, processes: 64 }, network: { addresses: [`${addr}/24`] },
      },
    } as VirtualEnvironment);
    const v = await runningVe(svc, A.name);
    assert.deepEqual(v.status!.addresses?.map((a) => a.split('/')[0]), [addr]);
    assert.deepEqual(await runningOn(v.metadata.uid!), [A.name]);
    // The VE's netns is in A's own /run/netns (its mount namespace), not the host's.
    assert.ok(readdirSync(A.netnsDir!).includes(containerId(v.metadata.uid!)));
    assert.ok(!existsSync(`/run/netns/${containerId(v.metadata.uid!)}`), 'the VE netns is not in the host /run/netns');
    assert.match(await sh('ping', ['-c', '1', '-W', '2', addr]), /1 received/, 'from the root ns');
    assert.match(await sh('nsenter', [...nodeNsenterArgs(B), 'ping', '-c', '1', '-W', '2', addr]), /1 received/, 'from node B');
    assert.match(await sh('nsenter', [...nodeNsenterArgs(B), 'ping', '-c', '1', '-W', '2', A.uplinkAddress]), /1 received/, 'node B reaches node A');
    const c1 = await waitFor('the counter', async () => readCounter(addr).catch(() => undefined), 30_000);
    await new Promise((r) => setTimeout(r, 500));
    assert.ok((await readCounter(addr)) > c1, 'the counter counts');
    const client = new EchoClient();
    await client.open(addr, ECHO_PORT);
    assert.equal(await client.exchange('hello'), 'hello');
    client.close();
  });

  it('(d) a dry run succeeds and moves nothing', async () => {
    const before = await runningVe(svc, A.name);
    await createVem('dry', { dryRun: true });
    const m = await terminal('dry');
    assert.equal(m.status?.phase, 'Succeeded', `dry run: ${m.status?.reason}: ${m.status?.message}`);
    assert.match(`${m.status?.reason ?? ''} ${m.status?.method ?? ''} ${m.status?.message ?? ''}`, /dry/i);
    await assertStillOnA(before);
  });

  it('(e) a VE with a user namespace moves live: same TCP connection, counter continues, nothing left on A', async () => {
    const name = 'userns';
    const uaddr = sharedAddress(cluster.state, 21);
    await ves.create({
      apiVersion: 'kubevz.io/v1alpha1', kind: 'VirtualEnvironment', metadata: { name, namespace: ns },
      spec: { template: 'mig-svc', nodeName: A.name, resources: { memory: { limit: '64Mi' }, processes: 64 }, network: { addresses: [`${uaddr}/24`] } },
    } as VirtualEnvironment);
    const before = await runningVe(name, A.name);
    const uid = before.metadata.uid!;
    assert.equal(before.status?.security?.userNamespace, true, 'the VE has a user namespace');
    const c0 = await waitFor('the counter', async () => readCounter(uaddr).catch(() => undefined), 30_000);
    const client = new EchoClient();
    await client.open(uaddr, ECHO_PORT);
    try {
      assert.equal(await client.exchange('before'), 'before');
      client.keepBusy();
      await vems.create({ apiVersion: 'kubevz.io/v1alpha1', kind: 'VEMigration', metadata: { name: 'userns-live', namespace: ns }, spec: { ve: name, targetNode: B.name, mode: 'live', timeoutSeconds: 60 } });
      const m = await terminal('userns-live');
      assert.equal(m.status?.phase, 'Succeeded', `${m.status?.reason}: ${m.status?.message}\n${m.status?.criuLog ?? ''}`);
      process.stderr.write(`# user-namespace VE: downtime ${m.status?.downtimeMs} ms, timings ${JSON.stringify(m.status?.timings)}\n`);
      const v = await runningVe(name, B.name);
      assert.equal(v.metadata.uid, uid);
      assert.deepEqual(v.status?.security?.uidRange, before.status?.security?.uidRange, 'the same host id range on B');
      assert.deepEqual(await runningOn(uid), [B.name], 'exactly one running copy');
      await nothingLeft(A, uid, 'the VE');
      await client.quiet();
      assert.equal(await client.exchange('after-migration'), 'after-migration');
      assert.deepEqual(client.errors, [], 'no connection error');
      assert.ok((await readCounter(uaddr)) > c0, 'the counter continued, not restarted');
    } finally {
      client.close();
    }
    await ves.delete(name, ns);
    await waitFor(`${name} deleted`, async () => !(await ves.get(name, ns)), 60_000);
  });

  it('(b) a migration to a node whose agent is stopped fails; the VE stays on A untouched', async () => {
    const before = await runningVe(svc, A.name);
    await cluster.stopAgent(B.name);
    try {
      await createVem('to-stopped', { timeoutSeconds: 15 });
      const m = await terminal('to-stopped', 90_000);
      assert.equal(m.status?.phase, 'Failed', `${m.status?.reason}: ${m.status?.message}`);
      assert.ok(m.status?.reason, 'a reason');
    } finally {
      await cluster.startAgent(B.name);
    }
    await nodeReady(B);
    await assertStillOnA(before);
  });

  /** Polls the migration's phase every 10 ms (the dump is the only window before the data moves). */
  const phaseReached = async (name: string, phases: string[], timeoutMs = 60_000): Promise<string> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const p = (await vems.get(name, ns))?.status?.phase;
      if (p && phases.includes(p)) return p;
      if (Date.now() > deadline) throw new Error(`VEMigration ${name} did not reach ${phases.join('/')} in ${timeoutMs} ms (phase ${p})`);
      await new Promise((r) => setTimeout(r, 10));
    }
  };
  it('(c) deleting the VEMigration while it runs leaves the VE on A', async () => {
    const before = await runningVe(svc, A.name);
    const c0 = await readCounter(addr);
    await createVem('deleted');
    // Deleted at once, with the API call `kubectl delete vem` makes (kubectl's own start-up takes
    // longer than a whole migration here): the abort reaches the source before its dump or during
    // it, and the VE then runs on A restored from the dump.
    const seen = await phaseReached('deleted', ['Pending', 'Scheduling', 'PreparingTarget', 'TargetReady', 'Checkpointing', 'Transferring', 'Restoring', 'Succeeded', 'Failed']);
    await vems.delete('deleted', ns);
    assert.ok(['Pending', 'Scheduling', 'PreparingTarget', 'TargetReady', 'Checkpointing'].includes(seen), `the migration was already ${seen} when the test looked: too late to abort it`);
    await waitFor('the VEMigration gone (finalizer dropped)', async () => !(await vems.get('deleted', ns)), 90_000);
    await assertStillOnA(before, c0);
  });

  it('(a) the target agent killed during the migration: Failed, the VE runs on A', async () => {
    const before = await runningVe(svc, A.name);
    const c0 = await readCounter(addr);
    await createVem('kill-target', { timeoutSeconds: 20 });
    // Killed as soon as the target is involved, before it could restore anything. A whole
    // migration takes well under a second here: the phase is polled every 10 ms.
    const beforeRestore = ['PreparingTarget', 'TargetReady', 'Checkpointing'];
    const seen = await phaseReached('kill-target', [...beforeRestore, 'Transferring', 'Restoring', 'Succeeded', 'Failed']);
    const pid = cluster.state.nodes.find((n) => n.name === B.name)!.agentPid!;
    const killed = beforeRestore.includes(seen);
    if (killed) process.kill(pid, 'SIGKILL');
    try {
      assert.ok(killed, `the migration was already ${seen} when the test looked: too late to kill the target agent before its restore`);
      const m = await terminal('kill-target', 120_000);
      assert.equal(m.status?.phase, 'Failed', `saw ${seen} before the kill; ended ${m.status?.phase}: ${m.status?.message}`);
    } finally {
      while (killed && existsSync(`/proc/${pid}`) && !readFileSync(`/proc/${pid}/stat`, 'utf8').includes(') Z')) await new Promise((r) => setTimeout(r, 50));
      await cluster.startAgent(B.name);
    }
    await nodeReady(B);
    // The restarted target finds its marker and drops the incoming copy; a kill during the dump
    // leaves the VE restored on A from it.
    await assertStillOnA(before, c0);
  });

  const inNode = (n: NodeHost, args: string[], input?: string) => {
    const p = run('nsenter', [...nodeNsenterArgs(n), ...args], { maxBuffer: 16 << 20 });
    if (input !== undefined) p.child.stdin?.end(input);
    return p;
  };

  it('(f) the data channel cut after the dump: Failed, the VE restored on A from its dump, its TCP connection kept, nothing on B', async () => {
    const before = await runningVe(svc, A.name);
    const uid = before.metadata.uid!;
    assert.ok(B.migrationPort, 'node B has a migration listener');
    const c0 = await readCounter(addr);
    const client = new EchoClient();
    await client.open(addr, ECHO_PORT);
    const table = `kvzmigcut${cluster.state.id}`.replace(/[^a-z0-9]/gi, '');
    let cut = false;
    try {
      assert.equal(await client.exchange('before-cut'), 'before-cut');
      await createVem('cut', { timeoutSeconds: 15 });
      // The moment the source freezes: the images and the last disk delta then meet a black hole
      // (dropped, not refused: the sender only learns it from the migration's timeout).
      const seen = await phaseReached('cut', ['Checkpointing', 'Transferring', 'Restoring', 'Succeeded', 'Failed']);
      await inNode(B, ['nft', '-f', '-'], `table inet ${table} {\n  chain input { type filter hook input priority -10; policy accept; tcp dport ${B.migrationPort} drop; }\n}\n`);
      cut = true;
      if (seen !== 'Checkpointing') {
        const st = (await vems.get('cut', ns))?.status;
        assert.fail(`the cut must come while the source is dumping, but the migration was ${seen}: ${st?.reason}: ${st?.message}`);
      }
      const m = await terminal('cut', 120_000);
      assert.equal(m.status?.phase, 'Failed', `${m.status?.reason}: ${m.status?.message}`);
      assert.ok(m.status?.reason, 'a reason');
      process.stderr.write(`# cut data channel: ${m.status?.reason}: ${m.status?.message}\n`);
    } finally {
      if (cut) await inNode(B, ['nft', 'delete', 'table', 'inet', table]);
    }
    const v = await runningVe(svc, A.name);
    assert.equal(v.metadata.labels?.[NODE_LABEL], A.name);
    assert.deepEqual(await runningOn(uid), [A.name], 'exactly one running copy, on A');
    await nothingLeft(B, uid, svc);
    try {
      // Restored from the dump, not rebooted: the same connection answers and the counter went on.
      assert.equal(await client.exchange('after-cut', 60_000), 'after-cut');
      assert.deepEqual(client.errors, [], 'no connection error');
    } finally {
      client.close();
    }
    assert.ok((await readCounter(addr)) > c0, 'the counter continued, not restarted');
    assert.match(await sh('ping', ['-c', '1', '-W', '2', addr]), /1 received/);
  });

  it('(g) the target disk full: Failed with the reason, the VE keeps running on A, nothing on B', async () => {
    const before = await runningVe(svc, A.name);
    const uid = before.metadata.uid!;
    // B's VE directories on a 1 MiB tmpfs (in B's own mount namespace): the empty incoming image is
    // sparse and fits, the disk pre-copy (~2 MB of data, in 64 KiB frames) does not.
    const vesDir = join(B.stateDir, 'ves');
    await inNode(B, ['mkdir', '-p', vesDir]);
    assert.equal((await inNode(B, ['ls', '-A', vesDir])).stdout.trim(), '', 'B holds no VE before');
    await inNode(B, ['mount', '-t', 'tmpfs', '-o', 'size=1m,mode=0700', 'kvz-migreal-full', vesDir]);
    try {
      await createVem('disk-full');
      const m = await terminal('disk-full');
      assert.equal(m.status?.phase, 'Failed', `${m.status?.reason}: ${m.status?.message}`);
      assert.match(m.status?.message ?? '', /ENOSPC|no space/i, 'the message names the full disk');
      await waitFor('B dropped the incoming copy', async () => (await inNode(B, ['ls', '-A', vesDir])).stdout.trim() === '', 60_000);
    } finally {
      for (let i = 0; ; i++) {
        try {
          await inNode(B, ['umount', vesDir]);
          break;
        } catch (err) {
          if (i >= 50) throw err;
          await new Promise((r) => setTimeout(r, 200));
        }
      }
    }
    assert.deepEqual(await runningOn(uid), [A.name]);
    await assertStillOnA(before);
  });

  it('kvz migrate moves the running VE to B: same TCP connection, counter continues, nothing left on A', async () => {
    const before = await runningVe(svc, A.name);
    const uid = before.metadata.uid!;
    const client = new EchoClient();
    await client.open(addr, ECHO_PORT);
    assert.equal(await client.exchange('before'), 'before');
    const c0 = await readCounter(addr);
    client.keepBusy();
    const res = await kvz(['migrate', svc, '--to', B.name, '-n', ns]);
    process.stderr.write(`# kvz migrate (exit ${res.code}):\n${res.out.replace(/^/gm, '#   ')}\n`);
    assert.equal(res.code, 0, res.out);
    assert.match(res.out, /Succeeded/);

    const m = (await vems.list({ namespace: ns })).filter((x) => x.spec.ve === svc && x.status?.phase === 'Succeeded' && x.status.targetNode === B.name && !x.spec.dryRun);
    assert.equal(m.length, 1, 'one succeeded VEMigration made by kvz migrate');
    const st = m[0]!.status!;
    assert.equal(st.sourceNode, A.name);
    assert.equal(st.veUid, uid);
    assert.ok(typeof st.downtimeMs === 'number' && st.downtimeMs > 0, `downtimeMs ${st.downtimeMs}`);
    assert.ok(st.timings && Object.keys(st.timings).length > 0, `timings ${JSON.stringify(st.timings)}`);
    assert.ok(typeof st.bytesTransferred === 'number' && st.bytesTransferred > 0, `bytesTransferred ${st.bytesTransferred}`);
    assert.equal(st.method, 'stop-and-copy');
    process.stderr.write(`# downtime ${st.downtimeMs} ms, ${st.bytesTransferred} B, timings ${JSON.stringify(st.timings)}\n`);

    const v = await runningVe(svc, B.name);
    assert.equal(v.metadata.uid, uid, 'the same VE object');
    assert.equal(v.metadata.labels?.[NODE_LABEL], B.name);
    assert.equal(await runcStateOn(B, uid), 'running', "node B's runtime runs it");
    assert.deepEqual(await runningOn(uid), [B.name], 'exactly one running copy');
    await nothingLeft(A, uid, 'the VE');

    // The connection opened before the migration still works, both ways.
    await client.quiet();
    assert.equal(await client.exchange('after-migration'), 'after-migration');
    assert.deepEqual(client.errors, [], 'no connection error');
    process.stderr.write(`# the client's longest wait for an echo: ${client.maxGapMs} ms\n`);
    client.close();
    const c1 = await readCounter(addr);
    assert.ok(c1 > c0, `the counter continued (${c0} → ${c1}), not restarted`);
    assert.match(await sh('ping', ['-c', '1', '-W', '2', addr]), /1 received/);
  });
});
