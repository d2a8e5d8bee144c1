// Benchmark of the embedded API server: write throughput, a 10,000-object list, and watch delivery
// latency to 50 concurrent watchers — each over HTTPS (keep-alive, token auth) and against the
// same SQLite store + registry directly (no HTTP) in the same run, with the HTTP/direct ratio.
// Targets (issue 5): ≥1,000 writes/s, list of 10,000 < 300 ms, watch p99 < 50 ms. Prints; asserts
// nothing. Run: `node dist/bench/apiserver-throughput.js [writes] [listSize] [watchers]`.

import { Agent, request } from 'node:https';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { loadCrds } from '../src/api/index.js';
import { silentLogger } from '../src/core/logger.js';
import { startApiServer } from '../src/apiserver/index.js';
import { Registry } from '../src/apiserver/registry.js';
import { type ResourceDef, ResourceTable } from '../src/apiserver/resources.js';
import { Store } from '../src/apiserver/store.js';
import { WatchHub } from '../src/apiserver/watch-hub.js';

const WRITES = Number(process.argv[2] ?? 3000);
const LIST_SIZE = Number(process.argv[3] ?? 10_000);
const WATCHERS = Number(process.argv[4] ?? 50);
const WATCH_EVENTS = 200;
const WARMUP = 1000;
const CONCURRENCY = 32;
const V = 'v1alpha1';
const PATH = (ns: string) => `/apis/kubevz.io/${V}/namespaces/${ns}/virtualenvironments`;

const ve = (name: string, i: number) => ({
  apiVersion: `kubevz.io/${V}`,
  kind: 'VirtualEnvironment',
  metadata: { name, labels: { bench: 'yes', shard: String(i % 10) } },
  spec: { template: 'busybox', powerState: 'Stopped', hostname: name, resources: { memory: { limit: '256Mi' }, cpu: { units: 1000 } } },
});

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
}
const median = (xs: number[]) => pct(xs, 50);
const f1 = (n: number) => n.toFixed(1);

