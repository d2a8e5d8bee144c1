// End to end: `kvz up` in a temporary state dir, driven with real kubectl and the kvz CLI.
// Covers apply/get/wait/delete, exec, live limits, self-healing, stop/start, the watched
// directory (including an invalid file) and authentication.

import assert from 'node:assert/strict';
import { readFileSync, rmSync, writeFileSync, readdirSync, existsSync } from 'node:fs';
import { request } from 'node:https';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { missingPrereqs, inCI } from '../helpers/prereq.js';
import { sh, startKvzUp, waitFor, type Stack } from '../helpers/kvz-up.js';

const missing = missingPrereqs({ root: true, binaries: ['kubectl', 'runc', 'ip', 'ping'] });
if (missing.length && inCI) throw new Error(`e2e prerequisites missing under CI: ${missing.join(', ')}`);

function veYaml(name: string, address: string, extra = ''): string {
  return `apiVersion: kubevz.io/v1alpha1
kind: VirtualEnvironment
metadata:
  name: ${name}
spec:
  template: busybox
  hostname: ${name}-host
  resources:
    memory: {limit: 64Mi}
    processes: 100
    cpu: {units: 500}
  network:
    addresses: [${address}]
${extra}`;
}

async function getVE(stack: Stack, name: string): Promise<any | undefined> {
  const r = await stack.kubectl(['get', 've', name, '-o', 'json'], { allowFail: true });
  return r.code === 0 ? JSON.parse(r.stdout) : undefined;
}

function cgroupFile(pid: number, controller: string, file: string): string {
  const line = readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n').find((l) => l.split(':')[1]?.split(',').includes(controller));
  assert.ok(line, `no ${controller} cgroup for pid ${pid}`);
  return readFileSync(join('/sys/fs/cgroup', controller, line.split(':')[2]!, file), 'utf8').trim();
}

