// Drift correction with a real node agent (real runtime: runc, cgroup v1, CNI) against the
// embedded API server, in-process. Root only. Covers: a cgroup limit changed by hand is put
// back (log + Event); a VE whose init is killed by hand comes back; an agent restart adopts the
// running VE without restarting it (same init PID); a VE deleted while the agent was down
// (finalizer removed by hand) is found as a leftover and removed when the agent starts again.

import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { NODE_LABEL, VE_FINALIZER, VE_RESOURCE, type KubeObject, type VirtualEnvironment } from '../../src/api/types.js';
import { startApiServer, type RunningApiServer } from '../../src/apiserver/index.js';
import { findCondition } from '../../src/core/conditions.js';
import type { EventRecorder } from '../../src/core/events.js';
import { loadKubeConfig, makeResourceClient } from '../../src/core/kube-client.js';
import { silentLogger, type Logger } from '../../src/core/logger.js';
import type { ResourceClient } from '../../src/core/resource-client.js';
import { NodeAgent } from '../../src/node-agent/index.js';
import { cgroupPath, createRuntime, teardownNode, type VERuntime } from '../../src/runtime/index.js';
import { waitFor } from '../helpers/kvz-up.js';
import { missingPrereqs, uniqueSuffix } from '../helpers/prereq.js';

const prereqs = { root: true, binaries: ['runc', 'ip'] };
const skip = missingPrereqs(prereqs).length > 0;

/** A logger that keeps warn lines (message + fields) so the test can see what the agent said. */
function capturingLogger(lines: string[]): Logger {
  const make = (bindings: Record<string, unknown>): Logger => {
    const at = (level: string) => (a: object | string, b?: string) => {
      if (level !== 'warn' && level !== 'error') return;
      lines.push(JSON.stringify({ level, ...bindings, ...(typeof a === 'object' ? a : {}), msg: typeof a === 'string' ? a : b }));
    };
    return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error'), child: (more) => make({ ...bindings, ...more }) };
  };
  return make({});
}

