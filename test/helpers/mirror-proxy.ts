// A pass-through HTTP proxy to the host's Debian mirror, for node agents of the multi-node
// harness (test/helpers/multinode.ts): a node's network namespace reaches only the fabric, not
// the host's uplink, so debootstrap run by an agent cannot reach the mirror itself. The proxy
// listens on the fabric address (root namespace); a VETemplate names it in
// spec.debootstrap.mirror (a transport detail: not part of the template's digest). GET and HEAD
// only; the upstream's status and body pass through unchanged.

import { request as httpRequest, createServer, type IncomingMessage, type Server } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { AddressInfo } from 'node:net';
import { nodeMirror } from '../../src/runtime/template-debootstrap.js';

export interface MirrorProxy {
  /** The mirror URI to give debootstrap (spec.debootstrap.mirror). */
  url: string;
  /** The upstream mirror it forwards to. */
  upstream: string;
  /** Requests served (to show the nodes really used it). */
  requests(): number;
  close(): Promise<void>;
}

/** Starts the proxy on `host` (an address the nodes reach), forwarding to the host's own Debian mirror. */
export async function startMirrorProxy(host: string, upstream?: string): Promise<MirrorProxy> {
  const base = new URL(upstream ?? (await nodeMirror()));
  if (!base.pathname.endsWith('/')) base.pathname += '/';
  let count = 0;
  const server: Server = createServer((req, res) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405).end();
      return;
    }
    count++;
    const target = new URL((req.url ?? '/').replace(/^\/+/, ''), base);
    const send = target.protocol === 'https:' ? httpsRequest : httpRequest;
    const headers = { ...req.headers, host: target.host };
    const up = send(target, { method: req.method, headers }, (r: IncomingMessage) => {
      res.writeHead(r.statusCode ?? 502, r.headers);
      r.pipe(res);
    });
    up.setTimeout(60_000, () => up.destroy(new Error('upstream timed out')));
    up.on('error', (err) => {
      if (!res.headersSent) res.writeHead(502).end(String(err));
      else res.destroy(err);
    });
    up.end();
  });
  await new Promise<void>((res, rej) => {
    server.once('error', rej);
    server.listen(0, host, () => res());
  });
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://${host}:${port}/`,
    upstream: base.href,
    requests: () => count,
    close: () => new Promise<void>((res) => {
      server.closeAllConnections();
      server.close(() => res());
    }),
  };
}
