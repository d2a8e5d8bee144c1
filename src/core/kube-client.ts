// ResourceClient over @kubernetes/client-node 1.4 (CustomObjectsApi for requests, ListWatch for
// informers). Works the same against the embedded API server and a real cluster.

import * as k8s from '@kubernetes/client-node';
import { existsSync } from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { KubeObject } from '../api/types.js';
import { KvzError, type ErrorCode } from './errors.js';
import type { Logger } from './logger.js';
import type { ApplyPatchOptions, InformerHandle, JsonPatchOp, ListOptions, ResourceClient, ResourceRef, WatchEventType } from './resource-client.js';

export const DEFAULT_STATE_DIR = '/var/lib/kubevz';

/**
 * Finds the kubeconfig the usual way: an explicit path, then $KUBECONFIG, then the embedded
 * server's `/var/lib/kubevz/kubeconfig`, then `~/.kube/config`. Returns undefined if none exists.
 */
export function resolveKubeconfigPath(explicit?: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (explicit) return explicit;
  const fromEnv = env.KUBECONFIG?.split(':').find((p) => p && existsSync(p));
  if (fromEnv) return fromEnv;
  const candidates = [join(DEFAULT_STATE_DIR, 'kubeconfig'), join(homedir(), '.kube', 'config')];
  return candidates.find((p) => existsSync(p));
}

export function loadKubeConfig(path: string): k8s.KubeConfig {
  const kc = new k8s.KubeConfig();
  try {
    kc.loadFromFile(path);
  } catch (err) {
    throw new KvzError('Invalid', `cannot read kubeconfig ${path}: ${(err as Error).message}`, { cause: err });
  }
  return withKeepAlive(kc);
}

type AgentFactory = (cluster: k8s.Cluster | null, options: https.AgentOptions) => http.Agent;

/**
 * client-node makes a new https.Agent for every request, so every request pays a TCP and TLS
 * handshake (measured: most of the controller's and agent's CPU with many VEs). Requests with
 * the same TLS settings share one keep-alive agent instead; proxies keep client-node's own.
 */
export function withKeepAlive(kc: k8s.KubeConfig): k8s.KubeConfig {
  const target = kc as unknown as { createAgent: AgentFactory };
  const original = target.createAgent.bind(kc);
  const agents = new Map<string, http.Agent>();
  target.createAgent = (cluster, options) => {
    const plain = cluster?.server.startsWith('http:') ?? false;
    // Proxies, and plain HTTP without skipTLSVerify (which client-node refuses), stay client-node's.
    if (cluster?.proxyUrl || (plain && !cluster?.skipTLSVerify)) return original(cluster, options);
    const key = JSON.stringify([cluster?.server, options.ca, options.cert, options.key, options.pfx, options.rejectUnauthorized, options.servername].map((v) => (Buffer.isBuffer(v) ? v.toString('base64') : v)));
    let agent = agents.get(key);
    if (!agent) {
      agent = plain ? new http.Agent({ keepAlive: true }) : new https.Agent({ ...options, keepAlive: true });
      agents.set(key, agent);
    }
    return agent;
  };
  return kc;
}

export function serverOf(kc: k8s.KubeConfig): string {
  return kc.getCurrentCluster()?.server ?? '(no cluster in kubeconfig)';
}

const PATCH_MERGE = k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch);
const PATCH_JSON = k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.JsonPatch);
// The body is JSON (valid YAML); the Content-Type makes the PATCH a server-side apply.
const PATCH_APPLY = k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.ServerSideApply);

/** Turns client-node's ApiException (or a network error) into a KvzError with a stable code. */
export function toKvzError(err: unknown, what: string, server?: string): KvzError {
  if (err instanceof KvzError) return err;
  const e = err as { code?: unknown; body?: unknown; message?: string; cause?: { code?: string } };
  if (typeof e?.code === 'number') {
    let message = e.message ?? 'request failed';
    let reason: string | undefined;
    try {
      const status = typeof e.body === 'string' ? JSON.parse(e.body) : e.body;
      if (status?.message) message = status.message;
      reason = status?.reason;
    } catch {
      /* body was not a Status */
    }
    const byStatus: Record<number, ErrorCode> = { 404: 'NotFound', 409: reason === 'AlreadyExists' ? 'AlreadyExists' : 'Conflict', 422: 'Invalid', 400: 'Invalid', 401: 'Unavailable', 403: 'Unavailable' };
    return new KvzError(byStatus[e.code] ?? 'Internal', `${what}: ${message}`, { cause: err, details: { status: e.code, reason } });
  }
  const net = e?.cause?.code ?? (e as { code?: string })?.code;
  if (typeof net === 'string' && /ECONNREFUSED|ENOTFOUND|EHOSTUNREACH|ETIMEDOUT|ECONNRESET/.test(net)) {
    return new KvzError('Unavailable', `${what}: no API server reachable at ${server ?? 'the configured address'} (${net}); start one with \`kvz up\` or pass --kubeconfig`, { cause: err });
  }
  return new KvzError('Internal', `${what}: ${e?.message ?? String(err)}`, { cause: err });
}

