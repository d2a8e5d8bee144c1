// Two leader-elected controllers (the same construction `kvz controller` uses) against the
// embedded API server on a free port: exactly one leads at any sampled moment, the leader's
// controller schedules, and when it stops (releasing the Lease) the other takes over and
// schedules too. The Lease carries MicroTime with six fractional digits.

import * as k8s from '@kubernetes/client-node';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { NODE_LABEL, VE_RESOURCE, VENODE_RESOURCE, type VENode, type VirtualEnvironment } from '../../src/api/types.js';
import { startApiServer, type RunningApiServer } from '../../src/apiserver/index.js';
import { startLeaderElectedController, type ControllerHandle } from '../../src/cli/components.js';
import { loadKubeConfig, makeResourceClient } from '../../src/core/kube-client.js';
import { silentLogger } from '../../src/core/logger.js';
import type { ResourceClient } from '../../src/core/resource-client.js';
import { NodeRegistration } from '../../src/node-agent/index.js';
import { waitFor } from '../helpers/kvz-up.js';

describe('leader election between two controllers', () => {
  const stateDir = mkdtempSync(join(tmpdir(), 'kvz-le-'));
  let server: RunningApiServer;
  let kc: k8s.KubeConfig;
  let ves: ResourceClient<VirtualEnvironment>;
  let reg: NodeRegistration;
  const handles: ControllerHandle[] = [];
  let sampler: NodeJS.Timeout | undefined;
  let bothLed = 0;
  let samples = 0;
  const leaseNamespace = `le-${process.pid}`;

  before(async () => {
    server = await startApiServer({ stateDir, port: 0, log: silentLogger });
    kc = loadKubeConfig(server.kubeconfigPath);
    ves = makeResourceClient<VirtualEnvironment>(kc, { ...VE_RESOURCE, namespaced: true }, silentLogger);
    const nodes = makeResourceClient<VENode>(kc, { ...VENODE_RESOURCE, namespaced: false }, silentLogger);
    reg = new NodeRegistration({
      nodes, nodeName: 'le-node', heartbeatMs: 300, log: silentLogger,
      probe: { capacity: () => ({ cpuMilli: 2000, memoryBytes: 2 ** 32, diskBytes: 2 ** 36 }), features: async () => ({ cgroupVersion: 'v1' }), info: () => ({ kernelVersion: 't', hostname: 't' }) },
    });
    await reg.start();
  });

  after(async () => {
    if (sampler) clearInterval(sampler);
    reg?.stop();
    for (const h of handles) await h.stop();
    await server?.close();
    rmSync(stateDir, { recursive: true, force: true });
  });

  const start = (identity: string) => {
    const h = startLeaderElectedController({ kc, log: silentLogger, identity, leaseNamespace, recampaign: false, leaseDurationMs: 3000, renewDeadlineMs: 2000, retryPeriodMs: 300 });
    handles.push(h);
    return h;
  };
  const aVE = (name: string): VirtualEnvironment => ({ apiVersion: 'kubevz.io/v1alpha1', kind: 'VirtualEnvironment', metadata: { name, namespace: leaseNamespace }, spec: { template: 'busybox' } });

  it('one leads, the other waits; never both', async () => {
    const a = start('ctl-a');
    await waitFor('a leads', async () => a.isLeader(), 5000);
    const b = start('ctl-b');
    sampler = setInterval(() => {
      samples++;
      if (a.isLeader() && b.isLeader()) bothLed++;
    }, 20);
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(b.isLeader(), false);
    const lease = await kc.makeApiClient(k8s.CoordinationV1Api).readNamespacedLease({ name: 'kubevz-controller', namespace: leaseNamespace });
    assert.equal(lease.spec?.holderIdentity, 'ctl-a');
    // The raw stored value (not client-node's Date): six fractional digits.
    const raw = await fetchRaw(`/apis/coordination.k8s.io/v1/namespaces/${leaseNamespace}/leases/kubevz-controller`);
    assert.match(raw.spec.renewTime, /\.\d{6}Z$/);
    await ves.create(aVE('first'));
    const node = await waitFor('first bound', async () => (await ves.get('first', leaseNamespace))?.metadata.labels?.[NODE_LABEL], 5000);
    assert.equal(node, 'le-node');
  });

  it('when the leader stops it releases the Lease; the other takes over and acts', async () => {
    const [a, b] = handles as [ControllerHandle, ControllerHandle];
    const t0 = Date.now();
    await a.stop();
    await waitFor('b leads', async () => b.isLeader(), 5000);
    const took = Date.now() - t0;
    process.stderr.write(`# takeover after release: ${took} ms (lease 3000 ms)\n`);
    assert.ok(took < 3000, `a released lease is taken without waiting for expiry (${took} ms)`);
    await ves.create(aVE('second'));
    assert.equal(await waitFor('second bound', async () => (await ves.get('second', leaseNamespace))?.metadata.labels?.[NODE_LABEL], 5000), 'le-node');
    clearInterval(sampler);
    sampler = undefined;
    assert.ok(samples > 50, `sampled ${samples} times`);
    assert.equal(bothLed, 0, 'two controllers led at the same time');
  });

  function fetchRaw(path: string): Promise<any> {
    return new Promise((resolve, reject) => {
      const req = request(`${server.url}${path}`, { ca: server.caCertPem, headers: { authorization: `Bearer ${server.token}` } }, (res) => {
        let body = '';
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve(JSON.parse(body)));
      });
      req.on('error', reject);
      req.end();
    });
  }
});