describe('kvz up end to end', { skip: missing.length ? `needs ${missing.join(', ')}` : false }, () => {
  let stack: Stack;
  before(async () => {
    stack = await startKvzUp();
  });
  after(async () => {
    if (!stack) return;
    for (const name of ['e2e-a', 'e2e-dir']) await stack.kubectl(['delete', 've', name, '--ignore-not-found', '--timeout=60s'], { allowFail: true });
    await stack.stop();
  });

  test('a request without a credential gets 401', async () => {
    const status = await new Promise<number>((res, rej) => {
      const req = request({ host: '127.0.0.1', port: stack.port, path: '/apis', rejectUnauthorized: false }, (r) => {
        r.resume();
        res(r.statusCode ?? 0);
      });
      req.on('error', rej);
      req.end();
    });
    assert.equal(status, 401);
  });

  test('kubectl apply, wait, get; the VE runs isolated with its hostname and address', async () => {
    const addr = `10.213.${stack.net}.20`;
    await stack.kubectl(['apply', '-f', '-'], { input: veYaml('e2e-a', `${addr}/24`) });
    await stack.kubectl(['wait', '--for=condition=Ready', 've/e2e-a', '--timeout=90s']);
    const ve = await getVE(stack, 'e2e-a');
    assert.equal(ve.status.phase, 'Running');
    assert.equal(ve.status.nodeName, stack.nodeName);
    assert.deepEqual(ve.status.addresses, [addr]);
    assert.equal(ve.status.observedGeneration, ve.metadata.generation);

    const table = (await stack.kubectl(['get', 've'])).stdout;
    assert.match(table, /NAME\s+PHASE\s+NODE\s+IP\s+READY\s+AGE/);
    assert.match(table, new RegExp(`e2e-a\\s+Running\\s+${stack.nodeName}\\s+${addr.replace(/\./g, '\\.')}\\s+True`));

    const kvzList = (await stack.kvz(['get', 've'])).stdout;
    assert.match(kvzList, /e2e-a\s+Running/);

    assert.equal((await stack.kvz(['exec', 'e2e-a', '--', 'hostname'])).stdout.trim(), 'e2e-a-host');
    const ps = (await stack.kvz(['exec', 'e2e-a', '--', 'ps', '-o', 'pid,comm'])).stdout;
    const pids = ps.trim().split('\n').slice(1).map((l) => Number(l.trim().split(/\s+/)[0]));
    assert.ok(pids.includes(1), `init is PID 1 inside:\n${ps}`);
    assert.ok(pids.length < 10, `the VE sees only its own processes:\n${ps}`);
    const ip = (await stack.kvz(['exec', 'e2e-a', '--', 'ip', '-4', '-o', 'addr', 'show'])).stdout;
    assert.match(ip, new RegExp(`${addr.replace(/\./g, '\\.')}/24`));
    await sh('ping', ['-c', '1', '-W', '3', addr]);

    const exit = await stack.kvz(['exec', 'e2e-a', '--', 'sh', '-c', 'exit 3'], { allowFail: true });
    assert.equal(exit.code, 3, 'kvz exec exits with the command exit code');
    const piped = await stack.kvz(['exec', 'e2e-a', '--', 'tr', 'a-z', 'A-Z'], { input: 'piped into the VE\n' });
    assert.equal(piped.stdout, 'PIPED INTO THE VE\n', 'kvz exec passes stdin through');

    assert.equal(cgroupFile(ve.status.initPid, 'memory', 'memory.limit_in_bytes'), String(64 * 1024 * 1024));
    assert.equal(cgroupFile(ve.status.initPid, 'pids', 'pids.max'), '100');
  });

  test('a limit change lands live, init keeps its PID', async () => {
    const before = await getVE(stack, 'e2e-a');
    await stack.kubectl(['patch', 've', 'e2e-a', '--type=merge', '-p', '{"spec":{"resources":{"memory":{"limit":"96Mi"},"processes":150}}}']);
    await waitFor('memory limit 96Mi', async () => cgroupFile(before.status.initPid, 'memory', 'memory.limit_in_bytes') === String(96 * 1024 * 1024));
    await waitFor('pids.max 150', async () => cgroupFile(before.status.initPid, 'pids', 'pids.max') === '150');
    await stack.kubectl(['wait', '--for=condition=Ready', 've/e2e-a', '--timeout=30s']);
    const after = await getVE(stack, 'e2e-a');
    assert.equal(after.status.initPid, before.status.initPid);
    assert.equal(after.status.observedGeneration, after.metadata.generation);
  });

  test('a VE killed by hand comes back', async () => {
    const before = await getVE(stack, 'e2e-a');
    process.kill(before.status.initPid, 'SIGKILL');
    const back = await waitFor('the VE to come back', async () => {
      const ve = await getVE(stack, 'e2e-a');
      return ve?.status.phase === 'Running' && ve.status.initPid !== before.status.initPid && ve;
    }, 60_000);
    assert.ok(back.status.initPid > 0);
  });

  test('powerState Stopped stops it and Running starts it again', async () => {
    await stack.kubectl(['patch', 've', 'e2e-a', '--type=merge', '-p', '{"spec":{"powerState":"Stopped"}}']);
    const stopped = await waitFor('phase Stopped', async () => {
      const ve = await getVE(stack, 'e2e-a');
      return ve?.status.phase === 'Stopped' && ve;
    }, 60_000);
    assert.equal(stopped.status.initPid, undefined);
    await stack.kubectl(['patch', 've', 'e2e-a', '--type=merge', '-p', '{"spec":{"powerState":"Running"}}']);
    await stack.kubectl(['wait', '--for=condition=Ready', 've/e2e-a', '--timeout=60s']);
  });

  test('kubectl delete removes everything the VE had on the host', async () => {
    const ve = await getVE(stack, 'e2e-a');
    const short = ve.metadata.uid.replace(/-/g, '').slice(0, 12);
    await stack.kubectl(['delete', 've', 'e2e-a', '--timeout=60s']);
    assert.equal(await getVE(stack, 'e2e-a'), undefined);
    assert.ok(!(await sh('ip', ['netns', 'list'])).includes(short), 'netns removed');
    assert.equal((await sh('ip', ['-o', 'link', 'show', 'master', stack.bridge])).trim(), '', 'no veth left on the bridge');
    const vesDir = join(stack.stateDir, 'ves');
    assert.deepEqual(existsSync(vesDir) ? readdirSync(vesDir) : [], [], 'no VE state dir left');
    assert.ok(!readFileSync('/proc/self/mountinfo', 'utf8').includes(ve.metadata.uid), 'no mount left');
  });

  test('the watched directory creates, changes and deletes VEs; an invalid file changes nothing', async () => {
    const file = join(stack.manifests, 've.yaml');
    writeFileSync(file, veYaml('e2e-dir', `10.213.${stack.net}.30/24`));
    await waitFor('e2e-dir to exist', () => getVE(stack, 'e2e-dir'), 30_000);
    await stack.kubectl(['wait', '--for=condition=Ready', 've/e2e-dir', '--timeout=90s']);

    writeFileSync(file, veYaml('e2e-dir', `10.213.${stack.net}.30/24`).replace('units: 500', 'units: 700'));
    await waitFor('cpu units 700', async () => (await getVE(stack, 'e2e-dir'))?.spec.resources.cpu.units === 700);
    const ve = await getVE(stack, 'e2e-dir');
    await waitFor('cpu.shares 700', async () => cgroupFile(ve.status.initPid, 'cpu', 'cpu.shares') === '700');

    const bad = join(stack.manifests, 'bad.yaml');
    writeFileSync(bad, `apiVersion: kubevz.io/v1alpha1\nkind: VirtualEnvironment\nmetadata:\n  name: e2e-bad\nspec:\n  powerState: Sideways\n`);
    await waitFor('the invalid file to be reported', async () => {
      const logs = stack.logs.join('');
      return logs.includes('bad.yaml') && /spec\.(template|powerState)/.test(logs);
    });
    assert.equal(await getVE(stack, 'e2e-bad'), undefined);
    assert.equal((await getVE(stack, 'e2e-dir'))?.status.phase, 'Running', 'other VEs unaffected');
    rmSync(bad);

    rmSync(file);
    await waitFor('e2e-dir to be deleted', async () => (await getVE(stack, 'e2e-dir')) === undefined, 60_000);
  });
});
