// The migration data channel (ADR 004): the target agent's HTTP server that receives a VE's
// disk blocks and CRIU images and restores it, and the client the source agent drives it with.
//
// Every request names one VEMigration and carries `Authorization: Bearer <token>`. The server
// reads that migration and its credential Secret itself (never trusting what the caller says)
// and refuses: 404 unknown migration, 403 this node is not its target, 401 wrong token, 409 the
// migration is over or the request does not fit its phase. Bodies are streamed frame by frame
// (migration-frames.ts): no whole disk or image set is ever held in memory.
//
// The images' sha256 travels as an HTTP trailer (or header) `x-kvz-sha256` over the whole
// checkpoint body: the sender hashes while it streams, so the images are read once during the
// downtime, and the receiver checks it before it allows a restore.

import { createHash, timingSafeEqual } from 'node:crypto';
import { mkdir, open, rm, writeFile } from 'node:fs/promises';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import { MIGRATION_TOKEN_KEY, type KubeObject, type MigrationPhase, type VEMigration } from '../api/types.js';
import { errorCode, errorMessage, KvzError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { ResourceClient } from '../core/resource-client.js';
import { BLOCK_SIZE, blockFrameHeader, ByteReader, checkBlockUnit, checkImageName, fileFrameHeader, readBlockFrames, readFileFrames } from './migration-frames.js';
import { isTerminalPhase } from './migration-status.js';

/** What the target role does for the channel (migration-target.ts). */
export interface IncomingHandler {
  /** Per-block sha256 of the incoming disk image. */
  digests(m: VEMigration): Promise<string[]>;
  /** Writes the blocks into the incoming disk image as they arrive (the image opened once per request). */
  /** Writes each frame's data at index × unit bytes into the incoming image. */
  writeBlocks(m: VEMigration, blocks: AsyncIterable<{ index: number; data: Buffer }>, unit: number): Promise<void>;
  /** The last disk delta is written (the source's image is at rest): the target may mount it. Must not throw. */
  diskComplete?(m: VEMigration): void;
  /** The CRIU images are in and verified: the target may prepare what the restore mounts from them. Must not throw. */
  imagesComplete?(m: VEMigration): void;
  /** Where this migration's CRIU images are kept on this node. */
  imageDir(m: VEMigration): string;
  restore(m: VEMigration, imageDir: string, signal?: AbortSignal): Promise<{ ms: number }>;
  abort(m: VEMigration): Promise<void>;
  running(m: VEMigration): Promise<boolean>;
}

export interface ChannelServerOptions {
  nodeName: string;
  migrations: ResourceClient<VEMigration>;
  secrets: ResourceClient<KubeObject>;
  handler: IncomingHandler;
  log: Logger;
}

/** Image files up to this size are buffered and written concurrently (migration images are mostly tiny). */
const SMALL_IMAGE_FILE = 1 << 20;

/** Phases in which the source may send disk blocks and images. */
// Restoring too: the source writes it while its last data is still on the way (the restore itself waits for verified images).
const SENDING: readonly MigrationPhase[] = ['TargetReady', 'Checkpointing', 'Transferring', 'Restoring'];

class HttpError extends Error {
  constructor(readonly status: number, message: string, readonly extra: Record<string, unknown> = {}) {
    super(message);
  }
}

export class MigrationChannelServer {
  private server: http.Server | undefined;
  /** Migration uid → sha256 of the images received and verified; restore needs it. */
  private readonly verified = new Map<string, string>();
  /** `<migration uid>/<secret name>` → its token (dropped with forget()). */
  private readonly tokens = new Map<string, string>();
  /** Migration uid → its restore while it runs. */
  private readonly restoring = new Map<string, Promise<unknown>>();
  /**
   * Migrations whose state was asked: no restore starts for them any more, so the answer the
   * source got is final (it asks when it lost a restore's answer, before it rolls back).
   */
  private readonly answered = new Set<string>();
  private readonly log: Logger;

  constructor(private readonly o: ChannelServerOptions) {
    this.log = o.log.child({ component: 'migration-channel' });
  }

  /** Listens on `host:port` (port 0 = a free one); resolves to the bound address. */
  async listen(hostPort: string): Promise<{ host: string; port: number }> {
    const { host, port } = parseHostPort(hostPort);
    const server = http.createServer((req, res) => void this.handle(req, res));
    // A disk copy can take longer than node's default request timeout (5 min).
    server.requestTimeout = 0;
    server.headersTimeout = 30_000;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.server = server;
    const a = server.address() as AddressInfo;
    this.log.info({ address: a.address, port: a.port }, 'migration channel listening');
    return { host: a.address, port: a.port };
  }

  async close(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    if (!s) return;
    s.closeAllConnections();
    await new Promise<void>((resolve) => s.close(() => resolve()));
  }

  /** Forget what was verified for a migration (its incoming copy was dropped). */
  forget(uid: string | undefined): void {
    if (!uid) return;
    this.verified.delete(uid);
    this.answered.delete(uid);
    for (const k of this.tokens.keys()) if (k.startsWith(`${uid}/`)) this.tokens.delete(k);
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const started = Date.now();
    try {
      const url = new URL(req.url ?? '/', 'http://x');
      const final = url.searchParams.get('final') === '1';
      const unitParam = url.searchParams.get('unit');
      const m = /^\/v1\/migrations\/([^/]+)\/([^/]+)\/(disk\/digests|disk\/blocks|checkpoint|restore|abort|state)$/.exec(url.pathname);
      if (!m) throw new HttpError(404, `no such endpoint ${req.method} ${req.url}`);
      const [, namespace, name, what] = m as unknown as [string, string, string, string];
      const route = `${req.method} ${what}`;
      const mig = await this.authorize(decodeURIComponent(namespace), decodeURIComponent(name), req);
      const phase = mig.status?.phase;
      const needPhase = (ok: readonly (MigrationPhase | undefined)[]) => {
        if (!ok.includes(phase)) throw new HttpError(409, `migration ${namespace}/${name} is in phase ${phase ?? '(none)'}; ${route} needs ${ok.join(' or ')}`);
      };
      switch (route) {
        case 'GET disk/digests':
          needPhase(SENDING);
          return json(res, 200, { blockSize: BLOCK_SIZE, digests: await this.o.handler.digests(mig) });
        case 'PUT disk/blocks': {
          needPhase(SENDING);
          let blocks = 0;
          let bytes = 0;
          let unit: number;
          try {
            unit = checkBlockUnit(unitParam === null ? BLOCK_SIZE : Number(unitParam));
          } catch (err) {
            throw new HttpError(400, errorMessage(err));
          }
          await this.o.handler.writeBlocks(mig, (async function* () {
            for await (const b of readBlockFrames(new ByteReader(req), unit)) {
              yield b;
              blocks++;
              bytes += b.data.length;
            }
          })(), unit);
          if (final) this.o.handler.diskComplete?.(mig);
          this.log.debug({ migration: `${namespace}/${name}`, blocks, bytes, final, ms: Date.now() - started }, 'disk blocks received');
          return json(res, 200, { blocks, bytes });
        }
        case 'PUT checkpoint': {
          needPhase(SENDING);
          const t0 = Date.now();
          const got = await this.receiveImages(mig, req);
          this.o.handler.imagesComplete?.(mig);
          this.log.debug({ migration: `${namespace}/${name}`, files: got.files, bytes: got.bytes, ms: Date.now() - t0, sinceRequest: Date.now() - started }, 'checkpoint images received');
          return json(res, 200, got);
        }
        case 'POST restore': {
          needPhase(['Restoring']);
          const uid = mig.metadata.uid ?? '';
          if (!this.verified.has(uid)) throw new HttpError(409, 'no verified checkpoint images for this migration; PUT checkpoint first');
          if (this.restoring.has(uid)) throw new HttpError(409, `migration ${namespace}/${name}: a restore is already running`);
          if (this.answered.has(uid)) throw new HttpError(409, `migration ${namespace}/${name}: the source asked for the VE's state, which ends its restores here`);
          const restore = this.o.handler.restore(mig, this.o.handler.imageDir(mig));
          this.restoring.set(uid, restore);
          try {
            const r = await restore;
            return json(res, 200, { ms: r.ms });
          } catch (err) {
            const log = (err as KvzError).details?.criuLog ?? (err as KvzError).details?.log;
            throw new HttpError(500, errorMessage(err), { reason: errorCode(err) ?? 'RestoreFailed', ...(typeof log === 'string' ? { criuLog: log } : {}) });
          } finally {
            this.restoring.delete(uid);
          }
        }
        case 'POST abort':
          this.forget(mig.metadata.uid);
          // A restore still running would bring the VE up after the copy was dropped.
          await this.restoring.get(mig.metadata.uid ?? '')?.catch(() => undefined);
          await this.o.handler.abort(mig);
          return json(res, 200, {});
        case 'GET state': {
          // Final: a restore still running is waited for, and none starts after this answer.
          const uid = mig.metadata.uid ?? '';
          this.answered.add(uid);
          await this.restoring.get(uid)?.catch(() => undefined);
          return json(res, 200, { running: await this.o.handler.running(mig) });
        }
        default:
          throw new HttpError(405, `${req.method} is not allowed on ${what}`);
      }
    } catch (err) {
      const status = err instanceof HttpError ? err.status : errorCode(err) === 'Invalid' ? 400 : 500;
      if (status >= 500) this.log.warn({ url: req.url, err: errorMessage(err) }, 'migration channel request failed');
      req.resume();
      json(res, status, { error: errorMessage(err), ...(err instanceof HttpError ? err.extra : {}) });
    }
  }

  /** Reads the migration and its Secret and checks the caller against them. */
  private async authorize(namespace: string, name: string, req: http.IncomingMessage): Promise<VEMigration> {
    const mig = await this.o.migrations.get(name, namespace);
    if (!mig) throw new HttpError(404, `migration ${namespace}/${name} does not exist`);
    if (mig.status?.targetNode !== this.o.nodeName) throw new HttpError(403, `migration ${namespace}/${name} does not target node ${this.o.nodeName}`);
    const given = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1] ?? '';
    const want = await this.token(mig);
    if (!want || !sameToken(given, want)) throw new HttpError(401, `wrong or missing credential for migration ${namespace}/${name}`);
    if (isTerminalPhase(mig.status?.phase)) throw new HttpError(409, `migration ${namespace}/${name} is ${mig.status?.phase}`);
    return mig;
  }

  private async token(mig: VEMigration): Promise<string | undefined> {
    const secretName = mig.status?.credentialSecret;
    if (!secretName) return undefined;
    // A migration's credential never changes: read once, so the requests made during the downtime
    // cost one API read (the migration's phase) instead of two.
    const key = `${mig.metadata.uid ?? ''}/${secretName}`;
    const known = this.tokens.get(key);
    if (known) return known;
    const t = await readToken(this.o.secrets, secretName, mig.metadata.namespace);
    if (t) {
      this.tokens.set(key, t);
      // Ended migrations are rarely asked again: keep only the newest few.
      for (const k of this.tokens.keys()) if (this.tokens.size > 64) this.tokens.delete(k);
    }
    return t;
  }

  private async receiveImages(mig: VEMigration, req: http.IncomingMessage): Promise<{ files: number; bytes: number; sha256: string }> {
    const uid = mig.metadata.uid ?? '';
    this.verified.delete(uid);
    const dir = this.o.handler.imageDir(mig);
    // A resend replaces what an earlier, broken upload left.
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const hash = createHash('sha256');
    const tap = (async function* (src: AsyncIterable<Buffer>) {
      for await (const c of src) {
        hash.update(c);
        yield c;
      }
    })(req);
    let files = 0;
    let bytes = 0;
    // A dump is mostly small files: those are written side by side while the next ones arrive (one
    // at a time, each open/write/close waited for, they took longer than the bytes); large ones stream.
    const writes: Promise<void>[] = [];
    try {
      for await (const f of readFileFrames(new ByteReader(tap))) {
        checkImageName(f.name);
        const path = join(dir, f.name);
        if (f.size <= SMALL_IMAGE_FILE) {
          const parts: Buffer[] = [];
          for await (const c of f.data) parts.push(Buffer.from(c));
          writes.push(writeFile(path, Buffer.concat(parts), { mode: 0o600 }));
        } else {
          await writeBatched(path, f.data);
        }
        files++;
        bytes += f.size;
      }
    } finally {
      const failed = (await Promise.allSettled(writes)).find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) throw failed.reason;
    }
    const got = hash.digest('hex');
    const want = String(req.headers['x-kvz-sha256'] ?? req.trailers['x-kvz-sha256'] ?? '');
    if (want !== got) {
      await rm(dir, { recursive: true, force: true });
      throw new HttpError(400, `checkpoint images arrived damaged (sha256 ${got}, sender said ${want || 'nothing'}); resend them`);
    }
    this.verified.set(uid, got);
    return { files, bytes, sha256: got };
  }
}