describe('drift correction on a real host', { skip: skip && process.env.CI !== 'true' ? `needs ${missingPrereqs(prereqs).join(', ')}` : false }, () => {
  const suffix = uniqueSuffix();
  const nodeName = `drift-${suffix}`;
  const bridge = `kvzd${suffix}`.slice(0, 15);
  const net = 100 + Math.floor(Math.random() * 150);
  const subnet = `10.213.${net}.0/24`;
  const ns = `drift-${suffix}`;
  let stateDir = '';
  let server: RunningApiServer;
  let ves: ResourceClient<VirtualEnvironment>;
  let runtime: VERuntime;
  let agent: NodeAgent | undefined;
  const warnings: string[] = [];
  const events: { reason: string; type: string; message: string; name: string }[] = [];
  const recorder: EventRecorder = { event: (obj: KubeObject, type, reason, message) => events.push({ reason, type, message, name: obj.metadata?.name ?? '' }) };
  const uids = new Set<string>();

  async function startAgent(): Promise<NodeAgent> {
    const a = new NodeAgent({
      nodeName, client: ves, runtime, subnet, log: capturingLogger(warnings), events: recorder,
      resyncMs: 2_000, orphanScanMs: 60_000, stopTimeoutMs: 3_000,
    });
    await a.start();
    return a;
  }

  async function createRunning(name: string): Promise<VirtualEnvironment> {
    await ves.create({
      apiVersion: 'kubevz.io/v1alpha1', kind: 'VirtualEnvironment',
      metadata: { name, namespace: ns, labels: { [NODE_LABEL]: nodeName } },
      spec: { template: 'busybox', nodeName, resources: { memory: { limit: '128Mi' }, processes: 100 } },
    });
    const ve = await waitFor(`${name} Running`, async () => {
      const v = await ves.get(name, ns);
      return v?.status?.phase === 'Running' && findCondition(v.status.conditions, 'Ready')?.status === 'True' && v.status.initPid ? v : undefined;
    }, 60_000);
    uids.add(ve.metadata.uid!);
    return ve;
  }

  const cgFile = (uid: string, controller: string, file: string) => `/sys/fs/cgroup/${controller}${cgroupPath(uid)}/${file}`;

  before(async () => {
    if (skip) throw new Error(`prerequisite missing under CI: needs ${missingPrereqs(prereqs).join(', ')}`);
    stateDir = mkdtempSync(join(tmpdir(), 'kvz-drift-'));
    chmodSync(stateDir, 0o711); // VEs in user namespaces: their mapped root walks down to its root
    server = await startApiServer({ stateDir: join(stateDir, 'api'), port: 0, log: silentLogger });
    ves = makeResourceClient<VirtualEnvironment>(loadKubeConfig(server.kubeconfigPath), { ...VE_RESOURCE, namespaced: true }, silentLogger);
    runtime = createRuntime({ stateDir: join(stateDir, 'node'), bridge: { name: bridge, subnet }, log: silentLogger });
    agent = await startAgent();
  });

  after(async () => {
    if (!stateDir) return;
    await agent?.stop();
    for (const uid of uids) await runtime.destroy(uid, { timeoutMs: 3_000 }).catch(() => undefined);
    await server?.close();
    await teardownNode({ bridge, stateDir: join(stateDir, 'node') });
    rmSync(stateDir, { recursive: true, force: true });
  });

  it('a pids.max and a memory limit written by hand into the cgroup are put back, with an Event and a log line', async () => {
    const ve = await createRunning('limits');
    const uid = ve.metadata.uid!;
    const pidsFile = cgFile(uid, 'pids', 'pids.max');
    const memFile = cgFile(uid, 'memory', 'memory.limit_in_bytes');
    assert.equal(readFileSync(pidsFile, 'utf8').trim(), '100');
    assert.equal(readFileSync(memFile, 'utf8').trim(), String(128 << 20));
    const t0 = Date.now();
    writeFileSync(pidsFile, '7');
    writeFileSync(memFile, String(96 << 20)); // lower: v1 refuses memory above memsw
    assert.equal(readFileSync(pidsFile, 'utf8').trim(), '7', 'the hand-written value landed');
    await waitFor('pids.max and memory limit restored', async () =>
      readFileSync(pidsFile, 'utf8').trim() === '100' && readFileSync(memFile, 'utf8').trim() === String(128 << 20), 15_000);
    process.stderr.write(`# limits restored ${Date.now() - t0} ms after the hand edit (resync 2 s)\n`);
    // One Event, or two when a reconcile read the cgroup between the two writes.
    const restored = await waitFor('LimitsRestored events for both fields', async () => {
      const evs = events.filter((e) => e.name === 'limits' && e.reason === 'LimitsRestored');
      const text = evs.map((e) => e.message).join('\n');
      return /pids 7 \(declared 100\)/.test(text) && /memoryBytes 100663296 \(declared 134217728\)/.test(text) ? evs : undefined;
    }, 5_000);
    assert.ok(restored.every((e) => e.type === 'Warning'));
    assert.ok(warnings.some((l) => l.includes('limits were changed on the host') && l.includes('"pids"')), warnings.join('\n'));
    // The VE was not restarted to do it.
    assert.equal((await ves.get('limits', ns))?.status?.initPid, ve.status?.initPid);
  });

  it('a VE whose init is killed by hand comes back with a new init', async () => {
    const ve = await createRunning('killed');
    const pid = ve.status!.initPid!;
    process.kill(pid, 'SIGKILL');
    const back = await waitFor('killed VE running again', async () => {
      const v = await ves.get('killed', ns);
      return v?.status?.phase === 'Running' && v.status.initPid && v.status.initPid !== pid ? v : undefined;
    }, 30_000);
    const host = await runtime.inspect(back.metadata.uid!);
    assert.equal(host.state, 'running');
    assert.equal(host.pid, back.status!.initPid);
  });

  it('an agent restart adopts the running VE without restarting it (same init PID)', async () => {
    const ve = await createRunning('adopt');
    const uid = ve.metadata.uid!;
    const pid = (await runtime.inspect(uid)).pid;
    assert.ok(pid);
    await agent!.stop();
    agent = undefined;
    agent = await startAgent();
    // Let several resyncs pass; the VE must stay the same process and Ready.
    await new Promise((r) => setTimeout(r, 2_000));
    const host = await runtime.inspect(uid);
    assert.equal(host.state, 'running');
    assert.equal(host.pid, pid, 'init PID changed: the restarted agent recreated the VE');
    const v = await waitFor('adopted VE Ready', async () => {
      const x = await ves.get('adopt', ns);
      return findCondition(x?.status?.conditions, 'Ready')?.status === 'True' ? x : undefined;
    }, 10_000);
    assert.equal(v.status?.initPid, pid);
    assert.equal((await runtime.inspect(uid)).pid, pid, 'still the same init after the new agent converged');
    assert.ok(!events.some((e) => e.name === 'adopt' && (e.reason === 'Started' || e.reason === 'Created') && events.filter((x) => x.name === 'adopt' && x.reason === e.reason).length > 1), 'no second Started/Created after the restart');
  });

  it('a VE deleted while its agent was down (finalizer removed by hand) is removed from the host when the agent starts', async () => {
    const ve = await createRunning('crash');
    const uid = ve.metadata.uid!;
    const veDir = join(stateDir, 'node', 'ves', uid);
    assert.ok(existsSync(veDir));
    await agent!.stop();
    agent = undefined;
    // What an operator does when the agent is gone: drop the finalizer, delete the object.
    const fresh = (await ves.get('crash', ns))!;
    const i = fresh.metadata.finalizers?.indexOf(VE_FINALIZER) ?? -1;
    assert.ok(i >= 0, 'the agent had put its finalizer on');
    await ves.jsonPatch('crash', ns, [{ op: 'test', path: `/metadata/finalizers/${i}`, value: VE_FINALIZER }, { op: 'remove', path: `/metadata/finalizers/${i}` }]);
    await ves.delete('crash', ns);
    await waitFor('resource gone', async () => !(await ves.get('crash', ns)), 10_000);
    assert.equal((await runtime.inspect(uid)).state, 'running', 'the leftover still runs while no agent is there');
    agent = await startAgent();
    await waitFor('leftover removed', async () => {
      const h = await runtime.inspect(uid);
      return h.state === 'absent' && !existsSync(veDir) && !existsSync(`/sys/fs/cgroup/pids${cgroupPath(uid)}`);
    }, 20_000);
  });
});
