// Compatibility matrix: every kubectl.1.NN installed next to the kubectl dispatcher (1.27–1.33
// here), plus the binaries in KVZ_EXTRA_KUBECTL (colon-separated; hack/test.sh passes Debian's
// kubectl 1.20, which hack/install-deps.sh unpacks with `apt-get download kubernetes-client` and
// `dpkg -x`, never installing it). Each runs, against one embedded server, the commands issue 5
// lists: client-side apply, server-side apply (with a conflict), server-side dry-run and diff,
// get (table, -o wide, -A, --show-labels, -l), patch --type=merge|json, describe with Events,
// explain, api-resources, get -w, wait for a condition and for deletion, delete held by a
// finalizer, and `create namespace|secret` (protobuf bodies from kubectl 1.32 on). Under CI a
// matrix without a kubectl older than 1.27 fails.

import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { inCI, requirePrereqs } from '../helpers/prereq.js';
import { silentLogger } from '../../src/core/logger.js';
import { type RunningApiServer, startApiServer } from '../../src/apiserver/index.js';
import { call, readyStatus, VE_PATH } from '../unit/apiserver/helpers.js';
import { type Background, clientMinor, extraKubectls, Kubectl, kubectlMinors, OLD_KUBECTL } from '../unit/apiserver/kubectl-runner.js';

const extra = extraKubectls();
const bins: { bin: string; minor: number | undefined }[] = [
  ...kubectlMinors(),
  ...extra.map((bin) => ({ bin, minor: existsSync(bin) ? clientMinor(bin) : undefined })),
];
/** The oldest kubectl the installed kubectl.1.NN set starts at; anything below comes from KVZ_EXTRA_KUBECTL. */
const FIRST_INSTALLED_MINOR = 27;

const veYaml = (name: string, labels: string, spec = '', meta = '') =>
  `apiVersion: kubevz.io/v1alpha1\nkind: VirtualEnvironment\nmetadata:\n  name: ${name}\n  labels: ${labels}\n${meta}spec:\n  template: busybox\n${spec}`;