/**
 * Writes a large image file from socket-sized chunks, several MiB per write: one write per 64 KiB
 * chunk left the receiver waiting on file-system round trips (256 MiB took 1.4 s over a veth with
 * 0.6 s of CPU).
 */
async function writeBatched(path: string, data: AsyncIterable<Buffer>): Promise<void> {
  const fh = await open(path, 'w', 0o600);
  const writeAll = async (buf: Buffer) => {
    for (let off = 0; off < buf.length; ) off += (await fh.write(buf, off, buf.length - off)).bytesWritten;
  };
  try {
    let parts: Buffer[] = [];
    let held = 0;
    let pending = Promise.resolve();
    for await (const c of data) {
      parts.push(c);
      held += c.length;
      if (held < WRITE_BATCH) continue;
      // One write in flight while the next batch arrives.
      await pending;
      pending = writeAll(Buffer.concat(parts, held));
      parts = [];
      held = 0;
    }
    await pending;
    if (held) await writeAll(Buffer.concat(parts, held));
  } finally {
    await fh.close();
  }
}
const WRITE_BATCH = 4 << 20;

function json(res: http.ServerResponse, status: number, body: unknown): void {
  if (res.headersSent) return void res.end();
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** Constant-time token comparison (lengths differ = no match, after a dummy compare). */
export function sameToken(given: string, want: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(want);
  if (a.length !== b.length) {
    timingSafeEqual(b, b);
    return false;
  }
  return timingSafeEqual(a, b);
}

/** The data channel's token from a migration's Secret (data is base64, stringData may not be resolved by a fake). */
export async function readToken(secrets: ResourceClient<KubeObject>, name: string, namespace: string): Promise<string | undefined> {
  const s = (await secrets.get(name, namespace)) as (KubeObject & { data?: Record<string, string>; stringData?: Record<string, string> }) | undefined;
  const b64 = s?.data?.[MIGRATION_TOKEN_KEY];
  if (b64) return Buffer.from(b64, 'base64').toString('utf8');
  return s?.stringData?.[MIGRATION_TOKEN_KEY];
}

export function parseHostPort(s: string): { host: string; port: number } {
  const m = /^\[?([^\]]*?)\]?:(\d+)$/.exec(s);
  if (!m) throw new KvzError('Invalid', `migration listen address ${JSON.stringify(s)}: expected HOST:PORT, e.g. 0.0.0.0:7443 or 127.0.0.1:0`);
  return { host: m[1] || '0.0.0.0', port: Number(m[2]) };
}

