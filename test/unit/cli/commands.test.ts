import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { parse as parseYaml } from 'yaml';
import type { VirtualEnvironment } from '../../../src/api/types.js';
import { VE_REF, findKubeconfig, stderrLogger, type CliIO, type Connection } from '../../../src/cli/context.js';
import { runCli } from '../../../src/cli/main.js';
import { KvzError } from '../../../src/core/errors.js';
import { FakeRuntime } from '../../helpers/fake-runtime.js';
import { refsFromCrds, registryApplyTarget } from '../../../src/sources/kinds.js';
import { FakeApi } from '../../helpers/fake-resource-client.js';

const NOW = new Date('2024-01-01T12:00:00Z');

interface Harness {
  io: CliIO;
  api: FakeApi;
  runtime: FakeRuntime;
  out: string[];
  err: string[];
  execs: { uid: string; argv: string[]; tty: boolean }[];
  run(...argv: string[]): Promise<number>;
}

function harness(opts: { connect?: () => Connection; stdin?: string; isTTY?: boolean; execCode?: number } = {}): Harness {
  const api = new FakeApi({ now: () => new Date('2024-01-01T11:59:15Z') });
  const out: string[] = [];
  const err: string[] = [];
  const execs: Harness['execs'] = [];
  const connection: Connection = {
    kubeconfigPath: '/fake/kubeconfig',
    server: 'https://fake:6443',
    target: registryApplyTarget(refsFromCrds(), (ref) => api.client(ref), 'https://fake:6443'),
    ves: api.client<VirtualEnvironment>(VE_REF),
  };
  const runtime = new FakeRuntime();
  runtime.exec = async (uid, argv, o) => (execs.push({ uid, argv, tty: o.tty }), opts.execCode ?? 0);
  const io: CliIO = {
    stdout: (s) => void out.push(s),
    stderr: (s) => void err.push(s),
    env: {},
    stdinIsTTY: opts.isTTY ?? false,
    readStdin: () => opts.stdin ?? '',
    now: () => NOW,
    hostname: () => 'node-a',
    log: stderrLogger((s) => void err.push(s)),
    connect: opts.connect ?? (() => connection),
    runtime: async () => runtime,
    sleep: async () => {},
  };
  return { io, api, runtime, out, err, execs, run: (...argv) => runCli(argv, io) };
}

const veDoc = (name: string, spec = '  template: busybox\n') => `apiVersion: kubevz.io/v1alpha1\nkind: VirtualEnvironment\nmetadata:\n  name: ${name}\nspec:\n${spec}`;

async function runningVE(h: Harness, name: string, node = 'node-a'): Promise<VirtualEnvironment> {
  const c = h.api.client<VirtualEnvironment>(VE_REF);
  await c.create({ apiVersion: 'kubevz.io/v1alpha1', kind: 'VirtualEnvironment', metadata: { name, namespace: 'default' }, spec: { template: 'busybox' } });
  const ve = await c.patchStatus(name, 'default', { phase: 'Running', nodeName: node, addresses: ['10.213.0.10/24'] });
  if (node === 'node-a') {
    // This host runs it: the runtime has it running.
    await h.runtime.ensureTemplate('busybox');
    await h.runtime.ensureRunning({ uid: ve.metadata.uid!, name: `default/${name}`, hostname: name, template: 'busybox', addresses: ['10.213.0.10/24'], limits: {} });
  }
  return ve;
}

