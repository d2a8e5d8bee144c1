// The shipped Debian web example as a user runs it (root): `kvz up`, then `kubectl apply` of
// manifests/examples/vet-debian-12-web.yaml and ve-debian-web.yaml, then `kvz start` (which builds
// the template with debootstrap on first use) — with only what a test must change: the template's
// mirror is a proxy to the host's Debian mirror (spec.debootstrap.mirror: a transport detail, not
// in the digest), the VE gets its own namespace and an address in the stack's subnet. Then, as the
// example promises: systemd reaches `running` with no failed units, lighttpd serves the example's
// page to the host, the VE's root adds a user, sets an iptables rule that affects only the VE
// (the host's iptables-save is unchanged), installs a package with apt-get from the mirror (the
// test points the VE's /etc/apt/sources.list at a second proxy on the VEs' gateway), and `free
// -m` shows the VE's memory limit (lxcfs), not the host's. Network traffic: loopback, the stack's
// bridge, and the mirror through the proxies. One debootstrap (~3–5 min here).

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { get } from 'node:http';
import { totalmem } from 'node:os';
import { join } from 'node:path';
import { after, before, test, type TestContext } from 'node:test';
import { promisify } from 'node:util';
import { parse as parseYaml, stringify } from 'yaml';
import { parseBytes } from '../../src/api/quantity.js';
import type { VETemplateSpec, VirtualEnvironment } from '../../src/api/index.js';
import { kvzBin, repoRoot, sh, startKvzUp, waitFor, type Stack } from '../helpers/kvz-up.js';
import { startMirrorProxy, type MirrorProxy } from '../helpers/mirror-proxy.js';
import { missingPrereqs, requirePrereqs, uniqueSuffix } from '../helpers/prereq.js';

const run = promisify(execFile);
const prereqs = { root: true, binaries: ['runc', 'ip', 'kubectl', 'debootstrap', 'zstd', 'unshare', 'losetup', 'mkfs.ext4', 'lxcfs', 'iptables-save'] };
const skip = missingPrereqs(prereqs).length > 0;
const guard = (t: TestContext) => requirePrereqs(t, prereqs);

const examples = join(repoRoot, 'manifests/examples');
const readExample = <T>(file: string): T => parseYaml(readFileSync(join(examples, file), 'utf8')) as T;
const template = readExample<{ apiVersion: string; kind: string; metadata: { name: string }; spec: VETemplateSpec }>('vet-debian-12-web.yaml');
const ve = readExample<VirtualEnvironment>('ve-debian-web.yaml');
/** The page the example's postInstall writes. */
const PAGE = /echo '([^']*)' > \/var\/www\/html\/index\.html/.exec(template.spec.postInstall ?? '')?.[1];
const MiB = 1 << 20;
/** debootstrap (~1–2 min alone, more on a busy machine) plus the first boot. */
const BUILD_MS = 600_000;
/** A small package of Debian main with no dependencies beyond libc. */
const PACKAGE = 'hello';

const ns = `deb-ex-${uniqueSuffix()}`;
const name = ve.metadata.name;
let stack: Stack;
let buildProxy: MirrorProxy | undefined;
let veProxy: MirrorProxy | undefined;
let address = '';
let gateway = '';
let booted = false;

/** The kvz CLI against the stack, with a timeout of our choosing (the stack's helper has 120 s). */
async function kvz(args: string[], timeoutMs: number): Promise<{ code: number; out: string }> {
  try {
    const p = run(process.execPath, [kvzBin, '--kubeconfig', stack.kubeconfig, ...args], { maxBuffer: 16 << 20, timeout: timeoutMs, env: { ...process.env, KVZ_LOG_LEVEL: 'warn' } });
    // Nothing to type: a command inside that reads stdin sees its end, not a pipe left open.
    p.child.stdin?.end();
    const r = await p;
    return { code: 0, out: r.stdout + r.stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string; signal?: string };
    return { code: typeof e.code === 'number' ? e.code : 1, out: `${e.stdout ?? ''}${e.stderr ?? ''}${e.signal ? ` (killed by ${e.signal})` : ''}` };
  }
}

/** A shell script as the VE's root, through `kvz exec`. */
const inVe = (script: string, timeoutMs = 60_000) => kvz(['exec', name, '-n', ns, '--', 'sh', '-c', script], timeoutMs);