/** One image file to send: name and an opener. */
export interface ImageFile {
  name: string;
  size: number;
  open(): AsyncIterable<Buffer>;
}

/** The source's side of the channel for one migration. */
export class MigrationChannelClient {
  private readonly base: string;

  constructor(
    private readonly address: string,
    private readonly port: number,
    private readonly namespace: string,
    private readonly name: string,
    private readonly token: string,
    private readonly signal?: AbortSignal,
  ) {
    const host = address.includes(':') ? `[${address}]` : address;
    this.base = `http://${host}:${port}/v1/migrations/${encodeURIComponent(namespace)}/${encodeURIComponent(name)}`;
  }

  async digests(): Promise<{ blockSize: number; digests: string[] }> {
    return this.call('GET', 'disk/digests');
  }

  /**
   * Streams blocks as frames; resolves to the bytes sent (frame payload). `final`: the image is at
   * rest and these are its last blocks (the target may mount it once they are written).
   */
  async putBlocks(blocks: AsyncIterable<{ index: number; data: Buffer }>, opts: { final?: boolean; unit?: number } = {}): Promise<number> {
    let bytes = 0;
    const query = new URLSearchParams();
    if (opts.final) query.set('final', '1');
    if (opts.unit !== undefined) query.set('unit', String(opts.unit));
    const q = query.toString();
    await this.call('PUT', q ? `disk/blocks?${q}` : 'disk/blocks', async function* () {
      for await (const b of blocks) {
        yield blockFrameHeader(b.index, b.data.length);
        yield b.data;
        bytes += b.data.length;
      }
    });
    return bytes;
  }

