// Compatibility matrix: every kubectl.1.NN installed next to the kubectl dispatcher (1.27–1.33
// here), plus any binaries listed in KVZ_EXTRA_KUBECTL (colon-separated, e.g. Debian's kubectl
// 1.20 unpacked with `apt-get download kubernetes-client && dpkg -x`), runs client-side apply,
// server-side apply, get (table), wait for a condition, and delete against the embedded server.

import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { requirePrereqs } from '../helpers/prereq.js';
import { silentLogger } from '../../src/core/logger.js';
import { type RunningApiServer, startApiServer } from '../../src/apiserver/index.js';
import { call, readyStatus, VE_PATH } from '../unit/apiserver/helpers.js';
import { Kubectl, kubectlMinors } from '../unit/apiserver/kubectl-runner.js';

const extra = (process.env.KVZ_EXTRA_KUBECTL ?? '').split(':').filter((p) => p !== '' && existsSync(p));
const bins = [...kubectlMinors().map((m) => m.bin), ...extra];

describe('kubectl version matrix: apply / get / wait / delete', () => {
  let dir: string;
  let s: RunningApiServer;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'kvz-kubectl-matrix-'));
    s = await startApiServer({ stateDir: join(dir, 'state'), port: 0, log: silentLogger, heartbeatMs: 1000 });
  });
  after(async () => {
    try {
      await (s as RunningApiServer | undefined)?.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('finds kubectl binaries to test', (t) => {
    if (!requirePrereqs(t, { binaries: ['kubectl'] })) return;
    assert.ok(bins.length > 0, 'no kubectl.1.NN next to the kubectl on PATH');
  });

  for (const bin of bins) {
    it(basename(bin), async (t) => {
      if (!requirePrereqs(t, { binaries: ['kubectl'] })) return;
      const tag = basename(bin).replace(/[^a-z0-9]/gi, '').toLowerCase();
      const own = join(dir, tag);
      mkdirSync(own);
      const k = new Kubectl(own, s.kubeconfigPath, bin);
      const ok = async (args: string[]) => {
        const r = await k.run(args);
        assert.equal(r.code, 0, `${bin} ${args.join(' ')}: ${r.stderr}`);
        return r.stdout;
      };
      const name = `mx-${tag}`;
      const f = join(own, 've.yaml');
      writeFileSync(f, `apiVersion: kubevz.io/v1alpha1\nkind: VirtualEnvironment\nmetadata:\n  name: ${name}\n  labels: {matrix: "${tag}"}\nspec:\n  template: busybox\n  resources: {memory: {limit: 256Mi}}\n`);
      assert.match(await ok(['apply', '-f', f]), new RegExp(`virtualenvironment\\.kubevz\\.io/${name} created`));
      assert.match(await ok(['apply', '-f', f]), /unchanged/);
      writeFileSync(f, `apiVersion: kubevz.io/v1alpha1\nkind: VirtualEnvironment\nmetadata:\n  name: ${name}\nspec:\n  template: busybox\n  hostname: ${name}\n`);
      assert.match(await ok(['apply', '--server-side', '--force-conflicts', '-f', f]), /serverside-applied/);
      const table = await ok(['get', 've', name]);
      assert.match(table, /^NAME\s+PHASE\s+NODE\s+IP\s+READY\s+AGE\n/);
      assert.match(table, new RegExp(`\\n${name}\\s`));
      const cur = (await call(s, `${VE_PATH}/${name}`)).json();
      assert.equal(cur.spec.hostname, name);
      // kubectl ≥1.26 moves client-side-apply ownership to its apply manager first, so the field it
      // no longer applies is removed; older kubectl leaves it owned by kubectl-client-side-apply.
      const csaOwns = (cur.metadata.managedFields as { manager: string; fieldsV1: { 'f:spec'?: Record<string, unknown> } }[])
        .some((m) => m.manager === 'kubectl-client-side-apply' && m.fieldsV1['f:spec']?.['f:resources'] !== undefined);
      assert.equal(cur.spec.resources === undefined, !csaOwns, JSON.stringify(cur.metadata.managedFields));
      const minor = /kubectl\.1\.(\d+)$/.exec(bin);
      if (minor && Number(minor[1]) >= 26) assert.equal(cur.spec.resources, undefined);
      assert.equal((await call(s, `${VE_PATH}/${name}/status`, { method: 'PATCH', body: readyStatus(cur.metadata.generation), contentType: 'application/merge-patch+json' })).status, 200);
      assert.match(await ok(['wait', '--for=condition=Ready', `ve/${name}`, '--timeout=20s']), /condition met/);
      assert.match(await ok(['delete', 've', name]), new RegExp(`"${name}" deleted`));
      assert.equal((await call(s, `${VE_PATH}/${name}`)).status, 404);
    });
  }
});