function httpGet(host: string, timeoutMs = 3000): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = get({ host, port: 80, path: '/', timeout: timeoutMs, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
  });
}

/** The host's IPv4 ruleset without what changes by itself (the header's date, counters). */
async function hostRuleset(): Promise<string> {
  const out = await sh('iptables-save', []);
  return out.split('\n').filter((l) => !l.startsWith('#')).map((l) => l.replace(/\[\d+:\d+\]/g, '')).join('\n');
}

/** For a failure message: the VE's and the template's status, and the stack's last warnings. */
async function diagnosis(): Promise<string> {
  const v = await stack.kubectl(['get', 've', name, '-n', ns, '-o', 'jsonpath={.status}'], { allowFail: true });
  const tpl = await stack.kubectl(['get', 'vetemplate', template.metadata.name, '-o', 'jsonpath={.status}'], { allowFail: true });
  const warnings = stack.logs.join('').split('\n').filter((l) => /"level":(40|50|60)\b/.test(l)).slice(-15);
  return `VE status: ${v.stdout}\nVETemplate status: ${tpl.stdout}\nstack warnings (last 15):\n${warnings.join('\n')}`;
}

before(async () => {
  if (skip) return;
  stack = await startKvzUp({ logLevel: 'info' });
  // debootstrap runs in the host's network namespace: the build's proxy listens on loopback.
  buildProxy = await startMirrorProxy('127.0.0.1');
  address = `10.213.${stack.net}.12`;
  gateway = `10.213.${stack.net}.1`;
});

after(async () => {
  if (!stack) return;
  try {
    const del = await stack.kvz(['delete', 've', name, '-n', ns, '--timeout', '90s'], { allowFail: true });
    if (del.code !== 0) process.stderr.write(`# kvz delete ve ${name}: ${del.stderr}${del.stdout}\n`);
    await stack.kubectl(['delete', 'vetemplate', template.metadata.name], { allowFail: true });
  } finally {
    await veProxy?.close();
    await stack.stop();
    await buildProxy?.close();
  }
});

test('the shipped example applies as is (but for mirror, namespace, address); kvz start builds debian-12-web and boots the VE', async (t) => {
  if (!guard(t)) return;
  assert.ok(PAGE, 'the example\'s postInstall writes a page');
  const tpl = { ...template, spec: { ...template.spec, debootstrap: { ...template.spec.debootstrap!, mirror: buildProxy!.url } } };
  const v = { ...ve, metadata: { ...ve.metadata, namespace: ns }, spec: { ...ve.spec, network: { ...ve.spec.network, addresses: [`${address}/24`] } } };
  await stack.kubectl(['apply', '-f', '-'], { input: `${stringify(tpl)}---\n${stringify(v)}` });
  const declared = JSON.parse((await stack.kubectl(['get', 've', name, '-n', ns, '-o', 'json'])).stdout) as VirtualEnvironment;
  assert.equal(declared.spec.powerState, 'Stopped', 'the example is declared Stopped');

  const t0 = Date.now();
  const start = await kvz(['start', name, '-n', ns, '--timeout', `${BUILD_MS / 1000}s`], BUILD_MS + 60_000);
  const startMs = Date.now() - t0;
  t.diagnostic(`kvz start (debootstrap through the proxy + first boot): ${startMs} ms, ${buildProxy!.requests()} mirror requests`);
  assert.equal(start.code, 0, `kvz start failed: ${start.out}\n${await diagnosis()}`);
  const running = JSON.parse((await stack.kubectl(['get', 've', name, '-n', ns, '-o', 'json'])).stdout) as VirtualEnvironment;
  assert.equal(running.status?.phase, 'Running', await diagnosis());
  assert.ok(buildProxy!.requests() > 10, `debootstrap used the mirror proxy (${buildProxy!.requests()} requests)`);
  booted = true;
});

test('systemd reaches running with no failed units; the hostname is the example\'s', async (t) => {
  if (!guard(t)) return;
  assert.ok(booted, 'the VE did not boot (see the first test)');
  const state = await waitFor('systemd to finish booting', async () => {
    const s = (await inVe('systemctl is-system-running')).out.trim().split('\n').pop() ?? '';
    return s === 'initializing' || s === 'starting' || s === '' ? undefined : s;
  }, 90_000);
  const failed = (await inVe('systemctl --failed --no-legend --plain')).out.trim();
  assert.equal(state, 'running', `failed units: ${failed}`);
  assert.equal(failed, '', 'no failed units');
  assert.equal((await inVe('hostname')).out.trim(), ve.spec.hostname);
});

