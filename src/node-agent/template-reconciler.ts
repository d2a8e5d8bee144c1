// Template caches on this node. `TemplateBuilds` turns a VETemplate into a runtime recipe,
// ensures the node's cache (the first VE that needs it, or `kvz template build`), and reports
// this node's entry in status.nodes[] — stage and percent while building (throttled), digest,
// init, sizes when ready, the reason when it failed. `TemplateReconciler` acts on the
// VETemplate itself: a build request (annotation), a changed recipe of a cached template, and
// removal of the node's cache when the VETemplate is gone.

import {
  BUILTIN_BUSYBOX_TEMPLATE,
  TEMPLATE_BUILD_ANNOTATION,
  type TemplateNodeStatus,
  type VETemplate,
  type VETemplateSpec,
} from '../api/types.js';
import { errorCode, errorMessage, KvzError, TerminalError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { ControllerLoop } from '../core/controller-loop.js';
import type { Reconciler, ReconcileResult } from '../core/reconcile.js';
import type { InformerHandle, ResourceClient } from '../core/resource-client.js';
import type { TemplateInfo, TemplateProgress, TemplateRecipe, VERuntime } from '../runtime/index.js';

/** The runtime recipe of a VETemplate spec; a spec that names a source without its settings is terminal. */
export function recipeFromSpec(name: string, spec: VETemplateSpec): TemplateRecipe {
  const common: Omit<TemplateRecipe, 'source'> = {};
  if (spec.preInstall) common.preInstall = spec.preInstall;
  if (spec.postInstall) common.postInstall = spec.postInstall;
  if (spec.init) common.init = { ...spec.init };
  switch (spec.source) {
    case 'busybox':
      return { source: { kind: 'busybox' }, ...common };
    case 'debootstrap': {
      const d = spec.debootstrap;
      if (!d?.suite) throw new TerminalError(`vetemplate ${name}: spec.source is debootstrap but spec.debootstrap.suite is not set (e.g. bookworm)`);
      return { source: { kind: 'debootstrap', ...d }, ...common };
    }
    case 'tarball': {
      const t = spec.tarball;
      if (!t?.url) throw new TerminalError(`vetemplate ${name}: spec.source is tarball but spec.tarball.url is not set (an absolute path or file:// URL)`);
      return { source: { kind: 'tarball', url: t.url, ...(t.sha256 ? { sha256: t.sha256 } : {}) }, ...common };
    }
    default:
      throw new TerminalError(`vetemplate ${name}: spec.source ${JSON.stringify(spec.source)} is not one of debootstrap, busybox, tarball`);
  }
}

/** This node's status entry for a built template. */
export function readyEntry(node: string, info: TemplateInfo, generation: number | undefined, buildRequest?: string): TemplateNodeStatus {
  const e: TemplateNodeStatus = {
    node,
    stage: 'Ready',
    percent: 100,
    digest: info.digest,
    init: info.init.flavor,
    sizeBytes: info.sizeBytes,
    unpackedBytes: info.unpackedBytes,
    buildMs: info.buildMs,
  };
  if (info.builtAt) e.builtAt = info.builtAt;
  if (generation !== undefined) e.observedGeneration = generation;
  if (buildRequest) e.buildRequest = buildRequest;
  return e;
}

/** status.nodes with this node's entry replaced (others kept, sorted by node); undefined if unchanged. */
export function mergeNodeEntry(current: TemplateNodeStatus[] | undefined, entry: TemplateNodeStatus): TemplateNodeStatus[] | undefined {
  const list = current ?? [];
  const mine = list.find((e) => e.node === entry.node);
  if (mine && JSON.stringify(mine) === JSON.stringify(entry)) return undefined;
  return [...list.filter((e) => e.node !== entry.node), entry].sort((a, b) => a.node.localeCompare(b.node));
}

export interface TemplateBuildsOptions {
  client: ResourceClient<VETemplate>;
  runtime: VERuntime;
  nodeName: string;
  log: Logger;
  /** The informer's view (cheap); falls back to a GET. */
  lookup?: (name: string) => VETemplate | undefined;
  /** Least time between two progress writes of one template. */
  progressIntervalMs?: number;
  /** A failed build of the same generation is not retried for this long (unless asked again). */
  failedRetryMs?: number;
  now?: () => number;
}

interface Failure {
  generation: number | undefined;
  request: string | undefined;
  at: number;
  error: unknown;
}

export class TemplateBuilds {
  private readonly failures = new Map<string, Failure>();
  private readonly writes = new Map<string, Promise<void>>();

  constructor(private readonly o: TemplateBuildsOptions) {}

  private now(): number {
    return this.o.now?.() ?? Date.now();
  }

  private async get(name: string): Promise<VETemplate | undefined> {
    return this.o.lookup?.(name) ?? (await this.o.client.get(name));
  }

  /**
   * The template's cache on this node, built if needed from its VETemplate. No VETemplate:
   * the built-in busybox, or NotFound saying what to create.
   */
  async ensure(name: string, signal: AbortSignal, buildRequest?: string): Promise<TemplateInfo> {
    const vet = await this.get(name);
    if (!vet) {
      // The built-in busybox, or a cache whose VETemplate was deleted while VEs still use it.
      try {
        return await this.o.runtime.ensureTemplate(name, undefined, { signal });
      } catch (err) {
        if (errorCode(err) !== 'NotFound' || name === BUILTIN_BUSYBOX_TEMPLATE) throw err;
        throw new KvzError('NotFound', `VETemplate "${name}" does not exist: create it (examples in manifests/examples/), or use the built-in "busybox"`, { cause: err });
      }
    }
    const generation = vet.metadata.generation;
    const failed = this.failures.get(name);
    if (failed && failed.generation === generation && failed.request === buildRequest && this.now() - failed.at < (this.o.failedRetryMs ?? 300_000)) {
      throw failed.error;
    }
    let recipe: TemplateRecipe;
    try {
      recipe = recipeFromSpec(name, vet.spec);
    } catch (err) {
      await this.record(vet, { node: this.o.nodeName, stage: 'Failed', message: errorMessage(err), ...(generation !== undefined ? { observedGeneration: generation } : {}), ...(buildRequest ? { buildRequest } : {}) });
      throw err;
    }
    const log = this.o.log.child({ template: name });
    let lastWrite = 0;
    let lastStage = '';
    const onProgress = (p: TemplateProgress) => {
      if (p.stage === 'Ready') return; // the final entry below carries digest and sizes
      const t = this.now();
      if (p.stage === lastStage && t - lastWrite < (this.o.progressIntervalMs ?? 1000)) return;
      lastWrite = t;
      if (p.stage !== lastStage) log.info({ stage: p.stage, percent: p.percent }, 'template build');
      lastStage = p.stage;
      void this.record(vet, { node: this.o.nodeName, stage: p.stage, percent: p.percent, ...(p.message ? { message: p.message.slice(0, 200) } : {}) });
    };
    try {
      const info = await this.o.runtime.ensureTemplate(name, recipe, { signal, onProgress });
      this.failures.delete(name);
      const want = readyEntry(this.o.nodeName, info, generation, buildRequest ?? this.entry(vet)?.buildRequest);
      // Compared with the (informer's) copy first: a resync of a healthy VE costs no API call.
      if (JSON.stringify(this.entry(vet)) !== JSON.stringify(want)) await this.record(vet, want);
      return info;
    } catch (err) {
      if (signal.aborted) throw err;
      this.failures.set(name, { generation, request: buildRequest, at: this.now(), error: err });
      log.warn({ err: errorMessage(err) }, 'template build failed');
      await this.record(vet, {
        node: this.o.nodeName,
        stage: 'Failed',
        message: errorMessage(err).slice(-4000),
        ...(generation !== undefined ? { observedGeneration: generation } : {}),
        ...(buildRequest ? { buildRequest } : {}),
      });
      throw err;
    }
  }

  entry(vet: VETemplate): TemplateNodeStatus | undefined {
    return vet.status?.nodes?.find((e) => e.node === this.o.nodeName);
  }

  /** Writes this node's entry (serialised per template, re-reading the object so other nodes' entries are kept). */
  record(vet: VETemplate, entry: TemplateNodeStatus): Promise<void> {
    const name = vet.metadata.name;
    const prev = this.writes.get(name) ?? Promise.resolve();
    const next = prev.then(async () => {
      try {
        const fresh = await this.o.client.get(name);
        if (!fresh) return;
        const nodes = mergeNodeEntry(fresh.status?.nodes, entry);
        if (!nodes) return;
        const patch: Record<string, unknown> = { nodes };
        if (entry.observedGeneration !== undefined) patch.observedGeneration = entry.observedGeneration;
        await this.o.client.patchStatus(name, undefined, patch);
      } catch (err) {
        this.o.log.warn({ template: name, err: errorMessage(err) }, 'could not record the template status');
      }
    });
    this.writes.set(name, next);
    return next;
  }

  /** Drops the memory of a failure (a new request or spec retries at once). */
  forget(name: string): void {
    this.failures.delete(name);
  }
}

export interface TemplateReconcilerOptions {
  builds: TemplateBuilds;
  client: ResourceClient<VETemplate>;
  runtime: VERuntime;
  nodeName: string;
  log: Logger;
}

export class TemplateReconciler implements Reconciler {
  readonly name = 'template';

  constructor(private readonly o: TemplateReconcilerOptions) {}

  async reconcile(key: string, signal: AbortSignal): Promise<ReconcileResult> {
    const name = key.includes('/') ? key.slice(key.indexOf('/') + 1) : key;
    const vet = await this.o.client.get(name);
    if (!vet || vet.metadata.deletionTimestamp) return this.removeCache(name);

    const request = vet.metadata.annotations?.[TEMPLATE_BUILD_ANNOTATION];
    const mine = this.o.builds.entry(vet);
    const requested = request !== undefined && request !== mine?.buildRequest;
    const cached = (await this.o.runtime.listTemplates()).some((t) => t.name === name);
    // Built on demand: only a request, or a cache this node already holds (its recipe may have changed).
    if (!requested && !cached) return {};
    try {
      await this.o.builds.ensure(name, signal, requested ? request : undefined);
    } catch (err) {
      // Recorded in status; a failed build is retried on a new request or spec, not in a loop.
      if (errorCode(err) === 'Terminal' || requested) return {};
      throw err;
    }
    return {};
  }

  private async removeCache(name: string): Promise<ReconcileResult> {
    try {
      await this.o.runtime.removeTemplate(name);
    } catch (err) {
      if (errorCode(err) !== 'Conflict') throw err;
      // VEs still run from it: the cache stays until they are gone.
      this.o.log.warn({ template: name, err: errorMessage(err) }, 'template deleted but its cache is in use; keeping it');
      return { requeueAfterMs: 60_000 };
    }
    return {};
  }
}

export interface TemplateAgentOptions {
  client: ResourceClient<VETemplate>;
  runtime: VERuntime;
  nodeName: string;
  log: Logger;
  workers?: number;
}

/**
 * The node agent's template side: an informer on VETemplates, the reconcile loop, and the
 * TemplateBuilds the VE reconciler uses. `onChange(name)` lets the agent wake the VEs that
 * wait for a template.
 */
export class TemplateAgent {
  readonly builds: TemplateBuilds;
  private loop: ControllerLoop | undefined;
  private informer: InformerHandle<VETemplate> | undefined;
  private readonly log: Logger;

  constructor(private readonly o: TemplateAgentOptions) {
    this.log = o.log.child({ controller: 'template' });
    this.builds = new TemplateBuilds({ client: o.client, runtime: o.runtime, nodeName: o.nodeName, log: this.log, lookup: (n) => this.informer?.get(n) });
  }

  async start(onChange: (name: string) => void): Promise<void> {
    const reconciler = new TemplateReconciler({ builds: this.builds, client: this.o.client, runtime: this.o.runtime, nodeName: this.o.nodeName, log: this.log });
    this.loop = new ControllerLoop({ reconciler, log: this.log, workers: this.o.workers ?? 2 });
    const queue = this.loop.queue;
    this.informer = await this.o.client.inform({}, (_type, obj) => {
      queue.add(obj.metadata.name);
      onChange(obj.metadata.name);
    });
    this.loop.start();
    const declared = new Set(this.informer.list().map((t) => t.metadata.name));
    for (const name of declared) queue.add(name);
    // Caches whose VETemplate was deleted while the agent was down (the built-in busybox stays).
    for (const t of await this.o.runtime.listTemplates().catch(() => [])) {
      if (!declared.has(t.name) && !(t.name === BUILTIN_BUSYBOX_TEMPLATE && t.builtin)) queue.add(t.name);
    }
  }

  async stop(): Promise<void> {
    await this.informer?.stop();
    await this.loop?.stop();
  }
}
