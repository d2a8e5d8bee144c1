// startApiServer: the embedded, SQLite-backed, Kubernetes-compatible API server `kvz up` runs.
// HTTPS on 127.0.0.1 by default; every request needs the bearer token (or a client certificate
// signed by the server's CA), which is written into a 0600 kubeconfig under the state dir.

import { timingSafeEqual } from 'node:crypto';
import { chmodSync, mkdirSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { defaultCrdDir, isCrd, loadCrds } from '../api/index.js';
import type { Logger } from '../core/index.js';
import { handleRequest } from './handlers.js';
import { sendError } from './http-util.js';
import { writeKubeconfig } from './kubeconfig.js';
import { meta } from './object-meta.js';
import { ensurePki, ensureToken } from './pki.js';
import { Registry } from './registry.js';
import { CRD_RESOURCE, NAMESPACE_RESOURCE, ResourceTable } from './resources.js';
import { errors } from './status-errors.js';
import { type Obj, Store } from './store.js';
import { WatchHub } from './watch-hub.js';

export interface ApiServerOptions {
  stateDir: string;
  /** Listen address; default 127.0.0.1. */
  host?: string;
  /** Default 6443; 0 picks a free port. */
  port?: number;
  /** CRD YAML directory; default the repository's crds/. */
  crdDir?: string;
  log: Logger;
  /** Never compact the newest N revisions (default 1000, as kine). */
  compactMinRetain?: number;
  /** Never compact revisions younger than this (default 10 min: client-node re-watches every 30 s, kubectl relists on 410). */
  compactMinAgeMs?: number;
  /** How often events are pruned and the log compacted (default 60 s). */
  maintenanceMs?: number;
  /** Watch heartbeat interval (default 10 s). */
  heartbeatMs?: number;
}

export interface RunningApiServer {
  /** https://127.0.0.1:PORT */
  url: string;
  port: number;
  kubeconfigPath: string;
  token: string;
  caCertPem: string;
  close(): Promise<void>;
}

const EVENT_TTL_MS = 60 * 60 * 1000;
const MAINTENANCE_MS = 60 * 1000;

function urlHost(host: string): string {
  if (host === '0.0.0.0' || host === '::' || host === '') return '127.0.0.1';
  return host.includes(':') ? `[${host}]` : host;
}

function tokenMatches(header: string | undefined, token: string): boolean {
  if (!header?.startsWith('Bearer ')) return false;
  const got = Buffer.from(header.slice(7).trim());
  const want = Buffer.from(token);
  return got.length === want.length && timingSafeEqual(got, want);
}

export async function startApiServer(opts: ApiServerOptions): Promise<RunningApiServer> {
  const host = opts.host ?? '127.0.0.1';
  const log = opts.log.child({ component: 'apiserver' });
  const dataDir = join(opts.stateDir, 'apiserver');
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  chmodSync(dataDir, 0o700);
  const pki = ensurePki(join(opts.stateDir, 'pki'), host);
  const token = ensureToken(join(dataDir, 'token'));

  const store = new Store(join(dataDir, 'db.sqlite'));
  const resources = new ResourceTable();
  const registry = new Registry({ store, resources, log });
  let hub: WatchHub | undefined;
  try {
    // CRDs stored by earlier runs (e.g. `kubectl apply -f crds/`) first, then crds/ wins.
    for (const crd of store.list(CRD_RESOURCE.key).items) {
      try {
        if (isCrd(crd)) resources.addCrd(crd);
      } catch (err) {
        log.warn({ err, crd: meta(crd).name }, 'stored CustomResourceDefinition cannot be served');
      }
    }
    for (const crd of loadCrds(opts.crdDir ?? defaultCrdDir())) {
      registry.ensure(CRD_RESOURCE, '', crd as unknown as Obj);
    }
    registry.ensure(NAMESPACE_RESOURCE, '', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'default' } });
    hub = new WatchHub(store);
  } catch (err) {
    store.close();
    throw err;
  }

  const openWatches = new Set<() => void>();
  const deps = { registry, resources, hub, log, heartbeatMs: opts.heartbeatMs ?? 10_000, openWatches };
  const server: Server = createServer(
    { key: pki.serverKeyPem, cert: pki.serverCertPem, ca: pki.caCertPem, requestCert: true, rejectUnauthorized: false },
    (req, res) => {
      const started = Date.now();
      res.on('finish', () => log.debug({ method: req.method, url: req.url, code: res.statusCode, ms: Date.now() - started }, 'request'));
      const certOk = (req.socket as TLSSocket).authorized === true;
      if (!certOk && !tokenMatches(req.headers.authorization, token)) return sendError(res, errors.unauthorized());
      void handleRequest(req, res, deps);
    },
  );
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 6443, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const url = `https://${urlHost(host)}:${port}`;
  const kubeconfigPath = join(opts.stateDir, 'kubeconfig');
  writeKubeconfig(kubeconfigPath, { server: url, caCertPem: pki.caCertPem, token });

  const minRetain = opts.compactMinRetain ?? 1000;
  const minAgeMs = opts.compactMinAgeMs ?? 10 * 60 * 1000;
  const maintenance = setInterval(() => {
    try {
      const pruned = registry.pruneEvents(EVENT_TTL_MS);
      const rev = store.compact(minRetain, minAgeMs);
      log.debug({ prunedEvents: pruned, compactRev: rev }, 'apiserver maintenance');
    } catch (err) {
      log.warn({ err }, 'apiserver maintenance failed');
    }
  }, opts.maintenanceMs ?? MAINTENANCE_MS);
  maintenance.unref();
  log.info({ url, kubeconfig: kubeconfigPath }, 'API server listening');

  let closing: Promise<void> | undefined;
  return {
    url,
    port,
    kubeconfigPath,
    token,
    caCertPem: pki.caCertPem,
    close() {
      closing ??= (async () => {
        clearInterval(maintenance);
        for (const end of [...openWatches]) end();
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeAllConnections();
        });
        hub?.close();
        store.close();
      })();
      return closing;
    },
  };
}

