// The informer wrapper of KubeResourceClient (src/core/kube-client.ts `inform`) against the real
// embedded API server in this process: client-node's ListWatch stops for good when a re-list
// fails, so the wrapper must restart it. The server is stopped and started again on the same
// state dir (same CA, token and database) and the same port; an object created afterwards must
// reach the handler, and a stopped handle must stop retrying.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { type RunningApiServer, startApiServer } from '../../../src/apiserver/index.js';
import { VE_RESOURCE, type VirtualEnvironment } from '../../../src/api/types.js';
import { loadKubeConfig, makeResourceClient } from '../../../src/core/kube-client.js';
import { type Logger, silentLogger } from '../../../src/core/logger.js';

/** A Logger that keeps warnings (the wrapper logs each restart with retryInMs). */
function recordingLogger(): Logger & { warnings: { obj: Record<string, unknown>; msg?: string }[] } {
  const warnings: { obj: Record<string, unknown>; msg?: string }[] = [];
  const log = {
    warnings,
    debug() {},
    info() {},
    error() {},
    warn(obj: object | string, msg?: string) {
      warnings.push(typeof obj === 'string' ? { obj: {}, msg: obj } : { obj: obj as Record<string, unknown>, msg });
    },
    child: () => log,
  };
  return log;
}

async function until(what: string, cond: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const veRef = { ...VE_RESOURCE, namespaced: true };
const aVE = (name: string): VirtualEnvironment => ({ apiVersion: 'kubevz.io/v1alpha1', kind: 'VirtualEnvironment', metadata: { name, namespace: 'default' }, spec: { template: 'busybox' } });

test('an informer survives an API server restart: objects created afterwards reach its handler', { timeout: 120_000 }, async (t) => {
  const stateDir = mkdtempSync(join(tmpdir(), 'kvz-decl-informer-'));
  let server: RunningApiServer | undefined = await startApiServer({ stateDir, host: '127.0.0.1', port: 0, log: silentLogger, heartbeatMs: 1000 });
  const port = server.port;
  const log = recordingLogger();
  // The client keeps the kubeconfig of the first start: the restart must be transparent to it.
  const client = makeResourceClient<VirtualEnvironment>(loadKubeConfig(server.kubeconfigPath), veRef, log);
  const seen: [string, string][] = [];
  const handle = await client.inform({ namespace: 'default' }, (type, obj) => seen.push([type, obj.metadata.name]));
  t.after(async () => {
    await handle.stop();
    await server?.close();
    rmSync(stateDir, { recursive: true, force: true });
  });

  await client.create(aVE('before'));
  await until('ADDED before', () => seen.some(([ty, n]) => ty === 'ADDED' && n === 'before'), 15_000);
  assert.equal(log.warnings.length, 0, 'no restart while the server is up');

  await server.close();
  server = undefined;
  // The informer notices (its watch ends, the re-list is refused) and says it restarts; the
  // server stays down over several attempts, so restarts that fail themselves are covered too.
  const restarts = () => log.warnings.filter((w) => w.msg === 'informer stopped; restarting').length;
  await until('three failed restarts', () => restarts() >= 3, 60_000);

  server = await startApiServer({ stateDir, host: '127.0.0.1', port, log: silentLogger, heartbeatMs: 1000 });
  assert.equal(server.port, port);
  // Written through a fresh client so the informer's own client plays no part in the write.
  const writer = makeResourceClient<VirtualEnvironment>(loadKubeConfig(server.kubeconfigPath), veRef, silentLogger);
  await writer.create(aVE('after'));
  await until('ADDED after (the informer recovered)', () => seen.some(([ty, n]) => ty === 'ADDED' && n === 'after'), 60_000);

  // Watching again, not just re-listed once: a later change is delivered too.
  await writer.mergePatch('after', 'default', { spec: { hostname: 'changed' } });
  await until('MODIFIED after', () => seen.some(([ty, n]) => ty === 'MODIFIED' && n === 'after'), 30_000);
  assert.deepEqual(handle.list().map((v) => v.metadata.name).sort(), ['after', 'before']);
  assert.equal(handle.get('after', 'default')?.spec.hostname, 'changed');
  // 'before' was known already: the re-list does not report it as new.
  assert.equal(seen.filter(([ty, n]) => ty === 'ADDED' && n === 'before').length, 1);
  t.diagnostic(`restarts logged: ${log.warnings.length}; retryInMs: ${log.warnings.map((w) => w.obj.retryInMs).join(',')}`);
});

test('a stopped informer does not restart when the server goes away', { timeout: 60_000 }, async (t) => {
  const stateDir = mkdtempSync(join(tmpdir(), 'kvz-decl-informer-'));
  let server: RunningApiServer | undefined = await startApiServer({ stateDir, host: '127.0.0.1', port: 0, log: silentLogger, heartbeatMs: 1000 });
  t.after(async () => {
    await server?.close();
    rmSync(stateDir, { recursive: true, force: true });
  });
  const log = recordingLogger();
  const client = makeResourceClient<VirtualEnvironment>(loadKubeConfig(server.kubeconfigPath), veRef, log);
  const seen: string[] = [];
  const handle = await client.inform({ namespace: 'default' }, (_type, obj) => seen.push(obj.metadata.name));
  await client.create(aVE('one'));
  await until('ADDED one', () => seen.includes('one'), 15_000);
  await handle.stop();
  await server.close();
  server = undefined;
  // Longer than the first back-off (500 ms) several times over: nothing may try again.
  await new Promise((r) => setTimeout(r, 3000));
  assert.deepEqual(log.warnings, []);
});

// client-node's ListWatch says 'connect' before its re-list, so a back-off reset there would retry
// (and log a warning) every 500 ms for as long as the server is down.
test('restarts back off while the server stays down', { timeout: 60_000 }, async (t) => {
  const stateDir = mkdtempSync(join(tmpdir(), 'kvz-decl-informer-'));
  let server: RunningApiServer | undefined = await startApiServer({ stateDir, host: '127.0.0.1', port: 0, log: silentLogger, heartbeatMs: 1000 });
  const log = recordingLogger();
  const client = makeResourceClient<VirtualEnvironment>(loadKubeConfig(server.kubeconfigPath), veRef, log);
  const handle = await client.inform({ namespace: 'default' }, () => {});
  t.after(async () => {
    await handle.stop();
    await server?.close();
    rmSync(stateDir, { recursive: true, force: true });
  });
  await server.close();
  server = undefined;
  await until('three failed restarts', () => log.warnings.length >= 3, 30_000);
  const delays = log.warnings.slice(0, 3).map((w) => Number(w.obj.retryInMs));
  assert.ok(delays[1]! > delays[0]! && delays[2]! > delays[1]!, `retry delays grow: ${delays.join(', ')}`);
});
