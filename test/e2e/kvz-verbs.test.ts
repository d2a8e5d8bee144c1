// End to end: the vzctl-style verbs against `kvz up` (real runc, real kubectl): create → Ready,
// list, status, stop → Stopped, start, restart (a new init), destroy; an unschedulable VE says
// why; `kubectl get ven` shows the node Ready and `kubectl describe ve` shows the Events.

import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { inCI, missingPrereqs } from '../helpers/prereq.js';
import { startKvzUp, waitFor, type Stack } from '../helpers/kvz-up.js';

const missing = missingPrereqs({ root: true, binaries: ['kubectl', 'runc', 'ip'] });
if (missing.length && inCI) throw new Error(`e2e prerequisites missing under CI: ${missing.join(', ')}`);

describe('kvz verbs end to end', { skip: missing.length ? `needs ${missing.join(', ')}` : false }, () => {
  let stack: Stack;
  const name = `verbs-${process.pid.toString(36)}`;
  const huge = `${name}-huge`;
  before(async () => {
    stack = await startKvzUp();
  });
  after(async () => {
    if (!stack) return;
    for (const n of [name, huge]) await stack.kubectl(['delete', 've', n, '--ignore-not-found', '--timeout=60s'], { allowFail: true });
    await stack.stop();
  });

  /** The old init has exited (a zombie not yet reaped by its parent counts as exited). */
  const gone = (pid: number) =>
    waitFor(`init ${pid} gone`, async () => {
      try {
        return /^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
      } catch {
        return true;
      }
    }, 10_000);
  const status = async () => JSON.parse((await stack.kvz(['status', name, '-o', 'json'])).stdout);

  test('kubectl get ven shows this node Ready, with capacity and features', async () => {
    const row = await waitFor('node row', async () => {
      const out = (await stack.kubectl(['get', 'ven'])).stdout;
      return out.split('\n').find((l) => l.startsWith(`${stack.nodeName} `));
    }, 15_000);
    assert.match((await stack.kubectl(['get', 'ven'])).stdout, /^NAME\s+READY\s+VES\s+CPU\s+MEMORY\s+MEM-ALLOCATED\s+CGROUP\s+CRIU\s+AGE/);
    assert.match(row, new RegExp(`^${stack.nodeName}\\s+True\\s+`));
    const node = JSON.parse((await stack.kubectl(['get', 'ven', stack.nodeName, '-o', 'json'])).stdout);
    assert.ok(Number(node.status.capacity.cpu) >= 1);
    assert.match(node.status.allocatable.memory, /^\d+Ki$/);
    assert.ok(['v1', 'v2'].includes(node.status.features.cgroupVersion));
    assert.equal(typeof node.status.features.criu, 'boolean');
  });

  test('create waits until the VE runs; list and status show it', async () => {
    const ip = `10.213.${stack.net}.30`;
    const t0 = Date.now();
    const out = (await stack.kvz(['create', name, '--template', 'busybox', '--memory', '64Mi', '--processes', '100', '--ip', `${ip}/24`, '--hostname', 'verbs-host'])).stdout;
    process.stderr.write(`# kvz create → running: ${Date.now() - t0} ms\n`);
    assert.match(out, new RegExp(`virtualenvironment "${name}" is running on node ${stack.nodeName} at ${ip.replace(/\./g, '\\.')}`));
    const s = await status();
    assert.equal(s.status.phase, 'Running');
    assert.ok(existsSync(`/proc/${s.status.initPid}`));
    const list = (await stack.kvz(['list'])).stdout;
    assert.match(list, /^NAME\s+NPROC\s+STATUS\s+IP_ADDR\s+HOSTNAME\s+NODE/);
    assert.match(list, new RegExp(`${name}\\s+\\S+\\s+running\\s+${ip.replace(/\./g, '\\.')}\\s+verbs-host\\s+${stack.nodeName}`));
    const text = (await stack.kvz(['status', name])).stdout;
    assert.match(text, /Status:\s+running/);
    assert.match(text, /Scheduled\s+True/);
    const yamlList = parseYaml((await stack.kvz(['list', '-o', 'yaml'])).stdout);
    assert.ok(yamlList.items.some((v: any) => v.metadata.name === name));
  });

  test('stop → Stopped (init gone); start → Running with a new init; restart → another new init', async () => {
    const pid1 = (await status()).status.initPid;
    assert.match((await stack.kvz(['stop', name])).stdout, /is stopped/);
    const stopped = await status();
    assert.equal(stopped.status.phase, 'Stopped');
    assert.equal(stopped.status.initPid, undefined);
    await gone(pid1);

    await stack.kvz(['start', name]);
    const pid2 = (await status()).status.initPid;
    assert.ok(pid2 && pid2 !== pid1);

    const t0 = Date.now();
    const restarted = JSON.parse((await stack.kvz(['restart', name, '-o', 'json'])).stdout);
    process.stderr.write(`# kvz restart: ${Date.now() - t0} ms\n`);
    const pid3 = restarted.status.initPid;
    assert.ok(pid3 && pid3 !== pid2, `restart gave a new init (${pid2} → ${pid3})`);
    await gone(pid2);
    assert.equal(restarted.metadata.annotations['kubevz.io/restarted'], restarted.metadata.annotations['kubevz.io/restart-requested']);
  });

  test('kubectl describe ve shows what happened as Events', async () => {
    const out = await waitFor('events in describe', async () => {
      const d = (await stack.kubectl(['describe', 've', name])).stdout;
      return /Restarted/.test(d) && d;
    }, 10_000);
    const events = out.slice(out.indexOf('Events:'));
    for (const reason of ['Scheduled', 'Created', 'Started', 'Stopped', 'Restarted']) assert.match(events, new RegExp(`Normal\\s+${reason}\\s`), `${reason} in:\n${events}`);
  });

  test('a VE no node can hold is reported, not placed', async () => {
    const r = await stack.kvz(['create', huge, '--template', 'busybox', '--memory', '100Ti', '--timeout', '5s'], { allowFail: true });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /not scheduled: 0\/1 nodes available: 1 insufficient memory/);
    const ve = JSON.parse((await stack.kubectl(['get', 've', huge, '-o', 'json'])).stdout);
    assert.equal(ve.status.conditions.find((c: any) => c.type === 'Scheduled').status, 'False');
    assert.equal(ve.metadata.labels?.['kubevz.io/node'], undefined);
    await stack.kvz(['destroy', huge]);
  });

  test('destroy removes the VE and its init', async () => {
    const pid = (await status()).status.initPid;
    assert.match((await stack.kvz(['destroy', name])).stdout, /destroyed/);
    const r = await stack.kubectl(['get', 've', name], { allowFail: true });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /NotFound|not found/);
    await gone(pid);
  });
});
