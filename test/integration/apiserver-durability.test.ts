// Durability of the embedded API server's SQLite store: the server runs as a child process, a
// burst of concurrent creates and updates is in flight when it is killed with SIGKILL, and after a
// restart on the same state dir every write that was acknowledged (2xx) is there, with
// resourceVersions that kept increasing. Also: the compaction retention window (count and age).

import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Store } from '../../src/apiserver/store.js';
import { aVE, call, VE_PATH } from '../unit/apiserver/helpers.js';
import type { RunningApiServer } from '../../src/apiserver/index.js';

const childScript = fileURLToPath(new URL('../fixtures/apiserver-child.js', import.meta.url));

interface Child {
  proc: ChildProcess;
  server: RunningApiServer;
}

function startChild(stateDir: string): Promise<Child> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [childScript, stateDir], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    proc.stderr?.on('data', (c: Buffer) => (err += c.toString()));
    proc.stdout?.on('data', (c: Buffer) => {
      out += c.toString();
      const nl = out.indexOf('\n');
      if (nl < 0) return;
      const info = JSON.parse(out.slice(0, nl)) as { url: string; port: number; token: string; caCertPem: string };
      resolve({ proc, server: { ...info, kubeconfigPath: '', close: async () => {} } });
    });
    proc.on('exit', (code) => reject(new Error(`api server child exited (${String(code)}) before listening: ${err}`)));
  });
}

function killHard(c: Child): Promise<void> {
  return new Promise((resolve) => {
    if (c.proc.exitCode !== null || c.proc.signalCode !== null) return resolve();
    c.proc.once('exit', () => resolve());
    if (c.proc.pid !== undefined) process.kill(c.proc.pid, 'SIGKILL');
  });
}

describe('durability', () => {
  const dirs: string[] = [];
  const children: Child[] = [];
  after(async () => {
    for (const c of children) await killHard(c);
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('kill -9 during a burst of writes loses nothing acknowledged; revisions stay monotonic', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kvz-kill9-'));
    dirs.push(dir);
    const first = await startChild(dir);
    children.push(first);
    const s = first.server;
    // name → highest acknowledged sequence number and its resourceVersion
    const acked = new Map<string, { seq: number; rv: number }>();
    let lastRvSeen = 0;
    let stop = false;
    let killedAt = 0;
    const worker = async (w: number) => {
      for (let i = 0; !stop; i++) {
        const name = `d${w}-${i % 5}`;
        const prev = acked.get(name);
        const seq = (prev?.seq ?? 0) + 1;
        let r: Awaited<ReturnType<typeof call>>;
        try {
          r = prev
            ? await call(s, `${VE_PATH}/${name}`, { method: 'PATCH', body: { metadata: { labels: { seq: String(seq) } } }, contentType: 'application/merge-patch+json' })
            : await call(s, VE_PATH, { method: 'POST', body: { ...aVE(name), metadata: { name, labels: { seq: String(seq) } } } });
        } catch (err) {
          if (killedAt === 0) throw err;
          return; // connection refused/reset after the kill
        }
        if (r.status >= 200 && r.status < 300) {
          const rv = Number(r.json().metadata.resourceVersion);
          if (prev) assert.ok(rv > prev.rv, `resourceVersion went back for ${name}: ${prev.rv} → ${rv}`);
          acked.set(name, { seq, rv });
          lastRvSeen = Math.max(lastRvSeen, rv);
        }
      }
    };
    const workers = Array.from({ length: 8 }, (_, w) => worker(w));
    // Kill while writes are in flight.
    while (lastRvSeen < 300) await new Promise((r) => setTimeout(r, 5));
    killedAt = Date.now();
    await killHard(first);
    stop = true;
    await Promise.all(workers);
    assert.ok(acked.size >= 8, `only ${acked.size} objects acknowledged`);

    const second = await startChild(dir);
    children.push(second);
    const list = (await call(second.server, VE_PATH)).json();
    const stored = new Map<string, { seq: number; rv: number }>(
      list.items.map((o: { metadata: { name: string; labels: { seq: string }; resourceVersion: string } }) => [o.metadata.name, { seq: Number(o.metadata.labels.seq), rv: Number(o.metadata.resourceVersion) }]),
    );
    for (const [name, a] of acked) {
      const got = stored.get(name);
      assert.ok(got, `acknowledged object ${name} is missing after kill -9`);
      // The in-flight write at the kill may have committed without its answer arriving: ≥, never <.
      assert.ok(got.seq >= a.seq, `${name}: acknowledged seq ${a.seq}, stored ${got.seq}`);
      assert.ok(got.rv >= a.rv, `${name}: acknowledged rv ${a.rv}, stored ${got.rv}`);
    }
    assert.ok(Number(list.metadata.resourceVersion) >= lastRvSeen);
    const after = await call(second.server, VE_PATH, { method: 'POST', body: aVE('after-restart') });
    assert.equal(after.status, 201);
    assert.ok(Number(after.json().metadata.resourceVersion) > Number(list.metadata.resourceVersion), 'a write after restart gets a higher revision');
    await killHard(second);
  });

  it('compaction keeps the newest N revisions and everything younger than the age window', () => {
    const dir = mkdtempSync(join(tmpdir(), 'kvz-compact-'));
    dirs.push(dir);
    const path = join(dir, 'db.sqlite');
    let store = new Store(path);
    for (let i = 0; i < 50; i++) store.create('kubevz.io/virtualenvironments', 'default', `c${i}`, { metadata: { name: `c${i}` } });
    const now = Date.now();
    // Everything is younger than 1 h: nothing may go, whatever the count says.
    assert.equal(store.compact(10, 3_600_000, now), 0);
    // Seen from 2 h later, only the count window holds: newest 10 kept.
    assert.equal(store.compact(10, 3_600_000, now + 7_200_000), 40);
    assert.equal(store.changesSince('kubevz.io/virtualenvironments', 40).length, 10);
    store.close();
    store = new Store(path);
    assert.equal(store.compactRev(), 40);
    const o = store.create('kubevz.io/virtualenvironments', 'default', 'n', { metadata: { name: 'n' } });
    assert.equal(o.metadata.resourceVersion, '51');
    // Compacting everything away still never reuses a revision after reopening.
    store.compact(0);
    store.close();
    store = new Store(path);
    assert.equal(store.create('kubevz.io/virtualenvironments', 'default', 'm', { metadata: { name: 'm' } }).metadata.resourceVersion, '52');
    store.close();
  });
});