/**
 * A JSON patch whose `test` op failed comes back as 422 (the patch "cannot be applied"); callers
 * that guard a write with a test of resourceVersion treat it as what it means: a conflict.
 */
function testFailedAsConflict(err: unknown, ops: JsonPatchOp[]): unknown {
  const e = err as KvzError;
  if (e instanceof KvzError && e.code === 'Invalid' && ops.some((o) => o.op === 'test') && /test/i.test(e.message)) {
    return new KvzError('Conflict', `${e.message} (the object changed since it was read)`, { cause: err, details: { status: 409, reason: 'Conflict' } });
  }
  return err;
}

interface KubeList<T> {
  items: T[];
  metadata?: { resourceVersion?: string };
}

export class KubeResourceClient<T extends KubeObject> implements ResourceClient<T> {
  private readonly api: k8s.CustomObjectsApi;
  /** Core-group kinds (group '', e.g. Secrets) live under /api/v1, which CustomObjectsApi cannot address. */
  private readonly core: k8s.KubernetesObjectApi | undefined;
  private readonly server: string;

  constructor(
    private readonly kc: k8s.KubeConfig,
    readonly ref: ResourceRef,
    private readonly log: Logger,
  ) {
    this.api = kc.makeApiClient(k8s.CustomObjectsApi);
    this.core = ref.group === '' ? k8s.KubernetesObjectApi.makeApiClient(kc) : undefined;
    this.server = serverOf(kc);
  }

  private apiVersion(): string {
    return this.ref.group ? `${this.ref.group}/${this.ref.version}` : this.ref.version;
  }

  private header(name: string, namespace?: string): { apiVersion: string; kind: string; metadata: { name: string; namespace?: string } } {
    return { apiVersion: this.apiVersion(), kind: this.ref.kind, metadata: { name, ...(this.ref.namespaced ? { namespace: namespace ?? 'default' } : {}) } };
  }

  private base() {
    return { group: this.ref.group, version: this.ref.version, plural: this.ref.plural };
  }

  private describe(name: string, namespace?: string): string {
    return `${this.ref.plural}.${this.ref.group} ${namespace ? `${namespace}/` : ''}${name}`;
  }

  private async call<R>(what: string, fn: () => Promise<R>): Promise<R> {
    try {
      return await fn();
    } catch (err) {
      throw toKvzError(err, what, this.server);
    }
  }

  async get(name: string, namespace?: string): Promise<T | undefined> {
    try {
      return await this.call(`get ${this.describe(name, namespace)}`, () =>
        this.core
          ? (this.core.read(this.header(name, namespace)) as Promise<T>)
          : this.ref.namespaced
          ? this.api.getNamespacedCustomObject({ ...this.base(), namespace: namespace ?? 'default', name })
          : this.api.getClusterCustomObject({ ...this.base(), name }),
      );
    } catch (err) {
      if ((err as KvzError).code === 'NotFound') return undefined;
      throw err;
    }
  }

  private async listRaw(opts: ListOptions = {}): Promise<KubeList<T>> {
    return this.call(`list ${this.ref.plural}.${this.ref.group}`, () =>
      this.core
        ? (this.core.list(this.apiVersion(), this.ref.kind, this.ref.namespaced ? opts.namespace : undefined, undefined, undefined, undefined, undefined, opts.labelSelector) as unknown as Promise<KubeList<T>>)
        : this.ref.namespaced && opts.namespace
        ? this.api.listNamespacedCustomObject({ ...this.base(), namespace: opts.namespace, labelSelector: opts.labelSelector })
        : this.api.listClusterCustomObject({ ...this.base(), labelSelector: opts.labelSelector }),
    );
  }

  async list(opts: ListOptions = {}): Promise<T[]> {
    return (await this.listRaw(opts)).items;
  }

  async create(obj: T): Promise<T> {
    const namespace = obj.metadata?.namespace ?? 'default';
    return this.call(`create ${this.describe(obj.metadata?.name ?? '', namespace)}`, () =>
      this.core
        ? (this.core.create({ apiVersion: this.apiVersion(), kind: this.ref.kind, ...obj, metadata: { ...obj.metadata, ...(this.ref.namespaced ? { namespace } : {}) } } as k8s.KubernetesObject) as Promise<T>)
        : this.ref.namespaced
        ? this.api.createNamespacedCustomObject({ ...this.base(), namespace, body: obj })
        : this.api.createClusterCustomObject({ ...this.base(), body: obj }),
    );
  }

