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

/** What one (VE, resource) series last exported, so unchanged values cost no gauge update. */
interface Series {
  labels: { namespace: string; name: string; resource: string };
  /** Per column; undefined = not exported (unlimited). */
  values: (number | undefined)[];
  /** Pass stamp of the last set() that listed this resource. */
  stamp: number;
}

export class BeancounterMetrics {
  readonly registry = new Registry();
  private readonly gauges: Gauge<'namespace' | 'name' | 'resource'>[];
  /** Series currently exported, per VE ("namespace/name") and resource, so a removed VE's series disappear. */
  private readonly series = new Map<string, Map<string, Series>>();
  private stamp = 0;

  constructor() {
    const help: Record<(typeof COLUMNS)[number], string> = {
      held: 'Current usage (beancounter held; pages for *pages, 1 KiB blocks for diskspace, millicores for cpu)',
      maxheld: 'Peak usage seen (beancounter maxheld)',
      barrier: 'Soft limit (beancounter barrier); absent when unlimited',
      limit: 'Hard limit (beancounter limit); absent when unlimited',
      failcnt: 'Times the limit refused the VE (beancounter failcnt)',
    };
    this.gauges = COLUMNS.map((c) => new Gauge({ name: `kubevz_beancounter_${c}`, help: help[c], labelNames: ['namespace', 'name', 'resource'] as const, registers: [this.registry] }));
  }

  /**
   * Exports one VE's rows. Only values that changed since the last call touch a gauge: a
   * prom-client set hashes the label set each time, which for a node of idle VEs was most of
   * the refresh pass's metrics cost.
   */
  set(ve: VERef, rows: Beancounter[]): void {
    const key = `${ve.namespace}/${ve.name}`;
    let byResource = this.series.get(key);
    if (!byResource) this.series.set(key, (byResource = new Map()));
    const stamp = ++this.stamp;
    for (const row of rows) {
      let s = byResource.get(row.resource);
      if (!s) byResource.set(row.resource, (s = { labels: { namespace: ve.namespace, name: ve.name, resource: row.resource }, values: [], stamp }));
      s.stamp = stamp;
      for (let i = 0; i < COLUMNS.length; i++) {
        const raw = row[COLUMNS[i]!];
        const v = typeof raw === 'number' ? raw : undefined;
        if (i in s.values && s.values[i] === v) continue;
        if (v === undefined) this.gauges[i]!.remove(s.labels);
        else this.gauges[i]!.set(s.labels, v);
        s.values[i] = v;
      }
    }
    for (const [resource, s] of byResource) {
      if (s.stamp === stamp) continue;
      for (const g of this.gauges) g.remove(s.labels);
      byResource.delete(resource);
    }
  }

  /** Drops the series of every VE not in the list. */
  retain(ves: VERef[]): void {
    const keep = new Set(ves.map((v) => `${v.namespace}/${v.name}`));
    for (const [key, byResource] of this.series) {
      if (keep.has(key)) continue;
      for (const s of byResource.values()) for (const g of this.gauges) g.remove(s.labels);
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