describe('kvz commands', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'kvz-cli-'));
  after(() => rmSync(tmp, { recursive: true, force: true }));

  it('apply -f FILE creates, then reports unchanged and configured', async () => {
    const h = harness();
    const file = join(tmp, 'web.yaml');
    writeFileSync(file, `${veDoc('web1')}---\n${veDoc('web2')}`);
    assert.equal(await h.run('apply', '-f', file), 0);
    assert.deepEqual(h.out, ['virtualenvironment.kubevz.io/web1 created\n', 'virtualenvironment.kubevz.io/web2 created\n']);
    h.out.length = 0;
    writeFileSync(file, `${veDoc('web1', '  template: debian\n')}---\n${veDoc('web2')}`);
    assert.equal(await h.run('apply', '-f', file), 0);
    assert.deepEqual(h.out, ['virtualenvironment.kubevz.io/web1 configured\n', 'virtualenvironment.kubevz.io/web2 unchanged\n']);
  });

  it('apply -f - reads stdin; a parse error stops everything and names file, document and field', async () => {
    const h = harness({ stdin: `${veDoc('a')}---\nkind: VirtualEnvironment\nmetadata: {name: b}\n` });
    assert.equal(await h.run('apply', '-f', '-'), 1);
    assert.deepEqual(h.out, []);
    assert.match(h.err.join(''), /^error: <stdin>: document 1 \(line 8\): apiVersion: Required value/);
    assert.deepEqual(h.api.writes, []);
  });

  it('apply reports a server rejection (422) per field with exit 1', async () => {
    const api422 = harness();
    const c = api422.api.client<VirtualEnvironment>(VE_REF);
    const conn: Connection = {
      kubeconfigPath: '/k',
      server: 's',
      ves: c,
      target: registryApplyTarget(refsFromCrds(), () => ({
        ...c,
        ref: VE_REF,
        get: async () => undefined,
        applyPatch: async () => {
          throw new KvzError('Invalid', 'invalid', { details: { causes: [{ field: 'spec.template', message: 'Required value' }, { field: 'spec.hostname', message: 'Invalid value: "A": must be lower case' }] } });
        },
      }) as never),
    };
    const h = harness({ connect: () => conn });
    const file = join(tmp, 'bad.yaml');
    writeFileSync(file, veDoc('x', '  hostname: A\n'));
    assert.equal(await h.run('apply', '-f', file), 1);
    assert.equal(h.err.join(''), `error: ${file}: document 0 (line 6): spec.template: Required value\nerror: ${file}: document 0 (line 6): spec.hostname: Invalid value: "A": must be lower case\n`);
  });

  it('get ve prints a table; -o yaml/json/name; NotFound names the namespace', async () => {
    const h = harness();
    await runningVE(h, 'web1');
    assert.equal(await h.run('get', 've'), 0);
    assert.equal(h.out.join(''), 'NAME   PHASE     NODE     IP            READY    AGE\nweb1   Running   node-a   10.213.0.10   <none>   45s\n');
    for (const alias of ['ves', 'virtualenvironment', 'VirtualEnvironments', 'virtualenvironments.kubevz.io']) {
      h.out.length = 0;
      assert.equal(await h.run('get', alias), 0, alias);
      assert.match(h.out.join(''), /^NAME/);
    }
    h.out.length = 0;
    assert.equal(await h.run('get', 've', 'web1', '-o', 'yaml'), 0);
    assert.equal((parseYaml(h.out.join('')) as VirtualEnvironment).status?.nodeName, 'node-a');
    h.out.length = 0;
    assert.equal(await h.run('get', 've/web1', '-ojson'), 0);
    assert.equal((JSON.parse(h.out.join('')) as VirtualEnvironment).metadata.name, 'web1');
    h.out.length = 0;
    assert.equal(await h.run('get', 've', '-o', 'json'), 0);
    assert.equal((JSON.parse(h.out.join('')) as { kind: string; items: unknown[] }).items.length, 1);
    h.out.length = 0;
    assert.equal(await h.run('get', 've', '-o', 'name'), 0);
    assert.equal(h.out.join(''), 'virtualenvironment.kubevz.io/web1\n');
    assert.equal(await h.run('get', 've', 'nope', '-n', 'prod'), 1);
    assert.equal(h.err.pop(), 'error: virtualenvironment "nope" not found in namespace "prod"\n');
  });

  it('get ve -A and -o wide add columns; an empty namespace says so', async () => {
    const h = harness();
    await runningVE(h, 'web1');
    assert.equal(await h.run('get', 've', '-A', '-o', 'wide'), 0);
    assert.match(h.out.join(''), /^NAMESPACE\s+NAME\s+PHASE\s+NODE\s+IP\s+READY\s+AGE\s+TEMPLATE\s+HOSTNAME\ndefault\s+web1\s+Running/);
    assert.equal(await h.run('get', 've', '-n', 'empty'), 0);
    assert.equal(h.err.pop(), 'No resources found in empty namespace.\n');
  });

  it('usage errors exit 2 with a hint; help and version exit 0', async () => {
    const h = harness();
    assert.equal(await h.run('get', 'pods'), 2);
    assert.match(h.err.join(''), /unknown resource type "pods".*\nRun 'kvz help get' for usage/);
    assert.equal(await h.run('get', 've', '-o', 'xml'), 2);
    assert.equal(await h.run('frobnicate'), 2);
    assert.equal(await h.run(), 2);
    assert.equal(await h.run('delete', 've'), 2);
    assert.equal(await h.run('exec', 'web1'), 2);
    h.out.length = 0;
    assert.equal(await h.run('help'), 0);
    assert.match(h.out.join(''), /Commands:/);
    for (const cmd of ['apply', 'get', 'delete', 'exec', 'enter', 'version', 'help', 'up']) {
      h.out.length = 0;
      assert.equal(await h.run('help', cmd), 0);
      assert.match(h.out.join(''), new RegExp(`^Usage: kvz ${cmd}`));
    }
    h.out.length = 0;
    assert.equal(await h.run('get', '--help'), 0);
    assert.match(h.out.join(''), /^Usage: kvz get/);
    h.out.length = 0;
    assert.equal(await h.run('version'), 0);
    assert.match(h.out.join(''), /^kvz version \d+\.\d+\.\d+/);
  });

  it('delete waits until the object is gone; --wait=false does not; missing names exit 1', async () => {
    const h = harness();
    const c = h.api.client<VirtualEnvironment>(VE_REF);
    await c.create({ metadata: { name: 'fin', namespace: 'default', finalizers: ['kubevz.io/host-cleanup'] }, spec: { template: 'busybox' } } as VirtualEnvironment);
    let polls = 0;
    h.io.sleep = async () => {
      // The "agent" finishes cleanup after a few polls.
      if (++polls === 3) await c.mergePatch('fin', 'default', { metadata: { finalizers: null } });
    };
    assert.equal(await h.run('delete', 've', 'fin'), 0);
    assert.equal(h.out.join(''), 'virtualenvironment.kubevz.io "fin" deleted\n');
    assert.equal(polls, 3);
    assert.equal(await c.get('fin', 'default'), undefined);

    await c.create({ metadata: { name: 'stuck', namespace: 'default', finalizers: ['kubevz.io/host-cleanup'] }, spec: { template: 'busybox' } } as VirtualEnvironment);
    assert.equal(await h.run('delete', 've', 'stuck', '--wait=false'), 0);
    assert.ok((await c.get('stuck', 'default'))?.metadata.deletionTimestamp);

    assert.equal(await h.run('delete', 've', 'ghost'), 1);
    assert.equal(h.err.pop(), 'error: virtualenvironment "ghost" not found in namespace "default"\n');
  });

  it('delete --timeout gives up and says what it waited for', async () => {
    const h = harness();
    const c = h.api.client<VirtualEnvironment>(VE_REF);
    await c.create({ metadata: { name: 'stuck', namespace: 'default', finalizers: ['kubevz.io/host-cleanup'] }, spec: { template: 'busybox' } } as VirtualEnvironment);
    await c.patchStatus('stuck', 'default', { nodeName: 'node-b' });
    let t = NOW.getTime();
    h.io.now = () => new Date(t);
    h.io.sleep = async (ms) => void (t += ms);
    assert.equal(await h.run('delete', 've', 'stuck', '--timeout', '10s'), 1);
    const err = h.err.join('');
    assert.match(err, /waiting for virtualenvironment "stuck" \(finalizers kubevz.io\/host-cleanup, held until the node agent on "node-b"/);
    assert.match(err, /error: timed out after 10s waiting for/);
  });

  it('exec runs the command through the runtime with the VE uid and returns its exit code', async () => {
    const h = harness({ execCode: 7, isTTY: true });
    const ve = await runningVE(h, 'web1');
    assert.equal(await h.run('exec', 'web1', '--', 'ls', '-la', '/'), 7);
    assert.deepEqual(h.execs, [{ uid: ve.metadata.uid, argv: ['ls', '-la', '/'], tty: true }]);
    assert.equal(await h.run('exec', '-it', 'web1', '--', 'true'), 7);
    assert.equal(await h.run('enter', 'web1'), 7);
    // enter reads root's entry from the VE first (cli/enter.test.ts); here those reads fail: /bin/sh.
    assert.deepEqual(h.execs.at(-1)?.argv, ['/bin/sh', '-l']);
  });

  it('exec refuses a VE on another node, one not running, or one that does not exist', async () => {
    const h = harness();
    await runningVE(h, 'far', 'node-b');
    assert.equal(await h.run('exec', 'far', '--', 'true'), 1);
    assert.match(h.err.pop() ?? '', /runs on node "node-b", not under this host's state dir .* \(node "node-a"\); run kvz exec on that node/);
    const c = h.api.client<VirtualEnvironment>(VE_REF);
    await c.create({ metadata: { name: 'off', namespace: 'default' }, spec: { template: 'busybox', powerState: 'Stopped' } } as VirtualEnvironment);
    await c.patchStatus('off', 'default', { phase: 'Stopped', nodeName: 'node-a' });
    assert.equal(await h.run('exec', 'off', '--', 'true'), 1);
    assert.match(h.err.pop() ?? '', /is not running \(phase Stopped\); set spec.powerState: Running/);
    assert.equal(await h.run('exec', 'ghost', '--', 'true'), 1);
    assert.equal(h.err.pop(), 'error: virtualenvironment "ghost" not found in namespace "default"\n');
    assert.equal(h.execs.length, 0);
  });

  it('connection errors say what was tried and what to do', async () => {
    const h = harness({
      connect: () => {
        throw new KvzError('Unavailable', 'list virtualenvironments.kubevz.io: no API server reachable at https://127.0.0.1:6443 (ECONNREFUSED); start one with `kvz up` or pass --kubeconfig');
      },
    });
    assert.equal(await h.run('get', 've'), 1);
    assert.match(h.err.join(''), /^error: .*no API server reachable at https:\/\/127.0.0.1:6443.*kvz up/);
  });
});

