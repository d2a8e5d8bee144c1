// The watched directory: every *.yaml/*.yml under DIR is applied into the API and kept there.
// Each object records its file in the `kubevz.io/source-file` annotation, so ownership
// survives restarts: a file that was removed while nobody watched still has its objects
// deleted at the next start. An invalid file changes nothing; its objects stay as they were.

import type * as k8s from '@kubernetes/client-node';
import { watch, type FSWatcher } from 'chokidar';
import { existsSync, statSync } from 'node:fs';
import { resolve, sep } from 'node:path';
import { KvzError, errorCode, errorMessage } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { SOURCE_DOC_ANNOTATION, SOURCE_FILE_ANNOTATION, applyObjects, deleteObjects, displayName, objectId, type ObjectRef } from './apply.js';
import { kubeApplyTarget, type ApplyTarget } from './kinds.js';
import { formatProblem, isManifestFile, readManifestFile, type ManifestProblem } from './manifests.js';

export interface ManifestDirOptions {
  dir: string;
  log: Logger;
  /** Where objects go; or give `kubeconfig` and the server's discovery is used. */
  target?: ApplyTarget;
  kubeconfig?: k8s.KubeConfig;
  /** Namespace for objects whose manifest has none. Default "default". */
  namespace?: string;
  /** How long a file must stay unchanged before it is read (editors write in steps). Default 300 ms. */
  stabilityMs?: number;
  /** Backoff for files whose apply failed for a reason other than the manifest (server down). */
  retry?: { baseMs: number; maxMs: number };
  /** Poll the file system instead of inotify (network file systems). */
  usePolling?: boolean;
}

export type FileState = 'applied' | 'invalid' | 'retrying';

export interface FileStatus {
  file: string;
  state: FileState;
  /** Objects the file owns now (`VirtualEnvironment.kubevz.io/default/web1`). */
  objects: string[];
  /** Why the file is invalid: file, document index, line, field. */
  problems: ManifestProblem[];
  /** The last transient error, while retrying. */
  error?: string;
  updatedAt: string;
}

export interface ManifestDirStatus {
  dir: string;
  /** True once every file present at start was processed and orphans were deleted. */
  ready: boolean;
  files: FileStatus[];
}

export interface ManifestDirWatcher {
  readonly dir: string;
  status(): ManifestDirStatus;
  /** Resolves when no file is waiting to be processed (retry timers do not count). */
  settled(): Promise<void>;
  close(): Promise<void>;
}

/** Starts watching; resolves after the initial sync (files applied, orphans of removed files deleted). */
export async function watchManifestDir(opts: ManifestDirOptions): Promise<ManifestDirWatcher> {
  const dir = resolve(opts.dir);
  let st;
  try {
    st = statSync(dir);
  } catch (err) {
    throw new KvzError('NotFound', `manifest directory ${dir} does not exist; create it or pass another --manifests`, { cause: err });
  }
  if (!st.isDirectory()) throw new KvzError('Invalid', `manifest directory ${dir} is not a directory`);
  const target = opts.target ?? (opts.kubeconfig ? kubeApplyTarget(opts.kubeconfig, opts.log) : undefined);
  if (!target) throw new KvzError('Invalid', 'watchManifestDir needs a target or a kubeconfig');
  const w = new ManifestDir(dir, target, opts);
  await w.start();
  return w;
}

class ManifestDir implements ManifestDirWatcher {
  /** What each file owns in the API, by object id. Loaded from annotations at start. */
  private readonly owned = new Map<string, Map<string, ObjectRef>>();
  private readonly files = new Map<string, FileStatus>();
  private readonly dirty = new Set<string>();
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private readonly failures = new Map<string, number>();
  private idleWaiters: (() => void)[] = [];
  private working = false;
  private closed = false;
  private ready = false;
  private watcher?: FSWatcher;
  private readonly log: Logger;

  constructor(
    readonly dir: string,
    private readonly target: ApplyTarget,
    private readonly opts: ManifestDirOptions,
  ) {
    this.log = opts.log;
  }