test('lighttpd answers at the VE\'s address with the example\'s page', async (t) => {
  if (!guard(t)) return;
  assert.ok(booted, 'the VE did not boot (see the first test)');
  const res = await waitFor('lighttpd', async () => httpGet(address).catch(() => undefined), 30_000);
  assert.equal(res.status, 200);
  assert.equal(res.body.trim(), PAGE);
});

test('the VE\'s root adds a user who can log in to a shell', async (t) => {
  if (!guard(t)) return;
  assert.ok(booted, 'the VE did not boot (see the first test)');
  const r = await inVe('useradd -m -s /bin/bash webmaster && id -u webmaster && su - webmaster -c "touch ~/hello && id -un && ls ~"');
  assert.equal(r.code, 0, r.out);
  assert.deepEqual(r.out.trim().split('\n').slice(-3), ['1000', 'webmaster', 'hello']);
});

test('the VE\'s root sets an iptables rule: it drops the host\'s HTTP to the VE; the host\'s ruleset is unchanged', async (t) => {
  if (!guard(t)) return;
  assert.ok(booted, 'the VE did not boot (see the first test)');
  const hostBefore = await hostRuleset();
  assert.equal((await httpGet(address)).status, 200, 'the host reaches lighttpd before the rule');
  const add = await inVe('iptables -A INPUT -p tcp --dport 80 -j DROP && iptables -S INPUT');
  assert.equal(add.code, 0, add.out);
  assert.match(add.out, /^-A INPUT -p tcp -m tcp --dport 80 -j DROP$/m);
  await assert.rejects(httpGet(address, 1500), /timed out/, 'the VE\'s rule drops the host\'s request');
  assert.equal(await hostRuleset(), hostBefore, 'the host\'s iptables-save is unchanged');
  assert.doesNotMatch(await sh('iptables-save', []), /--dport 80 -j DROP/);
  const del = await inVe('iptables -D INPUT -p tcp --dport 80 -j DROP');
  assert.equal(del.code, 0, del.out);
  assert.equal((await httpGet(address)).body.trim(), PAGE, 'lighttpd answers again once the rule is gone');
});

test('free -m inside shows the VE\'s memory limit (lxcfs), not the host\'s', async (t) => {
  if (!guard(t)) return;
  assert.ok(booted, 'the VE did not boot (see the first test)');
  const limitMiB = parseBytes(ve.spec.resources!.memory!.limit!, 'memory.limit') / MiB;
  const r = await inVe('free -m');
  assert.equal(r.code, 0, r.out);
  const total = Number(/^Mem:\s+(\d+)/m.exec(r.out)?.[1]);
  assert.equal(total, limitMiB, `free -m: ${r.out}`);
  assert.notEqual(Math.round(totalmem() / MiB), limitMiB, 'the host has a different amount (else this proves nothing)');
});

test('the VE\'s root installs a package with apt-get from the mirror', async (t) => {
  if (!guard(t)) return;
  assert.ok(booted, 'the VE did not boot (see the first test)');
  // The template's sources.list names the build's proxy on the host's loopback, which the VE
  // cannot reach; a second proxy listens on the VEs' gateway (the bridge has it once a VE is up).
  veProxy = await startMirrorProxy(gateway);
  const suite = template.spec.debootstrap!.suite;
  const r = await inVe(
    `echo "deb ${veProxy.url} ${suite} main" > /etc/apt/sources.list && rm -f /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources
export DEBIAN_FRONTEND=noninteractive
# apt's own output (and debconf's notes on stderr) only when it fails: the last lines are the checks.
apt-get update -q >/tmp/apt.log 2>&1 && apt-get install -y -q --no-install-recommends ${PACKAGE} >>/tmp/apt.log 2>&1 || { cat /tmp/apt.log; exit 1; }
dpkg-query -W -f='\${Status}\\n' ${PACKAGE} && ${PACKAGE}`,
    300_000,
  );
  assert.equal(r.code, 0, r.out);
  assert.deepEqual(r.out.trim().split('\n').slice(-2), ['install ok installed', 'Hello, world!']);
  assert.ok(veProxy.requests() >= 2, `apt went through the proxy (${veProxy.requests()} requests)`);
});
