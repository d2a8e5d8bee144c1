// Request routing: discovery, /openapi/v2, and the REST verbs on every served resource
// (`/api/v1/...` for core, `/apis/G/V/...` for groups; namespaced and cluster-scoped paths, the
// status subresource, lists and tables, watches). Every failure leaves as a Kubernetes Status.

import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from '../core/index.js';
import { apiGroup, apiGroupList, apiResourceList, apiVersions, versionInfo } from './discovery.js';
import { jsonListWriter, parseBody, parseObjectBody, readBody, readBodyBytes, sendError, sendJson, sendRaw } from './http-util.js';
import { isObj, meta } from './object-meta.js';
import { managerFromRequest } from './managed-fields.js';
import { OPENAPI_CONTENT_TYPE, openApiV2Protobuf, openApiV3Discovery, openApiV3GroupVersion } from './openapi.js';
import { apiVersionOf, type DeleteOptions, type FieldValidation, type PatchType, type Registry, type WriteOptions } from './registry.js';
import type { ResourceDef, ResourceTable } from './resources.js';
import { parseFieldSelector, parseLabelSelector } from './selectors.js';
import { errors, isApiError, successStatus } from './status-errors.js';
import { type Obj, storedJson } from './store.js';
import { buildTable, type IncludeObject } from './table.js';
import type { WatchHub } from './watch-hub.js';
import { serveWatch } from './watch-stream.js';

export interface HandlerDeps {
  registry: Registry;
  resources: ResourceTable;
  hub: WatchHub;
  log: Logger;
  heartbeatMs: number;
  openWatches: Set<() => void>;
}

interface Target {
  def: ResourceDef;
  version: string;
  /** undefined: cluster-scoped resource, or a namespaced resource across all namespaces. */
  namespace?: string;
  name?: string;
  subresource?: 'status';
}

const PATCH_TYPES: Record<string, PatchType> = {
  'application/merge-patch+json': 'merge',
  'application/json-patch+json': 'json',
  'application/apply-patch+yaml': 'apply',
};

export async function handleRequest(req: IncomingMessage, res: ServerResponse, deps: HandlerDeps): Promise<void> {
  try {
    await route(req, res, deps);
  } catch (err) {
    if (res.headersSent) {
      res.destroy();
      return;
    }
    if (isApiError(err)) sendError(res, err);
    else {
      deps.log.error({ err, method: req.method, url: req.url }, 'apiserver request failed');
      sendError(res, errors.internal((err as Error).message ?? String(err)));
    }
  }
}

async function route(req: IncomingMessage, res: ServerResponse, deps: HandlerDeps): Promise<void> {
  const url = new URL(req.url ?? '/', 'https://localhost');
  const segs = url.pathname.split('/').filter((s) => s !== '').map(decodeURIComponent);
  const method = req.method ?? 'GET';
  const { resources } = deps;
  const get = method === 'GET' || method === 'HEAD';

  if (segs.length === 0 && get) return sendJson(res, 200, { paths: ['/api', '/api/v1', '/apis', '/openapi/v2', '/openapi/v3', '/version'] });
  if (segs[0] === 'version' && segs.length === 1 && get) return sendJson(res, 200, versionInfo());
  if (['healthz', 'readyz', 'livez'].includes(segs[0] ?? '') && get) {
    res.writeHead(200, { 'Content-Type': 'text/plain' });
    return void res.end('ok');
  }
  if ((url.pathname === '/openapi/v2' || url.pathname === '/swagger-2.0.0.pb-v1') && get) {
    const doc = openApiV2Protobuf(resources);
    res.writeHead(200, { 'Content-Type': OPENAPI_CONTENT_TYPE, 'Content-Length': doc.length });
    return void res.end(doc);
  }
  if (segs[0] === 'openapi' && segs[1] === 'v3' && get) {
    if (segs.length === 2) return sendJson(res, 200, openApiV3Discovery(resources));
    const doc = segs[2] === 'apis' && segs.length === 5 ? openApiV3GroupVersion(resources, segs[3] ?? '', segs[4] ?? '') : undefined;
    if (!doc) throw errors.pathNotFound();
    return sendJson(res, 200, doc);
  }
  let group: string;
  let version: string;
  let rest: string[];
  if (segs[0] === 'api') {
    if (segs.length === 1 && get) return sendJson(res, 200, apiVersions());
    if (segs[1] !== 'v1') throw errors.pathNotFound();
    group = '';
    version = 'v1';
    rest = segs.slice(2);
  } else if (segs[0] === 'apis') {
    if (segs.length === 1 && get) return sendJson(res, 200, apiGroupList(resources));
    if (segs.length === 2) {
      const g = apiGroup(resources, segs[1] ?? '');
      if (!g || !get) throw errors.pathNotFound();
      return sendJson(res, 200, g);
    }
    // Deeper paths of an unknown group are 404 from the resource lookup below.
    group = segs[1] ?? '';
    version = segs[2] ?? '';
    rest = segs.slice(3);
  } else throw errors.pathNotFound();

  if (rest.length === 0) {
    const list = apiResourceList(resources, group, version);
    if (!list || !get) throw errors.pathNotFound();
    return sendJson(res, 200, list);
  }
  const target = resolve(resources, group, version, rest);
  await serveResource(req, res, url, method, target, deps);
}