describe('findKubeconfig', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'kvz-kc-'));
  after(() => rmSync(tmp, { recursive: true, force: true }));

  it('prefers --kubeconfig, then $KUBECONFIG, then the state dir', () => {
    const a = join(tmp, 'a');
    const b = join(tmp, 'b');
    writeFileSync(a, '');
    writeFileSync(b, '');
    writeFileSync(join(tmp, 'kubeconfig'), '');
    assert.equal(findKubeconfig({ kubeconfig: '/explicit' }, { KUBECONFIG: a }), '/explicit');
    assert.equal(findKubeconfig({}, { KUBECONFIG: `/missing:${b}` }), b);
    assert.equal(findKubeconfig({ stateDir: tmp }, {}), join(tmp, 'kubeconfig'));
  });

  it('says where it looked when there is none', (t) => {
    let path: string | undefined;
    try {
      path = findKubeconfig({ stateDir: join(tmp, 'nothing') }, { KUBECONFIG: '/no/such/file', HOME: tmp });
    } catch (err) {
      assert.match((err as Error).message, /no kubeconfig found \(looked at: \$KUBECONFIG \(\/no\/such\/file\), .*nothing\/kubeconfig, \/var\/lib\/kubevz\/kubeconfig, .*\.kube\/config\); start the embedded API server with `kvz up`/);
      return;
    }
    // A developer machine with /var/lib/kubevz/kubeconfig or ~/.kube/config finds that one.
    t.diagnostic(`found ${path}`);
  });
});