  async start(): Promise<void> {
    await this.loadOwnership();
    const stabilityMs = this.opts.stabilityMs ?? 300;
    const seen = new Set<string>();
    this.watcher = watch(this.dir, {
      ignoreInitial: false,
      persistent: true,
      usePolling: this.opts.usePolling ?? false,
      interval: 100,
      awaitWriteFinish: { stabilityThreshold: stabilityMs, pollInterval: Math.max(10, Math.floor(stabilityMs / 4)) },
      // Directories are walked (but not hidden ones such as .git); files only if they are manifests.
      ignored: (path, stats) => {
        if (path === this.dir) return false;
        const base = path.slice(path.lastIndexOf(sep) + 1);
        if (base.startsWith('.')) return true;
        return stats?.isFile() === true && !isManifestFile(path);
      },
    });
    this.watcher.on('add', (p) => {
      seen.add(p);
      this.schedule(p, 0);
    });
    this.watcher.on('change', (p) => this.schedule(p, 0));
    // A delay lets `mv a.yaml b.yaml` apply b first, so objects that moved are not deleted and recreated.
    this.watcher.on('unlink', (p) => this.schedule(p, stabilityMs + 100));
    this.watcher.on('unlinkDir', (d) => {
      for (const f of this.owned.keys()) if (f.startsWith(d + sep)) this.schedule(f, stabilityMs + 100);
    });
    this.watcher.on('error', (err) => this.log.error({ dir: this.dir, err: errorMessage(err) }, 'watching the manifest directory failed'));
    await new Promise<void>((res) => this.watcher?.once('ready', () => res()));
    // Files that own objects but are gone: removed while nobody watched.
    for (const f of this.owned.keys()) if (!seen.has(f)) this.schedule(f, 0);
    await this.settled();
    this.ready = true;
    this.log.info({ dir: this.dir, files: this.files.size }, 'manifest directory synced');
  }

  /** Finds the objects this directory's files own, from their source-file annotations. */
  private async loadOwnership(): Promise<void> {
    for (const ref of await this.target.kinds()) {
      let items;
      try {
        items = await this.target.client(ref).list();
      } catch (err) {
        // A kind from the local CRDs that this server does not serve has no objects to own.
        if (errorCode(err) === 'NotFound') continue;
        throw err;
      }
      for (const o of items) {
        const file = o.metadata?.annotations?.[SOURCE_FILE_ANNOTATION];
        if (!file || !file.startsWith(this.dir + sep) || !o.metadata?.name) continue;
        const obj: ObjectRef = { ref, name: o.metadata.name, namespace: ref.namespaced ? o.metadata.namespace : undefined };
        this.ownedBy(file).set(objectId(obj), obj);
      }
    }
  }

  private ownedBy(file: string): Map<string, ObjectRef> {
    let m = this.owned.get(file);
    if (!m) this.owned.set(file, (m = new Map()));
    return m;
  }

  private schedule(file: string, delayMs: number): void {
    if (this.closed) return;
    const pending = this.timers.get(file);
    if (pending) clearTimeout(pending);
    this.timers.delete(file);
    if (delayMs <= 0) {
      this.dirty.add(file);
      void this.work();
      return;
    }
    const t = setTimeout(() => {
      this.timers.delete(file);
      this.dirty.add(file);
      void this.work();
    }, delayMs);
    this.timers.set(file, t);
  }

  // One file at a time: files are few, and serial processing keeps ownership moves between files simple.
  private async work(): Promise<void> {
    if (this.working) return;
    this.working = true;
    try {
      for (;;) {
        const file = this.dirty.values().next().value as string | undefined;
        if (file === undefined || this.closed) break;
        this.dirty.delete(file);
        await this.sync(file);
      }
    } finally {
      this.working = false;
      if (this.dirty.size === 0 || this.closed) {
        const waiters = this.idleWaiters;
        this.idleWaiters = [];
        for (const w of waiters) w();
      }
    }
  }