function resolve(resources: ResourceTable, group: string, version: string, rest: string[]): Target {
  let namespace: string | undefined;
  let plural: string;
  let name: string | undefined;
  let sub: string | undefined;
  // `namespaces/NS/PLURAL/...` addresses a namespaced resource; `namespaces/NAME[/status]` is a Namespace.
  if (rest[0] === 'namespaces' && rest.length >= 3 && !(rest.length === 3 && (rest[2] === 'status' || rest[2] === 'finalize'))) {
    [, namespace, plural = '', name, sub] = rest;
    if (rest.length > 5) throw errors.pathNotFound();
  } else {
    [plural = '', name, sub] = rest;
    if (rest.length > 3) throw errors.pathNotFound();
  }
  const def = resources.lookup(group, version, plural);
  if (!def) throw errors.pathNotFound();
  if (!def.namespaced && namespace !== undefined) throw errors.pathNotFound();
  if (def.namespaced && namespace === undefined && name !== undefined) throw errors.pathNotFound();
  if (sub !== undefined && (sub !== 'status' || !def.statusSubresource)) throw errors.pathNotFound();
  const t: Target = { def, version };
  if (namespace !== undefined) t.namespace = namespace;
  if (name !== undefined) t.name = name;
  if (sub === 'status') t.subresource = 'status';
  return t;
}

function wantsTable(req: IncomingMessage): boolean {
  return /as=Table/.test(req.headers.accept ?? '');
}

function withVersion(t: Target, obj: Obj): Obj {
  return { ...obj, apiVersion: apiVersionOf(t.def, t.version), kind: t.def.kind };
}

/** JSON.stringify(withVersion(t, obj)), from the stored text when the object is as stored. */
function objectJson(t: Target, obj: Obj): string {
  if (obj.apiVersion === apiVersionOf(t.def, t.version) && obj.kind === t.def.kind) {
    const text = storedJson(obj);
    if (text !== undefined) return text;
  }
  return JSON.stringify(withVersion(t, obj));
}

function writeOptions(req: IncomingMessage, url: URL, t: Target): WriteOptions {
  const q = url.searchParams;
  const o: WriteOptions = { warnings: [] };
  if (t.subresource) o.subresource = t.subresource;
  if (q.getAll('dryRun').includes('All')) o.dryRun = true;
  const fv = q.get('fieldValidation');
  if (fv === 'Strict' || fv === 'Warn' || fv === 'Ignore') o.fieldValidation = fv as FieldValidation;
  const fm = q.get('fieldManager');
  if (fm) o.fieldManager = fm;
  o.manager = managerFromRequest(fm ?? undefined, req.headers['user-agent']);
  if (q.get('force') === 'true') o.force = true;
  return o;
}

function warningHeaders(o: WriteOptions): Record<string, string[]> {
  const w = o.warnings ?? [];
  return w.length > 0 ? { Warning: w.map((m) => `299 - ${JSON.stringify(m)}`) } : {};
}

function nsOf(t: Target): string {
  return t.def.namespaced ? (t.namespace ?? '') : '';
}

