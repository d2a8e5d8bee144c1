// Real kubectl (the dispatcher picks kubectl 1.32 from the server's /version) against the embedded
// API server over TLS with the kubeconfig it writes: apply, get, get -o yaml, wait for a condition,
// an invalid manifest, delete, applying crds/, and a request without the token.

import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { requirePrereqs } from '../helpers/prereq.js';
import { silentLogger } from '../../src/core/logger.js';
import { type RunningApiServer, startApiServer } from '../../src/apiserver/index.js';
import { call, readyStatus } from '../unit/apiserver/helpers.js';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));

describe('kubectl against the embedded API server', () => {
  let dir: string;
  let s: RunningApiServer | undefined;
  let kubectlBin = 'kubectl';

  const kubectl = (args: string[], bin = kubectlBin): Promise<Run> =>
    new Promise((resolve) => {
      execFile(bin, [...args, `--cache-dir=${join(dir, 'kube-cache')}`], { env: { ...process.env, HOME: join(dir, 'home'), KUBECONFIG: s?.kubeconfigPath ?? '' }, timeout: 60_000 }, (err, stdout, stderr) => {
        resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
      });
    });

  const ok = async (args: string[]): Promise<string> => {
    const r = await kubectl(args);
    assert.equal(r.code, 0, `kubectl ${args.join(' ')} failed: ${r.stderr}`);
    return r.stdout;
  };

  const manifest = (name: string, body: string): string => {
    const p = join(dir, `${name}.yaml`);
    writeFileSync(p, body);
    return p;
  };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'kvz-kubectl-'));
    s = await startApiServer({ stateDir: join(dir, 'state'), port: 0, log: silentLogger, heartbeatMs: 1000 });
  });
  after(async () => {
    await s?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('apply, get, get -o yaml, wait, invalid manifest, delete', async (t) => {
    if (!requirePrereqs(t, { binaries: ['kubectl'] })) return;
    const ve = manifest('web1', 'apiVersion: kubevz.io/v1alpha1\nkind: VirtualEnvironment\nmetadata:\n  name: web1\nspec:\n  template: busybox\n  resources:\n    memory: {limit: 512Mi}\n');
    assert.match(await ok(['apply', '-f', ve]), /virtualenvironment\.kubevz\.io\/web1 created/);
    assert.match(await ok(['apply', '-f', ve]), /unchanged/);

    const table = await ok(['get', 've']);
    assert.match(table, /^NAME\s+PHASE\s+NODE\s+IP\s+READY\s+AGE\n/);
    assert.match(table, /\nweb1\s+/);
    assert.match(await ok(['get', 'virtualenvironments', '-A', '-o', 'wide']), /default\s+web1\s+.*busybox/);

    const yaml = await ok(['get', 've', 'web1', '-o', 'yaml']);
    assert.match(yaml, /powerState: Running/);
    assert.match(yaml, /generation: 1/);
    assert.match(yaml, /resourceVersion: "\d+"/);

    // kubectl ≥1.21 waits for a Ready condition whose observedGeneration is current.
    const waiting = kubectl(['wait', '--for=condition=Ready', 've/web1', '--timeout=20s']);
    await new Promise((r) => setTimeout(r, 500));
    const patched = await setReady(s as RunningApiServer, 'web1');
    assert.equal(patched, 200);
    const w = await waiting;
    assert.equal(w.code, 0, w.stderr);
    assert.match(w.stdout, /condition met/);
    assert.match(await ok(['get', 've', 'web1']), /web1\s+Running\s+.*True/);

    const bad = manifest('bad', 'apiVersion: kubevz.io/v1alpha1\nkind: VirtualEnvironment\nmetadata:\n  name: bad1\nspec:\n  powerState: Sideways\n  resources:\n    cpu: {units: 1}\n');
    const r = await kubectl(['apply', '-f', bad]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /spec\.template: Required value/);
    assert.match(r.stderr, /spec\.powerState: Unsupported value: "Sideways"/);
    assert.match(r.stderr, /spec\.resources\.cpu\.units/);

    assert.match(await ok(['delete', 've', 'web1']), /"web1" deleted/);
    const gone = await kubectl(['get', 've', 'web1']);
    assert.notEqual(gone.code, 0);
    assert.match(gone.stderr, /NotFound/);
  });

  it('server-side apply, merge patch, strategic patch refused, describe, crds/', async (t) => {
    if (!requirePrereqs(t, { binaries: ['kubectl'] })) return;
    const ve = manifest('ssa', 'apiVersion: kubevz.io/v1alpha1\nkind: VirtualEnvironment\nmetadata:\n  name: ssa\nspec:\n  template: busybox\n');
    assert.match(await ok(['apply', '--server-side', '-f', ve]), /serverside-applied/);
    assert.match(await ok(['patch', 've', 'ssa', '--type=merge', '-p', '{"spec":{"hostname":"ssa"}}']), /patched/);
    const smp = await kubectl(['patch', 've', 'ssa', '-p', '{"spec":{"hostname":"x"}}']);
    assert.notEqual(smp.code, 0);
    assert.match(await ok(['describe', 've', 'ssa']), /Name:\s+ssa/);
    assert.match(await ok(['apply', '-f', join(repoRoot, 'crds')]), /virtualenvironments\.kubevz\.io (configured|unchanged)/);
    assert.match(await ok(['get', 'crd']), /virtualenvironments\.kubevz\.io/);
    await ok(['delete', 've', 'ssa', '--wait=true']);
  });

  it('other kubectl minors next to the dispatcher can list', async (t) => {
    if (!requirePrereqs(t, { binaries: ['kubectl'] })) return;
    const which = await new Promise<string>((resolve) => execFile('sh', ['-c', 'command -v kubectl'], (_e, out) => resolve(out.trim())));
    const binDir = dirname(realpathSync(which));
    const minors = ['1.27', '1.33'].map((m) => join(binDir, `kubectl.${m}`)).filter((p) => existsSync(p));
    if (minors.length === 0) return t.skip('no kubectl.1.NN binaries next to kubectl');
    const ve = manifest('mx', 'apiVersion: kubevz.io/v1alpha1\nkind: VirtualEnvironment\nmetadata:\n  name: mx\nspec:\n  template: busybox\n');
    for (const bin of minors) {
      const a = await kubectl(['apply', '-f', ve], bin);
      assert.equal(a.code, 0, `${bin}: ${a.stderr}`);
      const g = await kubectl(['get', 've', 'mx'], bin);
      assert.match(g.stdout, /^NAME\s+PHASE/, `${bin}: ${g.stderr}`);
      const d = await kubectl(['delete', 've', 'mx'], bin);
      assert.equal(d.code, 0, `${bin}: ${d.stderr}`);
    }
  });

  it('a request without the token gets 401 (curl)', async (t) => {
    if (!requirePrereqs(t, { binaries: ['curl'] })) return;
    const ca = join(dir, 'ca.crt');
    writeFileSync(ca, (s as RunningApiServer).caCertPem);
    const out = await new Promise<string>((resolve, reject) => {
      const p = spawn('curl', ['-s', '--cacert', ca, '-w', '\n%{http_code}', `${(s as RunningApiServer).url}/apis/kubevz.io/v1alpha1/virtualenvironments`]);
      let buf = '';
      p.stdout.on('data', (c: Buffer) => (buf += c.toString()));
      p.on('error', reject);
      p.on('close', () => resolve(buf));
    });
    const [body, code] = out.split('\n');
    assert.equal(code, '401');
    assert.equal(JSON.parse(body ?? '{}').reason, 'Unauthorized');
  });
});

/** Sets Ready=True through /status the way the node agent would (merge patch, current generation). */
async function setReady(s: RunningApiServer, name: string): Promise<number> {
  const cur = (await call(s, `/apis/kubevz.io/v1alpha1/namespaces/default/virtualenvironments/${name}`)).json();
  const r = await call(s, `/apis/kubevz.io/v1alpha1/namespaces/default/virtualenvironments/${name}/status`, {
    method: 'PATCH',
    body: readyStatus(cur.metadata.generation),
    contentType: 'application/merge-patch+json',
  });
  return r.status;
}