  /** Streams image files as frames with their sha256 as a trailer; resolves to the bytes sent. */
  async putCheckpoint(files: ImageFile[]): Promise<number> {
    let bytes = 0;
    await this.call('PUT', 'checkpoint', async function* (trailers) {
      const hash = createHash('sha256');
      for (const f of files) {
        const h = fileFrameHeader(f.name, f.size);
        hash.update(h);
        yield h;
        let left = f.size;
        for await (const c of f.open()) {
          if (c.length > left) throw new KvzError('Internal', `image file ${f.name} grew while it was being sent`);
          left -= c.length;
          hash.update(c);
          yield c;
        }
        if (left !== 0) throw new KvzError('Internal', `image file ${f.name} shrank while it was being sent`);
        bytes += f.size;
      }
      trailers({ 'x-kvz-sha256': hash.digest('hex') });
    });
    return bytes;
  }

  async restore(): Promise<{ ms: number }> {
    return this.call('POST', 'restore');
  }

  async abort(): Promise<void> {
    await this.call('POST', 'abort');
  }

  /**
   * Abort that still goes out when this client's signal has fired (rollbacks). Bounded: with the
   * network to the target cut, a rollback must not wait on it (the target drops its copy by
   * itself once it sees the migration Failed).
   */
  async abortUnsigned(timeoutMs = 5_000): Promise<void> {
    await new MigrationChannelClient(this.address, this.port, this.namespace, this.name, this.token, AbortSignal.timeout(timeoutMs)).abort();
  }

