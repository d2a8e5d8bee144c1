// Prometheus metrics of the node agent (prom-client): the same beancounters as
// status.beancounters, one gauge per column, labelled namespace, name, resource. Served over
// plain HTTP on --metrics-listen (bind it to 127.0.0.1 unless a scraper needs more).

import { createServer, type Server } from 'node:http';
import { Gauge, Registry } from 'prom-client';
import type { Beancounter } from '../api/types.js';
import type { Logger } from '../core/logger.js';

export interface VERef {
  namespace: string;
  name: string;
}

const COLUMNS = ['held', 'maxheld', 'barrier', 'limit', 'failcnt'] as const;

export class BeancounterMetrics {
  readonly registry = new Registry();
  private readonly gauges: Record<(typeof COLUMNS)[number], Gauge<'namespace' | 'name' | 'resource'>>;
  /** Label sets currently exported, per VE, so a removed VE's series disappear. */
  private readonly series = new Map<string, Set<string>>();

  constructor() {
    const help: Record<(typeof COLUMNS)[number], string> = {
      held: 'Current usage (beancounter held; pages for *pages, 1 KiB blocks for diskspace, millicores for cpu)',
      maxheld: 'Peak usage seen (beancounter maxheld)',
      barrier: 'Soft limit (beancounter barrier); absent when unlimited',
      limit: 'Hard limit (beancounter limit); absent when unlimited',
      failcnt: 'Times the limit refused the VE (beancounter failcnt)',
    };
    this.gauges = Object.fromEntries(
      COLUMNS.map((c) => [c, new Gauge({ name: `kubevz_beancounter_${c}`, help: help[c], labelNames: ['namespace', 'name', 'resource'] as const, registers: [this.registry] })]),
    ) as BeancounterMetrics['gauges'];
  }

  set(ve: VERef, rows: Beancounter[]): void {
    const key = `${ve.namespace}/${ve.name}`;
    const seen = new Set<string>();
    for (const row of rows) {
      const labels = { namespace: ve.namespace, name: ve.name, resource: row.resource };
      seen.add(row.resource);
      for (const c of COLUMNS) {
        const v = row[c];
        if (typeof v === 'number') this.gauges[c].set(labels, v);
        else this.gauges[c].remove(labels);
      }
    }
    for (const old of this.series.get(key) ?? []) {
      if (!seen.has(old)) for (const c of COLUMNS) this.gauges[c].remove({ namespace: ve.namespace, name: ve.name, resource: old });
    }
    this.series.set(key, seen);
  }

  /** Drops the series of every VE not in the list. */
  retain(ves: VERef[]): void {
    const keep = new Set(ves.map((v) => `${v.namespace}/${v.name}`));
    for (const [key, resources] of this.series) {
      if (keep.has(key)) continue;
      const [namespace, name] = key.split('/') as [string, string];
      for (const resource of resources) for (const c of COLUMNS) this.gauges[c].remove({ namespace, name, resource });
      this.series.delete(key);
    }
  }
}

export interface MetricsServer {
  url: string;
  close(): Promise<void>;
}

/** Serves GET /metrics from the registry. */
export async function startMetricsServer(o: { host: string; port: number; registry: Registry; log: Logger }): Promise<MetricsServer> {
  const server: Server = createServer((req, res) => {
    if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: metrics are at /metrics\n');
      return;
    }
    o.registry
      .metrics()
      .then((text) => res.writeHead(200, { 'content-type': o.registry.contentType }).end(text))
      .catch((err: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${err.message}\n`));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host, () => resolve());
  });
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : o.port;
  const url = `http://${o.host.includes(':') ? `[${o.host}]` : o.host}:${port}/metrics`;
  o.log.info({ url }, 'metrics endpoint listening');
  return { url, close: () => new Promise((resolve) => server.close(() => resolve())) };
}
