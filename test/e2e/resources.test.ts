// End to end for resource management: `kvz up --metrics-listen 127.0.0.1:PORT`, then `kvz set`
// changes limits live (and openFiles waits for a restart, visible in status), `kvz
// beancounters` prints the table, `kvz top --once` a frame, and /metrics the same counters.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { freePort, startKvzUp, waitFor, type Stack } from '../helpers/kvz-up.js';
import { inCI, missingPrereqs } from '../helpers/prereq.js';

const missing = missingPrereqs({ root: true, binaries: ['kubectl', 'runc', 'ip'] });
if (missing.length && inCI) throw new Error(`e2e prerequisites missing under CI: ${missing.join(', ')}`);

function cgroupFile(pid: number, controller: string, file: string): string {
  const line = readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n').find((l) => l.split(':')[1]?.split(',').includes(controller));
  assert.ok(line, `no ${controller} cgroup for pid ${pid}`);
  return readFileSync(`/sys/fs/cgroup/${controller}${line.split(':')[2]}/${file}`, 'utf8').trim();
}

describe('resources end to end', { skip: missing.length ? `needs ${missing.join(', ')}` : false }, () => {
  let stack: Stack;
  let metricsPort: number;
  before(async () => {
    metricsPort = await freePort();
    stack = await startKvzUp({ extraArgs: ['--metrics-listen', `127.0.0.1:${metricsPort}`] });
  });
  after(async () => {
    if (!stack) return;
    await stack.kubectl(['delete', 've', 'e2e-res', '--ignore-not-found', '--timeout=60s'], { allowFail: true });
    await stack.stop();
  });

  test('kvz set changes limits live; openFiles is pending until a restart; beancounters, top and /metrics report', async (t) => {
    const manifest = `apiVersion: kubevz.io/v1alpha1
kind: VirtualEnvironment
metadata: {name: e2e-res}
spec:
  template: busybox
  network: {addresses: [10.213.${stack.net}.30/24]}
  resources: {memory: {limit: 64Mi}, processes: 50, openFiles: 1024}
`;
    await stack.kubectl(['apply', '-f', '-'], { input: manifest });
    await stack.kubectl(['wait', '--for=condition=Ready', 've/e2e-res', '--timeout=90s']);
    const pid = JSON.parse((await stack.kubectl(['get', 've', 'e2e-res', '-o', 'json'])).stdout).status.initPid as number;

    const set = await stack.kvz(['set', 'e2e-res', '--memory', '96Mi', '--cpu-limit', '50%', '--processes', '77', '--open-files', '2048', '--wait', '--timeout', '30s']);
    t.diagnostic(set.stdout.trim());
    assert.match(set.stdout, /pending spec\.resources\.openFiles: RestartRequired/);
    assert.equal(cgroupFile(pid, 'memory', 'memory.limit_in_bytes'), String(96 << 20));
    assert.equal(cgroupFile(pid, 'cpu', 'cpu.cfs_quota_us'), '50000');
    assert.equal(cgroupFile(pid, 'pids', 'pids.max'), '77');
    const ve = JSON.parse((await stack.kubectl(['get', 've', 'e2e-res', '-o', 'json'])).stdout);
    assert.equal(ve.status.initPid, pid, 'init kept its PID');
    assert.equal(ve.status.appliedResources.memory.limit, '96Mi');
    assert.equal(ve.status.appliedResources.openFiles, 1024);
    assert.equal(ve.status.conditions.find((c: { type: string }) => c.type === 'ResourcesApplied').reason, 'RestartRequired');

    const bc = await waitFor('beancounters', async () => {
      const r = await stack.kvz(['beancounters', 'e2e-res'], { allowFail: true });
      // Beancounters are published at most every few seconds: wait for a refresh after the change.
      return r.code === 0 && /numproc\s+\d+\s+\d+\s+77\s+77/.test(r.stdout) ? r.stdout : undefined;
    }, 30_000);
    t.diagnostic(`\n${bc}`);
    assert.match(bc, /^Version: 2\.5/);
    assert.match(bc, /physpages\s+\d+\s+\d+\s+0\s+24576\s+\d+/);
    assert.match(bc, /numproc\s+\d+\s+\d+\s+77\s+77\s+0/);

    const top = (await stack.kvz(['top', '--once', '--node', stack.nodeName])).stdout;
    t.diagnostic(`\n${top}`);
    assert.match(top, /NAME\s+NODE\s+PHASE\s+CPU%/);
    assert.match(top, /e2e-res\s+\S+\s+Running\s+[\d.]+\s+50%\s+\S+\s+96Mi/);

    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    assert.match(text, /kubevz_beancounter_limit\{namespace="default",name="e2e-res",resource="numproc"\} 77/);
  });
});
