// Reading request bodies and writing JSON/Status answers.

import type { IncomingMessage, ServerResponse } from 'node:http';
import { parse as parseYaml } from 'yaml';
import type { RawListSink } from './registry.js';
import { acceptedMediaTypes, decodeProtobufBody, PROTOBUF_MEDIA_TYPE } from './protobuf-body.js';
import { ApiError, errors } from './status-errors.js';

const MAX_BODY = 3 * 1024 * 1024; // the real server's default request size limit

/** The request body as text; over the size limit → 413 (the rest of the body is read and dropped). */
export function readBody(req: IncomingMessage): Promise<string> {
  return collectBody(req, (b) => b.toString('utf8'));
}

/** The request body as bytes (protobuf bodies are binary), with readBody's limit. */
export function readBodyBytes(req: IncomingMessage): Promise<Buffer> {
  return collectBody(req, (b) => b);
}

function collectBody<T>(req: IncomingMessage, finish: (body: Buffer) => T): Promise<T> {
  // Plain events, not `for await`: an async iterator per request costs more than the read itself.
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (b: Buffer) => {
      size += b.length;
      if (size > MAX_BODY) {
        if (chunks.length > 0) chunks.length = 0;
        reject(new ApiError(413, 'RequestEntityTooLarge', 'Request entity too large: limit is 3145728'));
        return;
      }
      chunks.push(b);
    });
    req.on('end', () => resolve(finish(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks))));
    req.on('error', reject);
    // A client gone before the end of its body: nothing will answer (settled promises ignore this).
    req.on('close', () => reject(new Error('the request was aborted before its body was complete')));
  });
}

/**
 * A create/update body by its media type: Kubernetes protobuf for the kinds protobuf-body.ts
 * decodes (kubectl ≥1.32 sends them so), CBOR never (415, on which client-go retries with JSON),
 * anything else JSON or YAML as parseBody reads it.
 */
export function parseObjectBody(body: Buffer, contentType: string, target: { apiVersion: string; kind: string }): unknown {
  const media = (contentType.split(';')[0] ?? '').trim().toLowerCase();
  if (media === PROTOBUF_MEDIA_TYPE) return decodeProtobufBody(body, target);
  if (media.startsWith('application/vnd.kubernetes.protobuf') || media === 'application/cbor' || media.endsWith('+cbor')) {
    throw errors.unsupportedMediaType(acceptedMediaTypes(target.apiVersion, target.kind));
  }
  return parseBody(body.toString('utf8'), contentType);
}

/** JSON, or YAML when the content type says so (YAML is a superset of JSON). */
export function parseBody(text: string, contentType: string): unknown {
  if (text.trim() === '') return undefined;
  try {
    if (/yaml/.test(contentType)) return parseYaml(text) as unknown;
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw errors.badRequest(`the request body could not be decoded: ${(err as Error).message}`);
  }
}

export function sendJson(res: ServerResponse, code: number, body: unknown, headers: Record<string, string | string[]> = {}): void {
  sendRaw(res, code, JSON.stringify(body), headers);
}

/** Sends JSON text that is already serialised. */
export function sendRaw(res: ServerResponse, code: number, text: string, headers: Record<string, string | string[]> = {}): void {
  res.writeHead(code, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text), 'Cache-Control': 'no-cache, private', ...headers });
  res.end(text);
}

const CHUNK = 64 * 1024;
const COMMA = Buffer.from(',');
const LIST_END = Buffer.from(']}');

/**
 * Writes a JSON list whose items arrive as JSON texts (RawListSink): `head(rev, continueToken)` is
 * the list's JSON without items; the answer is byte for byte what JSON.stringify gives for head
 * plus `items` as the last key. Sent chunked, in pieces of about CHUNK bytes as items arrive, as
 * Buffers: a large list is never one contiguous copy (a fresh multi-megabyte allocation per
 * request, and first touches of memory are what costs most on these machines), nor a pile of
 * JS strings queued on the socket for the garbage collector to copy around.
 */
export function jsonListWriter(res: ServerResponse, head: (rev: number, continueToken: string | undefined) => string): RawListSink {
  let parts: Buffer[] = [];
  let size = 0;
  let first = true;
  const push = (b: Buffer): void => {
    parts.push(b);
    size += b.length;
  };
  return {
    start(rev, continueToken) {
      res.writeHead(200, { 'Content-Type': 'application/json', 'Cache-Control': 'no-cache, private' });
      push(Buffer.from(`${head(rev, continueToken).slice(0, -1)},"items":[`));
    },
    item(json) {
      if (!first) push(COMMA);
      first = false;
      push(json);
      if (size >= CHUNK) {
        res.write(Buffer.concat(parts, size));
        parts = [];
        size = 0;
      }
    },
    end() {
      push(LIST_END);
      res.end(Buffer.concat(parts, size));
    },
  };
}

export function sendError(res: ServerResponse, err: ApiError): void {
  sendJson(res, err.code, err.toStatus());
}
