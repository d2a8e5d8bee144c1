// @kubernetes/client-node 1.4.0 against the embedded server over TLS with the written kubeconfig:
// CustomObjectsApi CRUD, a merge-patch of /status, KubernetesObjectApi, and an informer that
// sees ADD, UPDATE and DELETE.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import * as k8s from '@kubernetes/client-node';
import { aVE, readyStatus, startTestServer, type TestServer } from './helpers.js';

const G = { group: 'kubevz.io', version: 'v1alpha1', namespace: 'default', plural: 'virtualenvironments' };

describe('client-node 1.4.0', () => {
  let s: TestServer;
  let kc: k8s.KubeConfig;
  let co: k8s.CustomObjectsApi;

  before(async () => {
    s = await startTestServer({ heartbeatMs: 200 });
    kc = new k8s.KubeConfig();
    kc.loadFromFile(s.kubeconfigPath);
    co = kc.makeApiClient(k8s.CustomObjectsApi);
  });
  after(async () => {
    await s.dispose();
  });

  it('create, get, list, patch status with merge-patch, replace, delete; errors as ApiException', async () => {
    const created = (await co.createNamespacedCustomObject({ ...G, body: aVE('cn1') })) as k8s.KubernetesObject;
    assert.equal(created.metadata?.name, 'cn1');
    const got = (await co.getNamespacedCustomObject({ ...G, name: 'cn1' })) as { spec: { powerState: string } };
    assert.equal(got.spec.powerState, 'Running');
    const list = (await co.listNamespacedCustomObject({ ...G })) as k8s.KubernetesListObject<k8s.KubernetesObject>;
    assert.deepEqual(list.items.map((i) => i.metadata?.name), ['cn1']);
    const patched = (await co.patchNamespacedCustomObjectStatus(
      { ...G, name: 'cn1', body: readyStatus() },
      k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
    )) as { status: { phase: string } };
    assert.equal(patched.status.phase, 'Running');
    const jp = (await co.patchNamespacedCustomObject({ ...G, name: 'cn1', body: [{ op: 'add', path: '/spec/hostname', value: 'h1' }] })) as {
      spec: { hostname: string };
      metadata: { generation: number };
    };
    assert.equal(jp.spec.hostname, 'h1');
    assert.equal(jp.metadata.generation, 2);
    await assert.rejects(co.getNamespacedCustomObject({ ...G, name: 'nope' }), (err: unknown) => {
      const e = err as k8s.ApiException<string>;
      assert.equal(e.code, 404);
      assert.equal(JSON.parse(e.body).reason, 'NotFound');
      return true;
    });
    await assert.rejects(co.createNamespacedCustomObject({ ...G, body: { ...aVE('cn-bad'), spec: {} } }), (err: unknown) => {
      const e = err as k8s.ApiException<string>;
      assert.equal(e.code, 422);
      assert.equal(JSON.parse(e.body).details.causes[0].field, 'spec.template');
      return true;
    });
    await co.deleteNamespacedCustomObject({ ...G, name: 'cn1' });
    await assert.rejects(co.getNamespacedCustomObject({ ...G, name: 'cn1' }));
  });

  it('KubernetesObjectApi resolves the resource through discovery', async () => {
    const oa = k8s.KubernetesObjectApi.makeApiClient(kc);
    const created = await oa.create(aVE('oa1') as k8s.KubernetesObject);
    assert.equal(created.metadata?.namespace, 'default');
    const read = await oa.read({ apiVersion: 'kubevz.io/v1alpha1', kind: 'VirtualEnvironment', metadata: { name: 'oa1', namespace: 'default' } });
    const replaced = await oa.replace({ ...read, metadata: { ...read.metadata, labels: { x: 'y' } } });
    assert.equal(replaced.metadata?.labels?.x, 'y');
    await oa.patch(
      { apiVersion: 'kubevz.io/v1alpha1', kind: 'VirtualEnvironment', metadata: { name: 'oa1', namespace: 'default', labels: { x: 'z' } } },
      undefined, undefined, undefined, undefined, k8s.PatchStrategy.MergePatch,
    );
    await oa.delete({ apiVersion: 'kubevz.io/v1alpha1', kind: 'VirtualEnvironment', metadata: { name: 'oa1', namespace: 'default' } });
  });

  it('an informer gets ADD, UPDATE and DELETE', async () => {
    const path = '/apis/kubevz.io/v1alpha1/namespaces/default/virtualenvironments';
    const informer = k8s.makeInformer(kc, path, () => co.listNamespacedCustomObject({ ...G }) as Promise<k8s.KubernetesListObject<k8s.KubernetesObject>>);
    const seen: string[] = [];
    let notify: () => void = () => {};
    const record = (type: string) => (o: k8s.KubernetesObject) => {
      seen.push(`${type}:${o.metadata?.name ?? ''}`);
      notify();
    };
    informer.on('add', record('ADD'));
    informer.on('update', record('UPDATE'));
    informer.on('delete', record('DELETE'));
    informer.on('error', (err) => seen.push(`ERROR:${String(err)}`));
    const until = (want: string) =>
      new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`timed out waiting for ${want}; seen ${seen.join(', ')}`)), 5000);
        const check = () => {
          if (seen.includes(want)) {
            clearTimeout(t);
            resolve();
          }
        };
        notify = check;
        check();
      });
    await informer.start();
    try {
      await co.createNamespacedCustomObject({ ...G, body: aVE('inf1') });
      await until('ADD:inf1');
      await co.patchNamespacedCustomObjectStatus({ ...G, name: 'inf1', body: readyStatus() }, k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch));
      await until('UPDATE:inf1');
      await co.deleteNamespacedCustomObject({ ...G, name: 'inf1' });
      await until('DELETE:inf1');
      assert.ok(!seen.some((x) => x.startsWith('ERROR')), seen.join(', '));
      assert.equal(informer.list('default').length, 0);
    } finally {
      await informer.stop();
    }
  });
});
