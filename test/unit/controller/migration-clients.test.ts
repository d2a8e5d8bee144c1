// What the migration controller needs from the API, checked on the fake and on client-node against
// the embedded API server alike: guarded JSON patches of VEMigration status (a stale
// resourceVersion is a Conflict) and core/v1 Secrets (the /api/v1 path, not /apis).

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { transitionPatch } from '../../../src/api/migration-phases.js';
import { VEM_RESOURCE, type VEMigration } from '../../../src/api/types.js';
import { startApiServer } from '../../../src/apiserver/index.js';
import { SECRET_REF, type Secret } from '../../../src/controller/migration.js';
import { errorCode } from '../../../src/core/errors.js';
import { loadKubeConfig, makeResourceClient } from '../../../src/core/kube-client.js';
import { silentLogger } from '../../../src/core/logger.js';
import type { ResourceClient } from '../../../src/core/resource-client.js';
import { FakeApi } from '../../helpers/fake-resource-client.js';

const VEM_REF = { ...VEM_RESOURCE, namespaced: true };

interface Subject {
  migrations: ResourceClient<VEMigration>;
  secrets: ResourceClient<Secret>;
  close?: () => Promise<void>;
}

function suite(title: string, make: () => Promise<Subject>): void {
  describe(`migration clients: ${title}`, () => {
    let s: Subject;
    before(async () => {
      s = await make();
    });
    after(async () => {
      await s.close?.();
    });

    it('jsonPatchStatus writes a transition and refuses a stale one with Conflict', async () => {
      const name = `m-${process.pid}-${Date.now().toString(36)}`;
      const m = await s.migrations.create({ apiVersion: 'kubevz.io/v1alpha1', kind: 'VEMigration', metadata: { name, namespace: 'default' }, spec: { ve: 'web1', targetNode: 'b' } });
      const pending = await s.migrations.jsonPatchStatus(name, 'default', transitionPatch(m, 'Pending', { message: 'accepted', status: { startTime: '2026-01-01T12:00:00Z' } }));
      assert.equal(pending.status?.phase, 'Pending');
      assert.deepEqual(pending.status?.transitions?.map((t) => t.phase), ['Pending']);
      // The spec is untouched by a status patch.
      assert.equal(pending.spec.targetNode, 'b');
      await assert.rejects(s.migrations.jsonPatchStatus(name, 'default', transitionPatch({ ...m, status: { phase: 'Pending' } }, 'Scheduling')), (e) => {
        assert.equal(errorCode(e), 'Conflict', (e as Error).message);
        return true;
      });
      const next = await s.migrations.jsonPatchStatus(name, 'default', transitionPatch(pending, 'Scheduling'));
      assert.deepEqual(next.status?.transitions?.map((t) => t.phase), ['Pending', 'Scheduling']);
      assert.equal(await s.migrations.delete(name, 'default'), true);
    });

    it('core/v1 Secrets: create, get, list, watch, delete', async () => {
      const name = `cred-${process.pid}-${Date.now().toString(36)}`;
      const seen: string[] = [];
      const informer = await s.secrets.inform({ namespace: 'default' }, (type, o) => {
        if (o.metadata?.name === name) seen.push(type);
      });
      try {
        const created = await s.secrets.create({ apiVersion: 'v1', kind: 'Secret', metadata: { name, namespace: 'default' }, type: 'Opaque', data: { token: Buffer.from('x'.repeat(32)).toString('base64') } });
        assert.ok(created.metadata?.uid);
        const got = await s.secrets.get(name, 'default');
        assert.equal(got?.data?.token, Buffer.from('x'.repeat(32)).toString('base64'));
        assert.ok((await s.secrets.list({ namespace: 'default' })).some((x) => x.metadata?.name === name));
        await assert.rejects(s.secrets.create({ apiVersion: 'v1', kind: 'Secret', metadata: { name, namespace: 'default' }, type: 'Opaque', data: {} }), (e) => errorCode(e) === 'AlreadyExists');
        const patched = await s.secrets.mergePatch(name, 'default', { metadata: { labels: { a: 'b' } } });
        assert.equal(patched.metadata?.labels?.a, 'b');
        assert.equal(await s.secrets.delete(name, 'default'), true);
        assert.equal(await s.secrets.get(name, 'default'), undefined);
        assert.equal(await s.secrets.delete(name, 'default'), false);
        const end = Date.now() + 5000;
        while (!seen.includes('DELETED') && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
        assert.deepEqual(seen.filter((t) => t !== 'MODIFIED'), ['ADDED', 'DELETED']);
      } finally {
        await informer.stop();
      }
    });
  });
}

suite('in-memory fake', async () => {
  const api = new FakeApi();
  return { migrations: api.client<VEMigration>(VEM_REF), secrets: api.client<Secret>(SECRET_REF) };
});

suite('client-node against the embedded API server', async () => {
  const stateDir = mkdtempSync(join(tmpdir(), 'kvz-migclients-'));
  const server = await startApiServer({ stateDir, host: '127.0.0.1', port: 0, log: silentLogger });
  const kc = loadKubeConfig(server.kubeconfigPath);
  return {
    migrations: makeResourceClient<VEMigration>(kc, VEM_REF, silentLogger),
    secrets: makeResourceClient<Secret>(kc, SECRET_REF, silentLogger),
    close: async () => {
      await server.close();
      rmSync(stateDir, { recursive: true, force: true });
    },
  };
});
