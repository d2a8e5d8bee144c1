// Test helpers for the embedded API server: a server in a temp state dir, and an HTTPS client
// that trusts its CA and sends its token.

import { mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../../../src/core/logger.js';
import { type ApiServerOptions, type RunningApiServer, startApiServer } from '../../../src/apiserver/index.js';
import { loadCrds } from '../../../src/api/index.js';
import { Registry } from '../../../src/apiserver/registry.js';
import { type ResourceDef, ResourceTable } from '../../../src/apiserver/resources.js';
import { Store } from '../../../src/apiserver/store.js';

export interface TestServer extends RunningApiServer {
  stateDir: string;
  /** Stops the server and removes the state dir. */
  dispose(): Promise<void>;
}

export async function startTestServer(opts: Partial<ApiServerOptions> = {}): Promise<TestServer> {
  const stateDir = opts.stateDir ?? mkdtempSync(join(tmpdir(), 'kvz-apiserver-'));
  const s = await startApiServer({ stateDir, port: 0, log: silentLogger, ...opts });
  return {
    ...s,
    stateDir,
    async dispose() {
      await s.close();
      rmSync(stateDir, { recursive: true, force: true });
    },
  };
}

export interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json: () => any; // eslint-disable-line @typescript-eslint/no-explicit-any
}

export interface CallOptions {
  method?: string;
  body?: unknown;
  contentType?: string;
  accept?: string;
  token?: string | null;
}

export function call(s: RunningApiServer, path: string, o: CallOptions = {}): Promise<Reply> {
  const url = new URL(path, s.url);
  const headers: Record<string, string> = {};
  const token = o.token === undefined ? s.token : o.token;
  if (token) headers.Authorization = `Bearer ${token}`;
  if (o.accept) headers.Accept = o.accept;
  let payload: string | Buffer | undefined;
  if (o.body !== undefined) {
    // A Buffer goes as is (protobuf bodies), a string as text, anything else as JSON.
    payload = Buffer.isBuffer(o.body) || typeof o.body === 'string' ? o.body : JSON.stringify(o.body);
    headers['Content-Type'] = o.contentType ?? 'application/json';
    // Node does not chunk DELETE bodies by default, so the length must be given.
    headers['Content-Length'] = String(Buffer.byteLength(payload));
  }
  return new Promise((resolve, reject) => {
    const req = request(url, { method: o.method ?? 'GET', headers, ca: s.caCertPem }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString();
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json: () => JSON.parse(text) });
      });
    });
    req.on('error', reject);
    if (payload !== undefined) req.write(payload);
    req.end();
  });
}

export interface WatchClient {
  /** Parsed events so far. */
  events: { type: string; object: any }[]; // eslint-disable-line @typescript-eslint/no-explicit-any
  /** Raw chunks, including heartbeats. */
  raw: string[];
  headersAt: number;
  ended: Promise<void>;
  /** Resolves when at least n events have arrived. */
  waitFor(n: number, timeoutMs?: number): Promise<void>;
  close(): void;
}

export function watch(s: RunningApiServer, path: string, accept?: string): Promise<WatchClient> {
  const url = new URL(path, s.url);
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { Authorization: `Bearer ${s.token}` };
    if (accept) headers.Accept = accept;
    const req = request(url, { headers, ca: s.caCertPem }, (res) => {
      let buf = '';
      let waiters: (() => void)[] = [];
      let endResolve: () => void = () => {};
      const client: WatchClient = {
        events: [],
        raw: [],
        headersAt: Date.now(),
        ended: new Promise<void>((r) => (endResolve = r)),
        waitFor(n, timeoutMs = 5000) {
          return new Promise((res2, rej2) => {
            const t = setTimeout(() => rej2(new Error(`timed out waiting for ${n} events, have ${JSON.stringify(client.events.map((e) => e.type))}`)), timeoutMs);
            const check = () => {
              if (client.events.length >= n) {
                clearTimeout(t);
                res2();
              } else waiters.push(check);
            };
            check();
          });
        },
        close() {
          req.destroy();
        },
      };
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        client.raw.push(chunk);
        buf += chunk;
        let i;
        while ((i = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, i).trim();
          buf = buf.slice(i + 1);
          if (line) client.events.push(JSON.parse(line));
        }
        const w = waiters;
        waiters = [];
        w.forEach((f) => f());
      });
      res.on('end', () => endResolve());
      res.on('close', () => endResolve());
      resolve(client);
    });
    req.on('error', (err) => {
      if ((err as NodeJS.ErrnoException).code !== 'ECONNRESET') reject(err);
    });
    req.end();
  });
}

export const VE_PATH = '/apis/kubevz.io/v1alpha1/namespaces/default/virtualenvironments';

export function aVE(name: string, spec: Record<string, unknown> = {}): Record<string, unknown> {
  return { apiVersion: 'kubevz.io/v1alpha1', kind: 'VirtualEnvironment', metadata: { name }, spec: { template: 'busybox', ...spec } };
}

export const readyStatus = (gen = 1) => ({
  status: {
    phase: 'Running',
    observedGeneration: gen,
    conditions: [{ type: 'Ready', status: 'True', reason: 'Running', message: '', lastTransitionTime: '2026-01-01T00:00:00Z', observedGeneration: gen }],
  },
});

export interface TestRegistry {
  store: Store;
  reg: Registry;
  /** The VirtualEnvironment resource (kubevz.io/v1alpha1). */
  ve: ResourceDef;
  /** Closes the store and opens the same database again, as a server restart does. */
  reopen(): void;
  close(): void;
}

/** A Registry over a fresh SQLite store in a temp dir, serving the CRDs in crds/. */
export function openTestRegistry(prefix: string): TestRegistry {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const resources = new ResourceTable();
  for (const crd of loadCrds()) resources.addCrd(crd);
  const open = () => {
    const store = new Store(join(dir, 'db.sqlite'));
    return { store, reg: new Registry({ store, resources, log: silentLogger }) };
  };
  const fixture: TestRegistry = {
    ...open(),
    ve: resources.lookup('kubevz.io', 'v1alpha1', 'virtualenvironments') as ResourceDef,
    reopen: () => {
      fixture.store.close();
      Object.assign(fixture, open());
    },
    close: () => {
      fixture.store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return fixture;
}