  private patchWith(
    name: string,
    namespace: string | undefined,
    body: unknown,
    options: ReturnType<typeof k8s.setHeaderOptions>,
    status: boolean,
    query: { fieldManager?: string; force?: boolean; dryRun?: string } = {},
  ): Promise<T> {
    const what = `${query.fieldManager ? 'apply' : 'patch'} ${this.describe(name, namespace)}${status ? ' status' : ''}`;
    return this.call(what, () => {
      if (this.core) {
        // KubernetesObjectApi takes the address from the body, so only object-shaped patches work here.
        if (status || options !== PATCH_MERGE || Array.isArray(body)) {
          throw new KvzError('Invalid', `${what}: only merge patches of the main resource are supported for core-group ${this.ref.plural}`);
        }
        const h = this.header(name, namespace);
        const b = body as KubeObject;
        return this.core.patch({ ...b, ...h, metadata: { ...(b.metadata ?? {}), ...h.metadata } } as k8s.KubernetesObject, undefined, undefined, undefined, undefined, k8s.PatchStrategy.MergePatch) as Promise<T>;
      }
      if (this.ref.namespaced) {
        const req = { ...this.base(), namespace: namespace ?? 'default', name, body, ...query };
        return status ? this.api.patchNamespacedCustomObjectStatus(req, options) : this.api.patchNamespacedCustomObject(req, options);
      }
      const req = { ...this.base(), name, body, ...query };
      return status ? this.api.patchClusterCustomObjectStatus(req, options) : this.api.patchClusterCustomObject(req, options);
    });
  }

  mergePatch(name: string, namespace: string | undefined, patch: object): Promise<T> {
    return this.patchWith(name, namespace, patch, PATCH_MERGE, false);
  }

  jsonPatch(name: string, namespace: string | undefined, ops: JsonPatchOp[]): Promise<T> {
    return this.patchWith(name, namespace, ops, PATCH_JSON, false);
  }

  applyPatch(obj: T, opts: ApplyPatchOptions): Promise<T> {
    const query = { fieldManager: opts.fieldManager, ...(opts.force ? { force: true } : {}), ...(opts.dryRun ? { dryRun: 'All' } : {}) };
    return this.patchWith(obj.metadata?.name ?? '', obj.metadata?.namespace, obj, PATCH_APPLY, false, query);
  }

  patchStatus(name: string, namespace: string | undefined, status: object): Promise<T> {
    return this.patchWith(name, namespace, { status }, PATCH_MERGE, true);
  }

  async jsonPatchStatus(name: string, namespace: string | undefined, ops: JsonPatchOp[]): Promise<T> {
    try {
      return await this.patchWith(name, namespace, ops, PATCH_JSON, true);
    } catch (err) {
      throw testFailedAsConflict(err, ops);
    }
  }

  async delete(name: string, namespace?: string): Promise<boolean> {
    try {
      await this.call(`delete ${this.describe(name, namespace)}`, () =>
        this.core
          ? this.core.delete(this.header(name, namespace))
          : this.ref.namespaced
          ? this.api.deleteNamespacedCustomObject({ ...this.base(), namespace: namespace ?? 'default', name })
          : this.api.deleteClusterCustomObject({ ...this.base(), name }),
      );
      return true;
    } catch (err) {
      if ((err as KvzError).code === 'NotFound') return false;
      throw err;
    }
  }

  async inform(opts: ListOptions, onEvent: (type: WatchEventType, obj: T) => void): Promise<InformerHandle<T>> {
    const prefix = this.ref.group ? `/apis/${this.ref.group}/${this.ref.version}` : `/api/${this.ref.version}`;
    const path = this.ref.namespaced && opts.namespace ? `${prefix}/namespaces/${opts.namespace}/${this.ref.plural}` : `${prefix}/${this.ref.plural}`;
    // listFn must apply the same label selector as the watch (client-node only adds it to the watch).
    const listFn = async () => (await this.listRaw(opts)) as unknown as k8s.KubernetesListObject<k8s.KubernetesObject>;
    const informer = new k8s.ListWatch<k8s.KubernetesObject>(path, new k8s.Watch(this.kc), listFn, false, opts.labelSelector);
    informer.on('add', (o) => onEvent('ADDED', o as T));
    informer.on('update', (o) => onEvent('MODIFIED', o as T));
    informer.on('delete', (o) => onEvent('DELETED', o as T));
    let stopped = false;
    let backoffMs = 500;
    let lastErrorAt = 0;
    let timer: NodeJS.Timeout | undefined;
    // client-node informers stop on network errors and list failures: restart them with backoff.
    // The back-off starts over only after a quiet minute: client-node says 'connect' at the start
    // of every attempt, before its list can fail, so that event cannot tell a recovery.
    informer.on('error', (err) => {
      if (stopped) return;
      if (Date.now() - lastErrorAt > 60_000) backoffMs = 500;
      lastErrorAt = Date.now();
      this.log.warn({ resource: this.ref.plural, err: toKvzError(err, 'watch', this.server).message, retryInMs: backoffMs }, 'informer stopped; restarting');
      timer = setTimeout(() => {
        informer.start().catch(() => {
          /* the error callback fires again */
        });
      }, backoffMs);
      backoffMs = Math.min(backoffMs * 2, 30_000);
    });
    await informer.start();
    return {
      list: () => informer.list() as T[],
      get: (name, namespace) => informer.get(name, namespace) as T | undefined,
      stop: async () => {
        stopped = true;
        if (timer) clearTimeout(timer);
        await informer.stop();
      },
    };
  }
}

export function makeResourceClient<T extends KubeObject>(kc: k8s.KubeConfig, ref: ResourceRef, log: Logger): ResourceClient<T> {
  return new KubeResourceClient<T>(kc, ref, log);
}