  private async sync(file: string): Promise<void> {
    try {
      if (existsSync(file)) await this.applyFile(file);
      else await this.removeFile(file);
      this.failures.delete(file);
    } catch (err) {
      const n = this.failures.get(file) ?? 0;
      this.failures.set(file, n + 1);
      const { baseMs, maxMs } = this.opts.retry ?? { baseMs: 500, maxMs: 30_000 };
      const delay = Math.min(maxMs, baseMs * 2 ** n);
      this.setStatus(file, { state: 'retrying', problems: [], error: errorMessage(err) });
      this.log.warn({ file, err: errorMessage(err), retryInMs: delay }, 'applying manifest file failed; will retry');
      this.schedule(file, delay);
    }
  }

  private async applyFile(file: string): Promise<void> {
    const parsed = readManifestFile(file);
    if (parsed.problems.length > 0) return this.reject(file, parsed.problems);
    const report = await applyObjects(this.target, parsed.docs, {
      namespace: this.opts.namespace,
      allOrNothing: true,
      log: this.log,
      annotations: (doc) => ({ [SOURCE_FILE_ANNOTATION]: file, [SOURCE_DOC_ANNOTATION]: String(doc.index) }),
      claim: (doc, obj) => {
        const id = objectId(obj);
        for (const [other, objs] of this.owned) {
          if (other !== file && objs.has(id) && existsSync(other)) {
            return { file, index: doc.index, line: doc.lineOf?.('metadata.name') ?? doc.line, field: 'metadata.name', message: `${displayName(obj)} is already declared in ${other}` };
          }
        }
        return undefined;
      },
    });
    if (report.problems.length > 0) return this.reject(file, report.problems);

    const before = this.owned.get(file) ?? new Map<string, ObjectRef>();
    const now = new Map<string, ObjectRef>();
    for (const a of report.applied) now.set(objectId(a), { ref: a.ref, namespace: a.namespace, name: a.name });
    // Objects that moved here from another file are this file's now.
    for (const id of now.keys()) for (const [other, objs] of this.owned) if (other !== file) objs.delete(id);
    const dropped = [...before].filter(([id]) => !now.has(id)).map(([, o]) => o);
    const deleted = await deleteObjects(this.target, dropped, { owner: file });
    this.owned.set(file, now);
    this.setStatus(file, { state: 'applied', problems: [] });
    const created = report.applied.filter((a) => a.action === 'created').map(displayName);
    const configured = report.applied.filter((a) => a.action === 'configured').map(displayName);
    if (created.length + configured.length + deleted.length > 0) {
      this.log.info({ file, created, configured, deleted: deleted.map(displayName) }, 'applied manifest file');
    }
  }

  private reject(file: string, problems: ManifestProblem[]): void {
    this.setStatus(file, { state: 'invalid', problems });
    for (const p of problems) {
      this.log.error({ file: p.file, doc: p.index, line: p.line, field: p.field }, `invalid manifest, nothing applied from this file: ${formatProblem(p)}`);
    }
  }

  private async removeFile(file: string): Promise<void> {
    const objs = [...(this.owned.get(file)?.values() ?? [])];
    const deleted = await deleteObjects(this.target, objs, { owner: file });
    this.owned.delete(file);
    this.files.delete(file);
    if (deleted.length > 0) this.log.info({ file, deleted: deleted.map(displayName) }, 'manifest file removed; deleted its objects');
  }

  private setStatus(file: string, s: Pick<FileStatus, 'state' | 'problems' | 'error'>): void {
    this.files.set(file, { file, objects: [...(this.owned.get(file)?.keys() ?? [])], updatedAt: new Date().toISOString(), ...s });
  }

  status(): ManifestDirStatus {
    const files = [...this.files.values()].sort((a, b) => a.file.localeCompare(b.file)).map((f) => ({ ...f, objects: [...(this.owned.get(f.file)?.keys() ?? [])] }));
    return { dir: this.dir, ready: this.ready, files };
  }

  settled(): Promise<void> {
    if (!this.working && this.dirty.size === 0) return Promise.resolve();
    return new Promise((res) => this.idleWaiters.push(res));
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
    await this.watcher?.close();
    await this.settled();
  }
}