describe('kubectl version matrix', () => {
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

  it('finds kubectl binaries to test, every listed extra one runnable', (t) => {
    if (!requirePrereqs(t, { binaries: ['kubectl'] })) return;
    assert.ok(bins.length > 0, 'no kubectl.1.NN next to the kubectl on PATH');
    for (const b of bins.filter((x) => extra.includes(x.bin))) {
      assert.ok(b.minor !== undefined, `KVZ_EXTRA_KUBECTL lists ${b.bin}, which does not exist or does not answer \`version --client -o json\``);
    }
  });

  it(`includes a kubectl older than 1.${FIRST_INSTALLED_MINOR} (Debian's 1.20)`, (t) => {
    const old = bins.filter((b) => b.minor !== undefined && b.minor < FIRST_INSTALLED_MINOR);
    if (old.length > 0) return;
    const why = `no kubectl older than 1.${FIRST_INSTALLED_MINOR} to test: run hack/install-deps.sh (it unpacks Debian's kubernetes-client, kubectl 1.20, into ${dirname(OLD_KUBECTL)}) and pass ${OLD_KUBECTL} in KVZ_EXTRA_KUBECTL (hack/test.sh does)`;
    if (inCI) assert.fail(why);
    t.skip(why);
  });

  for (const [i, { bin, minor }] of bins.entries()) {
    it(`kubectl 1.${minor ?? '?'} (${bin})`, async (t) => {
      if (!requirePrereqs(t, { binaries: ['kubectl'] })) return;
      assert.ok(minor !== undefined, `${bin} does not run`);
      const tag = `k${i}v${minor}`;
      const own = join(dir, tag);
      mkdirSync(own);
      const k = new Kubectl(own, s.kubeconfigPath, bin);
      const running: Background[] = [];
      t.after(() => running.forEach((r) => r.stop()));
      const what = (args: string[]) => `kubectl 1.${minor} ${args.join(' ')}`;
      const ok = async (args: string[]): Promise<string> => {
        const r = await k.run(args);
        assert.equal(r.code, 0, `${what(args)}: ${r.stderr}`);
        return r.stdout;
      };
      const fails = async (args: string[]): Promise<string> => {
        const r = await k.run(args);
        assert.notEqual(r.code, 0, `${what(args)} should fail: ${r.stdout}`);
        return r.stderr;
      };
      const file = (name: string, body: string): string => {
        const p = join(own, name);
        writeFileSync(p, body);
        return p;
      };
      const apiGet = async (name: string) => (await call(s, `${VE_PATH}/${name}`)).json();
      const a = `mx-${tag}-a`;
      const b = `mx-${tag}-b`;
      const sel = `matrix=${tag}`;
      const aLabels = `{matrix: ${tag}, app: web, tier: front}`;

      // Client-side apply: created, then unchanged.
      const fa = file('a.yaml', veYaml(a, aLabels, '  resources: {memory: {limit: 256Mi}}\n'));
      assert.match(await ok(['apply', '-f', fa]), new RegExp(`virtualenvironment\\.kubevz\\.io/${a} created`));
      assert.match(await ok(['apply', '-f', fa]), /unchanged/);
      const fb = file('b.yaml', veYaml(b, `{matrix: ${tag}, app: db}`, '', '  finalizers: [kubevz.io/matrix]\n'));
      assert.match(await ok(['apply', '-f', fb]), /created/);

      // get: table, -o wide, -A, --show-labels, label selectors.
      const table = await ok(['get', 've', '-l', sel]);
      assert.match(table, /^NAME\s+PHASE\s+NODE\s+IP\s+READY\s+AGE\n/);
      assert.match(table, new RegExp(`\\n${a}\\s`));
      assert.match(await ok(['get', 've', '-l', sel, '-o', 'wide']), new RegExp(`^NAME\\s+PHASE\\s+NODE\\s+IP\\s+READY\\s+TEMPLATE\\s+AGE\\n(.*\\n)*${a}\\s+busybox\\s+\\d+s`));
      assert.match(await ok(['get', 've', '-A', '-l', sel]), new RegExp(`^NAMESPACE\\s+NAME\\s+PHASE(.*\\n)+default\\s+${a}\\s`));
      assert.match(await ok(['get', 've', '-l', sel, '--show-labels']), new RegExp(`\\n${a}\\s.*app=web,matrix=${tag},tier=front`));
      assert.equal((await ok(['get', 've', '-l', `${sel},app in (web,db),tier!=front`, '-o', 'name'])).trim(), `virtualenvironment.kubevz.io/${b}`);
      assert.equal((await ok(['get', 've', '-l', `${sel},!tier`, '-o', 'name'])).trim(), `virtualenvironment.kubevz.io/${b}`);

      // patch: merge and JSON patches.
      assert.match(await ok(['patch', 've', a, '--type=merge', '-p', '{"spec":{"hostname":"merged"}}']), /patched/);
      assert.equal((await apiGet(a)).spec.hostname, 'merged');
      assert.match(await ok(['patch', 've', a, '--type=json', '-p', '[{"op":"replace","path":"/spec/hostname","value":"jsoned"}]']), /patched/);
      assert.equal((await apiGet(a)).spec.hostname, 'jsoned');

      // Server-side dry-run and diff: kubectl 1.20 first looks for `dryRun` on the kind's PATCH in /openapi/v2.
      const fdry = file('a-dry.yaml', veYaml(a, aLabels, '  hostname: dry\n  resources: {memory: {limit: 256Mi}}\n'));
      assert.match(await ok(['apply', '--dry-run=server', '-f', fdry]), /configured \(server dry run\)/);
      assert.match(await ok(['apply', '--server-side', '--force-conflicts', '--dry-run=server', '-f', fdry]), /serverside-applied \(server dry run\)/);
      const diff = await k.run(['diff', '-f', fdry]);
      assert.equal(diff.code, 1, `${what(['diff'])}: exit 1 means differences (${diff.stderr})`);
      assert.match(diff.stdout, /^-\s+hostname: jsoned$/m);
      assert.match(diff.stdout, /^\+\s+hostname: dry$/m);
      assert.equal((await apiGet(a)).spec.hostname, 'jsoned', 'dry runs changed nothing');

      // Server-side apply taking the fields over, then a conflict for another manager.
      const fssa = file('a-ssa.yaml', veYaml(a, aLabels, `  hostname: ${a}\n`));
      assert.match(await ok(['apply', '--server-side', '--force-conflicts', '-f', fssa]), /serverside-applied/);
      const cur = await apiGet(a);
      assert.equal(cur.spec.hostname, a);
      // kubectl ≥1.26 moves client-side-apply ownership to its apply manager first, so the field it
      // no longer applies is removed; older kubectl leaves it owned by kubectl-client-side-apply.
      const csaOwns = (cur.metadata.managedFields as { manager: string; fieldsV1: { 'f:spec'?: Record<string, unknown> } }[])
        .some((m) => m.manager === 'kubectl-client-side-apply' && m.fieldsV1['f:spec']?.['f:resources'] !== undefined);
      assert.equal(cur.spec.resources === undefined, !csaOwns, JSON.stringify(cur.metadata.managedFields));
      if (minor >= 26) assert.equal(cur.spec.resources, undefined);
      const conflict = await fails(['apply', '--server-side', '--field-manager=other', '-f', file('a-other.yaml', veYaml(a, aLabels, '  hostname: other\n'))]);
      assert.match(conflict, /Apply failed with 1 conflict: conflict with "kubectl": \.spec\.hostname/);
      assert.match(conflict, /--force-conflicts/);

      // describe with the object's core/v1 Events.
      const now = new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
      const ev = {
        apiVersion: 'v1', kind: 'Event', metadata: { name: `${a}.${Date.now().toString(16)}`, namespace: 'default' },
        involvedObject: { apiVersion: 'kubevz.io/v1alpha1', kind: 'VirtualEnvironment', name: a, namespace: 'default', uid: cur.metadata.uid },
        reason: 'Started', message: `VE ${a} started on node-a`, type: 'Normal', source: { component: 'kubevz-node-agent' },
        firstTimestamp: now, lastTimestamp: now, count: 1,
      };
      assert.equal((await call(s, '/api/v1/namespaces/default/events', { method: 'POST', body: ev })).status, 201);
      const described = await ok(['describe', 've', a]);
      assert.match(described, new RegExp(`Name:\\s+${a}\\n`));
      assert.match(described, /Template:\s+busybox/);
      assert.match(described, new RegExp(`Normal\\s+Started\\s+\\S+\\s+kubevz-node-agent\\s+VE ${a} started on node-a`));

      // explain (OpenAPI v2 before 1.27, v3 after) and api-resources (discovery).
      const explained = await ok(['explain', 've.spec.resources']);
      assert.match(explained, /KIND:\s+VirtualEnvironment/);
      assert.match(explained, /openFiles\s+<integer>\s*\n\s+Open files per process/);
      assert.match(await ok(['explain', 'venodes']), /KIND:\s+VENode/);
      assert.match(await ok(['api-resources']), /virtualenvironments\s+ve\s+kubevz\.io\/v1alpha1\s+true\s+VirtualEnvironment/);
      const names = (await ok(['api-resources', '--api-group=kubevz.io', '-o', 'name'])).split('\n').filter(Boolean).sort();
      assert.deepEqual(names, ['vemigrations.kubevz.io', 'venodes.kubevz.io', 'vetemplates.kubevz.io', 'virtualenvironments.kubevz.io']);

      // get -w sees the status change; then wait for the condition.
      const w = k.background(['get', 've', '-l', sel, '-w', '--output-watch-events']);
      running.push(w);
      await w.waitFor(new RegExp(`\\n\\S*\\s*${a}\\s`));
      const st = await call(s, `${VE_PATH}/${a}/status`, { method: 'PATCH', body: readyStatus(cur.metadata.generation), contentType: 'application/merge-patch+json' });
      assert.equal(st.status, 200, st.text);
      await w.waitFor(new RegExp(`MODIFIED\\s+${a}\\s+Running\\s+True`));
      w.stop();
      assert.match(await ok(['wait', '--for=condition=Ready', `ve/${a}`, '--timeout=20s']), /condition met/);

      // delete held by a finalizer, and wait --for=delete until the finalizer goes.
      assert.match(await ok(['delete', 've', b, '--wait=false']), new RegExp(`"${b}" deleted`));
      assert.ok((await apiGet(b)).metadata.deletionTimestamp, 'deletion pending on the finalizer');
      const gone = k.background(['wait', '--for=delete', `ve/${b}`, '--timeout=30s', '-v=6']);
      running.push(gone);
      // -v=6 logs each request once answered: the watch is open when its line appears.
      await gone.waitFor(/[?&]watch=(true|1)\b.*200 OK/, 20_000, 'stderr');
      const unfin = await call(s, `${VE_PATH}/${b}`, { method: 'PATCH', body: { metadata: { finalizers: null } }, contentType: 'application/merge-patch+json' });
      assert.equal(unfin.status, 200, unfin.text);
      const waited = await gone.done;
      assert.equal(waited.code, 0, waited.stderr);
      assert.equal((await call(s, `${VE_PATH}/${b}`)).status, 404);

      // kubectl create namespace|secret go through typed clients, which send protobuf bodies from 1.32 on.
      const ns = `mx-${tag}-ns`;
      assert.match(await ok(['create', 'namespace', ns]), new RegExp(`namespace/${ns} created`));
      assert.match(await ok(['create', 'secret', 'generic', 'mx-secret', '-n', ns, '--from-literal=user=pb', '--type=kubevz.io/test']), /secret\/mx-secret created/);
      assert.match(await ok(['get', 'ns', ns]), new RegExp(`\\n${ns}\\s+Active\\s`));
      assert.match(await ok(['get', 'secret', '-n', ns, 'mx-secret']), /\nmx-secret\s+kubevz\.io\/test\s/);
      const secret = (await call(s, `/api/v1/namespaces/${ns}/secrets/mx-secret`)).json();
      assert.deepEqual([secret.data, secret.type], [{ user: Buffer.from('pb').toString('base64') }, 'kubevz.io/test']);
      assert.match(await ok(['delete', 'secret', '-n', ns, 'mx-secret']), /deleted/);
      assert.match(await ok(['delete', 'namespace', ns]), /deleted/);
      assert.equal((await call(s, `/api/v1/namespaces/${ns}`)).status, 404);

      assert.match(await ok(['delete', 've', a]), new RegExp(`"${a}" deleted`));
      assert.equal((await call(s, `${VE_PATH}/${a}`)).status, 404);
    });
  }
});