async function serveResource(req: IncomingMessage, res: ServerResponse, url: URL, method: string, t: Target, deps: HandlerDeps): Promise<void> {
  const { registry } = deps;
  const q = url.searchParams;
  const isWatch = q.get('watch') === 'true' || q.get('watch') === '1';
  const columns = t.def.printerColumns.get(t.version) ?? [];
  const includeObject = (q.get('includeObject') as IncludeObject | null) ?? 'Metadata';

  if ((method === 'GET' || method === 'HEAD') && isWatch) {
    if (t.subresource) throw errors.methodNotAllowed();
    let fieldSelector = q.get('fieldSelector') ?? '';
    if (t.name) fieldSelector = [fieldSelector, `metadata.name=${t.name}`].filter((s) => s !== '').join(',');
    const labels = parseLabelSelector(q.get('labelSelector') ?? undefined);
    const fields = parseFieldSelector(fieldSelector);
    const table = wantsTable(req);
    const timeout = q.get('timeoutSeconds');
    serveWatch(req, res, {
      spec: {
        def: t.def,
        ...(t.namespace !== undefined ? { namespace: t.namespace } : {}),
        match: (o) => labels(o) && fields(o),
        resourceVersion: q.get('resourceVersion') ?? '',
        sendInitialEvents: q.get('sendInitialEvents') === 'true',
        allowBookmarks: q.get('allowWatchBookmarks') === 'true',
      },
      hub: deps.hub,
      heartbeatMs: deps.heartbeatMs,
      ...(timeout !== null ? { timeoutSeconds: Number(timeout) } : {}),
      open: deps.openWatches,
      ...(table ? {} : { shareKey: apiVersionOf(t.def, t.version), renderJson: (_type, obj) => objectJson(t, obj as Obj) }),
      render: (_type, obj, first) => {
        const o = withVersion(t, obj as Obj);
        if (!table) return o;
        return buildTable([o], { columns, resourceVersion: meta(o).resourceVersion ?? '', includeObject, noHeaders: !first });
      },
    });
    return;
  }

  switch (method) {
    case 'GET':
    case 'HEAD': {
      if (t.name !== undefined) {
        const stored = registry.get(t.def, nsOf(t), t.name);
        if (!wantsTable(req)) return sendRaw(res, 200, objectJson(t, stored));
        const o = withVersion(t, stored);
        return sendJson(res, 200, buildTable([o], { columns, resourceVersion: meta(o).resourceVersion ?? '', includeObject }));
      }
      const limit = Number(q.get('limit') ?? '0');
      const listOpts = {
        labelSelector: q.get('labelSelector') ?? '',
        fieldSelector: q.get('fieldSelector') ?? '',
        limit: Number.isFinite(limit) ? limit : 0,
        continueToken: q.get('continue') ?? '',
      };
      const head = (rev: number, continueToken: string | undefined) => ({
        apiVersion: apiVersionOf(t.def, t.version),
        kind: t.def.listKind,
        metadata: { resourceVersion: String(rev), continue: continueToken ?? '' },
      });
      // JSON lists of a single-version kind go out as stored (its apiVersion is the stored one):
      // the items are never parsed and serialised again.
      if (!wantsTable(req) && t.def.versions.length === 1) {
        return registry.listRaw(t.def, t.namespace, listOpts, jsonListWriter(res, (rev, token) => JSON.stringify(head(rev, token))));
      }
      const listed = registry.list(t.def, t.namespace, listOpts);
      const items = listed.items.map((o) => withVersion(t, o));
      if (wantsTable(req)) {
        const opts = { columns, resourceVersion: String(listed.rev), includeObject, ...(listed.continueToken ? { continueToken: listed.continueToken } : {}) };
        return sendJson(res, 200, buildTable(items, opts));
      }
      return sendJson(res, 200, { ...head(listed.rev, listed.continueToken), items });
    }
    case 'POST': {
      if (t.name !== undefined || t.subresource) throw errors.methodNotAllowed();
      if (t.def.namespaced && t.namespace === undefined) throw errors.methodNotAllowed();
      const body = parseObjectBody(await readBodyBytes(req), req.headers['content-type'] ?? '', { apiVersion: apiVersionOf(t.def, t.version), kind: t.def.kind });
      const o = writeOptions(req, url, t);
      const created = registry.create(t.def, t.version, nsOf(t), body, o);
      return sendRaw(res, 201, objectJson(t, created), warningHeaders(o));
    }
    case 'PUT': {
      if (t.name === undefined) throw errors.methodNotAllowed();
      const body = parseObjectBody(await readBodyBytes(req), req.headers['content-type'] ?? '', { apiVersion: apiVersionOf(t.def, t.version), kind: t.def.kind });
      const o = writeOptions(req, url, t);
      const updated = registry.update(t.def, t.version, nsOf(t), t.name, body, o);
      return sendRaw(res, 200, objectJson(t, updated), warningHeaders(o));
    }
    case 'PATCH': {
      if (t.name === undefined) throw errors.methodNotAllowed();
      const ct = (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
      const type = PATCH_TYPES[ct];
      if (!type) throw errors.unsupportedMediaType(Object.keys(PATCH_TYPES));
      const body = parseBody(await readBody(req), type === 'apply' ? 'yaml' : 'json');
      const o = writeOptions(req, url, t);
      const { object, created } = registry.patch(t.def, t.version, nsOf(t), t.name, type, body, o);
      return sendRaw(res, created ? 201 : 200, objectJson(t, object), warningHeaders(o));
    }
    case 'DELETE': {
      if (t.subresource) throw errors.methodNotAllowed();
      const body = parseBody(await readBody(req), 'json');
      const opts: DeleteOptions = {};
      if (isObj(body)) {
        if (typeof body.propagationPolicy === 'string') opts.propagationPolicy = body.propagationPolicy;
        if (isObj(body.preconditions)) opts.preconditions = body.preconditions as DeleteOptions['preconditions'] & object;
        if (Array.isArray(body.dryRun) && body.dryRun.includes('All')) opts.dryRun = true;
      }
      const pp = q.get('propagationPolicy');
      if (pp) opts.propagationPolicy = pp;
      if (q.getAll('dryRun').includes('All')) opts.dryRun = true;
      if (t.name === undefined) {
        const gone = registry.deleteCollection(t.def, t.namespace, { ...opts, labelSelector: q.get('labelSelector') ?? '', fieldSelector: q.get('fieldSelector') ?? '' });
        return sendJson(res, 200, { apiVersion: apiVersionOf(t.def, t.version), kind: t.def.listKind, metadata: {}, items: gone.map((g) => withVersion(t, g)) });
      }
      const { object, gone } = registry.delete(t.def, nsOf(t), t.name, opts);
      // Deleted now → a Success Status; held by finalizers → the object with deletionTimestamp.
      if (gone) return sendJson(res, 200, successStatus(t.def, t.name, meta(object).uid));
      return sendRaw(res, 200, objectJson(t, object));
    }
    default:
      throw errors.methodNotAllowed();
  }
}