  /** Whether the target runs the VE. Final: the target waits for a restore in progress and starts none after answering. */
  async state(): Promise<{ running: boolean }> {
    return this.call('GET', 'state');
  }

  private call<T>(method: string, path: string, body?: (trailers: (t: Record<string, string>) => void) => AsyncGenerator<Buffer>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const headers: Record<string, string> = { authorization: `Bearer ${this.token}` };
      if (body) {
        headers['content-type'] = 'application/octet-stream';
        headers.trailer = 'x-kvz-sha256';
      }
      const req = http.request(`${this.base}/${path}`, { method, headers, signal: this.signal }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: Record<string, unknown> = {};
          try {
            parsed = text ? (JSON.parse(text) as Record<string, unknown>) : {};
          } catch {
            parsed = { error: text };
          }
          const status = res.statusCode ?? 0;
          if (status >= 200 && status < 300) return resolve(parsed as T);
          const code = status === 409 ? 'Conflict' : status === 404 ? 'NotFound' : status === 400 ? 'Invalid' : 'Unavailable';
          reject(new KvzError(code, `migration target ${method} ${path}: ${status} ${String(parsed.error ?? '')}`, { details: { status, ...parsed } }));
        });
      });
      req.on('error', (err) => reject(new KvzError('Unavailable', `migration target ${method} ${path}: ${errorMessage(err)}; is the target agent's --migration-listen reachable from this node?`, { cause: err })));
      if (!body) return void req.end();
      const gen = body((t) => req.addTrailers(t));
      pipeline(Readable.from(gen), req).catch((err: unknown) => {
        req.destroy();
        reject(err instanceof KvzError ? err : new KvzError('Unavailable', `migration target ${method} ${path}: ${errorMessage(err)}`, { cause: err }));
      });
    });
  }
}