function veDef(resources: ResourceTable): ResourceDef {
  for (const crd of loadCrds()) resources.addCrd(crd);
  return resources.lookup('kubevz.io', V, 'virtualenvironments') as ResourceDef;
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'kvz-bench-api-'));
  try {
    // ---- direct: registry + store, no HTTP ----
    const resources = new ResourceTable();
    const def = veDef(resources);
    const store = new Store(join(dir, 'direct.sqlite'));
    const reg = new Registry({ store, resources, log: silentLogger });
    // Warm-up (not timed), here and over HTTPS below: the rates are those of a running server,
    // not of code V8 has not compiled yet.
    for (let i = 0; i < WARMUP; i++) reg.create(def, V, 'warm', ve(`w${i}`, i), { manager: 'bench' });
    let t0 = performance.now();
    for (let i = 0; i < WRITES; i++) reg.create(def, V, 'w', ve(`w${i}`, i), { manager: 'bench' });
    const directWritesPerS = WRITES / ((performance.now() - t0) / 1000);
    for (let i = 0; i < LIST_SIZE; i++) reg.create(def, V, 'bulk', ve(`b${i}`, i), { manager: 'bench' });
    const directList: number[] = [];
    for (let r = 0; r < 5; r++) {
      t0 = performance.now();
      const items = reg.list(def, 'bulk').items;
      JSON.stringify(items); // what a response would serialise
      directList.push(performance.now() - t0);
    }
    const hub = new WatchHub(store);
    const sent = new Map<string, number>();
    const directLat: number[] = [];
    const handles = Array.from({ length: WATCHERS }, () =>
      hub.watch({ def, namespace: 'lat', match: () => true, resourceVersion: String(store.currentRev()) }, {
        event: (_t, o) => {
          const s = sent.get(String((o.metadata as { name: string }).name));
          if (s !== undefined) directLat.push(performance.now() - s);
        },
        end() {},
      }),
    );
    for (let i = 0; i < WATCH_EVENTS; i++) {
      sent.set(`l${i}`, performance.now());
      reg.create(def, V, 'lat', ve(`l${i}`, i), { manager: 'bench' });
      if (i % 10 === 0) await new Promise((r) => setImmediate(r));
    }
    for (const h of handles) h.stop();
    hub.close();
    store.close();

    // ---- HTTP: the same workload through the server (pre-populated list namespace) ----
    const stateDir = join(dir, 'state');
    {
      const r2 = new ResourceTable();
      const d2 = veDef(r2);
      const s2 = new Store(join(stateDir, 'apiserver', 'db.sqlite'));
      const g2 = new Registry({ store: s2, resources: r2, log: silentLogger });
      for (let i = 0; i < LIST_SIZE; i++) g2.create(d2, V, 'bulk', ve(`b${i}`, i), { manager: 'bench' });
      s2.close();
    }
    const server = await startApiServer({ stateDir, port: 0, log: silentLogger, heartbeatMs: 10_000 });
    const agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY + WATCHERS + 4, ca: server.caCertPem });
    /** When the last byte of the latest answer arrived (before decoding it). */
    let lastByteAt = 0;
    const send = (method: string, path: string, body?: unknown, accept?: string): Promise<{ status: number; text: string }> =>
      new Promise((resolve, reject) => {
        const payload = body === undefined ? undefined : JSON.stringify(body);
        const headers: Record<string, string> = { Authorization: `Bearer ${server.token}` };
        if (payload) {
          headers['Content-Type'] = 'application/json';
          headers['Content-Length'] = String(Buffer.byteLength(payload));
        }
        if (accept) headers.Accept = accept;
        const req = request(new URL(path, server.url), { method, headers, agent }, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            lastByteAt = performance.now();
            resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString() });
          });
        });
        req.on('error', reject);
        if (payload) req.write(payload);
        req.end();
      });

    const writeAll = async (ns: string, n: number): Promise<void> => {
      let next = 0;
      await Promise.all(
        Array.from({ length: CONCURRENCY }, async () => {
          for (let i = next++; i < n; i = next++) {
            const r = await send('POST', `${PATH(ns)}?fieldManager=bench`, ve(`w${i}`, i));
            if (r.status !== 201) throw new Error(`create ${ns}/w${i}: ${r.status} ${r.text}`);
          }
        }),
      );
    };
    await writeAll('warm', WARMUP);
    t0 = performance.now();
    await writeAll('w', WRITES);
    const httpWritesPerS = WRITES / ((performance.now() - t0) / 1000);

    const httpList: number[] = [];
    const httpListLastByte: number[] = [];
    const httpTable: number[] = [];
    let count = 0;
    for (let r = 0; r < 5; r++) {
      t0 = performance.now();
      const res = await send('GET', PATH('bulk'));
      count = (JSON.parse(res.text) as { items: unknown[] }).items.length;
      httpList.push(performance.now() - t0);
      httpListLastByte.push(lastByteAt - t0);
      t0 = performance.now();
      await send('GET', `${PATH('bulk')}?limit=500`, undefined, 'application/json;as=Table;v=v1;g=meta.k8s.io,application/json');
      httpTable.push(performance.now() - t0);
    }
    if (count !== LIST_SIZE) throw new Error(`listed ${count} objects, expected ${LIST_SIZE}`);

    const httpLat: number[] = [];
    const httpSent = new Map<string, number>();
    const watches: { destroy(): void }[] = [];
    const rv = JSON.parse((await send('GET', `${PATH('lat')}`)).text).metadata.resourceVersion as string;
    await Promise.all(
      Array.from(
        { length: WATCHERS },
        () =>
          new Promise<void>((resolve, reject) => {
            const req = request(new URL(`${PATH('lat')}?watch=true&resourceVersion=${rv}`, server.url), { headers: { Authorization: `Bearer ${server.token}` }, agent }, (res) => {
              let buf = '';
              res.setEncoding('utf8');
              res.on('data', (c: string) => {
                const now = performance.now();
                buf += c;
                let nl;
                while ((nl = buf.indexOf('\n')) >= 0) {
                  const line = buf.slice(0, nl).trim();
                  buf = buf.slice(nl + 1);
                  if (!line) continue;
                  const ev = JSON.parse(line) as { object: { metadata: { name: string } } };
                  const s = httpSent.get(ev.object.metadata.name);
                  if (s !== undefined) httpLat.push(now - s);
                }
              });
              resolve();
            });
            req.on('error', (err) => ((err as NodeJS.ErrnoException).code === 'ECONNRESET' ? undefined : reject(err)));
            req.end();
            watches.push(req);
          }),
      ),
    );
    for (let i = 0; i < WATCH_EVENTS; i++) {
      httpSent.set(`l${i}`, performance.now());
      await send('POST', PATH('lat'), ve(`l${i}`, i));
      await new Promise((r) => setTimeout(r, 2));
    }
    const deadline = Date.now() + 10_000;
    while (httpLat.length < WATCH_EVENTS * WATCHERS && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    for (const w of watches) w.destroy();
    agent.destroy();
    await server.close();

    const row = (name: string, http: number, direct: number, unit: string, target: string) =>
      console.log(`${name.padEnd(34)} http ${f1(http).padStart(9)} ${unit.padEnd(6)} direct ${f1(direct).padStart(9)} ${unit.padEnd(6)} http/direct ${(http / direct).toFixed(2).padStart(6)}   target ${target}`);
    console.log(`embedded API server benchmark: ${WRITES} writes (${CONCURRENCY} concurrent over HTTPS; after ${WARMUP} untimed, both ways), list of ${LIST_SIZE}, ${WATCHERS} watchers × ${WATCH_EVENTS} events`);
    row('writes', httpWritesPerS, directWritesPerS, '/s', '≥ 1000/s (http)');
    row(`list ${LIST_SIZE} (median of 5)`, median(httpList), median(directList), 'ms', '< 300 ms');
    // The same lists up to their last byte received: the rest of the row above is this (same
    // process) client decoding and parsing ~9 MB of JSON.
    row(`  of which to last byte (median)`, median(httpListLastByte), median(directList), 'ms', '-');
    row('list as Table, limit=500 (median)', median(httpTable), median(directList) * (500 / LIST_SIZE), 'ms', '-');
    row('watch delivery p50', pct(httpLat, 50), pct(directLat, 50), 'ms', '-');
    row('watch delivery p99', pct(httpLat, 99), pct(directLat, 99), 'ms', '< 50 ms');
    console.log(`watch events received: http ${httpLat.length}/${WATCH_EVENTS * WATCHERS}, direct ${directLat.length}/${WATCH_EVENTS * WATCHERS}`);
    console.log('(http watch latency is measured from before the create request is sent; direct from before registry.create)');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
