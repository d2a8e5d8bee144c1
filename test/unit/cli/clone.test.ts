// `kvz clone`'s new object: the source's recipe with the clone's own identity.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { NODE_LABEL, type VirtualEnvironment } from '../../../src/api/types.js';
import { cloneObject } from '../../../src/cli/clone.js';

const src: VirtualEnvironment = {
  apiVersion: 'kubevz.io/v1alpha1',
  kind: 'VirtualEnvironment',
  metadata: { name: 'web1', namespace: 'prod', uid: 'u1', labels: { app: 'web', [NODE_LABEL]: 'n1' } },
  spec: { template: 'debian12', hostname: 'web1.example', resources: { memory: { limit: '512Mi' }, disk: { space: '4Gi' } }, network: { mode: 'bridged', addresses: ['10.0.0.5/24'] } },
  status: { nodeName: 'n1', addresses: ['10.0.0.5'] },
};

test('a clone keeps template, resources and node, and gets its own name, hostname, no copied address', () => {
  const c = cloneObject(src, 'web2', { ips: [] });
  assert.equal(c.metadata.name, 'web2');
  assert.equal(c.metadata.namespace, 'prod');
  assert.equal(c.metadata.uid, undefined, 'a new object gets a new uid');
  assert.deepEqual(c.metadata.labels, { app: 'web' }, 'no node binding copied');
  assert.equal(c.spec.cloneFrom, 'web1');
  assert.equal(c.spec.template, 'debian12');
  assert.equal(c.spec.hostname, 'web2');
  assert.equal(c.spec.nodeName, 'n1');
  assert.deepEqual(c.spec.resources, src.spec.resources);
  assert.notEqual(c.spec.resources, src.spec.resources, 'a copy, not shared');
  assert.deepEqual(c.spec.network, { mode: 'bridged' }, 'addresses are allocated, never copied');
  assert.deepEqual(cloneObject(src, 'web3', { ips: ['10.0.0.9/24'], hostname: 'w3' }).spec.network?.addresses, ['10.0.0.9/24']);
});
