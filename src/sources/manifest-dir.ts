// The watched directory: every *.yaml/*.yml under DIR is applied into the API with server-side
// apply under the field manager `kubevz-dir:<dir>` and kept there. File events are batched, so
// many files dropped at once are validated, applied and pruned in one pass. What each file
// applied is kept in the source inventory (source-sync.ts), so a removed document or file
// prunes exactly its objects, also when it was removed while nobody watched. An invalid file
// changes nothing; its objects stay as they were.

import type * as k8s from '@kubernetes/client-node';
import { watch, type FSWatcher } from 'chokidar';
import { createHash } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { join, resolve, sep } from 'node:path';
import { KvzError, errorMessage } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { displayName, fieldManagerName } from './apply.js';
import { kubeApplyTarget, type ApplyTarget } from './kinds.js';
import { formatProblem, isManifestFile, readManifestFile, type ManifestProblem } from './manifests.js';
import { SourceSync, type FileChange, type SyncResult } from './source-sync.js';

export interface ManifestDirOptions {
  dir: string;
  log: Logger;
  /** Where objects go; or give `kubeconfig` and the server's discovery is used. */
  target?: ApplyTarget;
  kubeconfig?: k8s.KubeConfig;
  /** Where the inventory file goes (`kvz up`: `<state-dir>/sources`); without it, annotations only. */
  inventoryDir?: string;
  /** Namespace for objects whose manifest has none. Default "default". */
  namespace?: string;
  /** How long a file must stay unchanged before it is read (editors write in steps). Default 300 ms. */
  stabilityMs?: number;
  /** Quiet time after the last file event before a pass starts. Default 100 ms. */
  batchMs?: number;
  /** Backoff for passes that failed for a reason other than the manifests (server down). */
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
  fieldManager: string;
  /** True once every file present at start was processed and orphans were deleted. */
  ready: boolean;
  /** Passes run so far (each applies every file that changed since the previous one). */
  passes: number;
  files: FileStatus[];
}

export interface ManifestDirWatcher {
  readonly dir: string;
  status(): ManifestDirStatus;
  /** Resolves when no file event is waiting to be processed (retry timers do not count). */
  settled(): Promise<void>;
  close(): Promise<void>;
}

/** The stable identity of a directory source (the `kubevz.io/source` annotation). */
export function dirSourceId(dir: string): string {
  return `dir:${resolve(dir)}`;
}

/** `<inventoryDir>/dir-<hash>.json`. */
export function inventoryFileFor(inventoryDir: string, sourceId: string): string {
  const kind = sourceId.slice(0, sourceId.indexOf(':'));
  return join(inventoryDir, `${kind}-${createHash('sha256').update(sourceId).digest('hex').slice(0, 16)}.json`);
}

/** Starts watching; resolves after the initial pass (files applied, orphans of removed files deleted). */
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
  private readonly sync: SourceSync;
  private readonly fieldManager: string;
  private readonly files = new Map<string, FileStatus>();
  /** Files with an event since the last pass. */
  private readonly pending = new Set<string>();
  private timer?: NodeJS.Timeout;
  private deadline = 0;
  private failures = 0;
  private retrying = false;
  private passes = 0;
  private idleWaiters: (() => void)[] = [];
  private working = false;
  private closed = false;
  private ready = false;
  private watcher?: FSWatcher;
  private readonly log: Logger;

  constructor(
    readonly dir: string,
    target: ApplyTarget,
    private readonly opts: ManifestDirOptions,
  ) {
    this.log = opts.log;
    const sourceId = dirSourceId(dir);
    this.fieldManager = fieldManagerName('kubevz-dir', dir);
    this.sync = new SourceSync({
      target,
      log: this.log,
      sourceId,
      fieldManager: this.fieldManager,
      inventoryFile: opts.inventoryDir ? inventoryFileFor(opts.inventoryDir, sourceId) : undefined,
      namespace: opts.namespace,
      // Objects written before the source annotation existed name their file only.
      legacyOwner: (file) => file.startsWith(dir + sep),
    });
  }

  async start(): Promise<void> {
    await this.sync.load();
    const stabilityMs = this.opts.stabilityMs ?? 300;
    const batchMs = this.opts.batchMs ?? 100;
    const seen = new Set<string>();
    let initial = true;
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
      if (initial) seen.add(p);
      this.schedule([p], batchMs);
    });
    this.watcher.on('change', (p) => this.schedule([p], batchMs));
    // The add of a renamed file arrives only after awaitWriteFinish: wait for it, so `mv a.yaml
    // b.yaml` lands in one pass and its objects are kept rather than deleted and recreated.
    this.watcher.on('unlink', (p) => this.schedule([p], stabilityMs + batchMs + 100));
    this.watcher.on('unlinkDir', (d) => this.schedule(this.sync.files().filter((f) => f.startsWith(d + sep)), stabilityMs + batchMs + 100));
    this.watcher.on('error', (err) => this.log.error({ dir: this.dir, err: errorMessage(err) }, 'watching the manifest directory failed'));
    await new Promise<void>((res) => this.watcher?.once('ready', () => res()));
    initial = false;
    // Files that own objects but are gone: removed while nobody watched. Same pass as the rest.
    this.schedule(this.sync.files().filter((f) => !seen.has(f)), 0);
    await this.settled();
    this.ready = true;
    this.log.info({ dir: this.dir, files: this.files.size, fieldManager: this.fieldManager }, 'manifest directory synced');
  }

  /** Adds files to the next pass, which starts `delayMs` after the latest event asks for it. */
  private schedule(files: string[], delayMs: number): void {
    if (this.closed) return;
    for (const f of files) this.pending.add(f);
    if (this.retrying) return;
    this.deadline = Math.max(this.deadline, Date.now() + delayMs);
    this.arm();
  }

  private arm(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.work();
    }, Math.max(0, this.deadline - Date.now()));
  }

  private async work(): Promise<void> {
    if (this.working || this.closed) return;
    if (Date.now() < this.deadline) return this.arm();
    this.working = true;
    this.retrying = false;
    const batch = [...this.pending].sort();
    this.pending.clear();
    try {
      if (batch.length > 0) await this.pass(batch);
      this.failures = 0;
    } catch (err) {
      for (const f of batch) this.pending.add(f);
      const { baseMs, maxMs } = this.opts.retry ?? { baseMs: 500, maxMs: 30_000 };
      const delay = Math.min(maxMs, baseMs * 2 ** this.failures++);
      for (const f of batch) this.setStatus(f, { state: 'retrying', problems: [], error: errorMessage(err) });
      this.log.warn({ dir: this.dir, files: batch, err: errorMessage(err), retryInMs: delay }, 'applying manifest files failed; will retry');
      this.retrying = true;
      this.deadline = Date.now() + delay;
      if (!this.closed) this.arm();
    } finally {
      this.working = false;
      if (this.pending.size > 0 && !this.retrying && !this.closed) this.arm();
      this.wakeIfIdle();
    }
  }

  private wakeIfIdle(): void {
    if (!this.closed && !this.retrying && (this.working || this.pending.size > 0)) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }

  private async pass(batch: string[]): Promise<void> {
    const changes: FileChange[] = [];
    for (const file of batch) {
      if (existsSync(file)) changes.push({ file, parsed: readManifestFile(file) });
      else if (this.sync.owned(file).length > 0 || this.files.has(file)) changes.push({ file, removed: true });
    }
    if (changes.length === 0) return;
    const result = await this.sync.sync(changes, { atomic: false });
    this.passes++;
    for (const c of changes) {
      const problems = result.rejected.get(c.file);
      if (problems) this.reject(c.file, problems);
      else if ('removed' in c) this.files.delete(c.file);
      else this.setStatus(c.file, { state: 'applied', problems: [] });
    }
    this.report(result, changes.length);
  }

  private report(result: SyncResult, files: number): void {
    const created = result.applied.filter((a) => a.action === 'created').map(displayName);
    const configured = result.applied.filter((a) => a.action === 'configured').map(displayName);
    const deleted = result.pruned.map(displayName);
    if (created.length + configured.length + deleted.length > 0) {
      this.log.info({ dir: this.dir, files, created, configured, deleted }, 'applied manifest files');
    }
  }

  private reject(file: string, problems: ManifestProblem[]): void {
    this.setStatus(file, { state: 'invalid', problems });
    for (const p of problems) {
      this.log.error({ file: p.file, doc: p.index, line: p.line, field: p.field }, `invalid manifest, nothing applied from this file: ${formatProblem(p)}`);
    }
  }

  private setStatus(file: string, s: Pick<FileStatus, 'state' | 'problems' | 'error'>): void {
    this.files.set(file, { file, objects: this.sync.owned(file), updatedAt: new Date().toISOString(), ...s });
  }

  status(): ManifestDirStatus {
    const files = [...this.files.values()].sort((a, b) => a.file.localeCompare(b.file)).map((f) => ({ ...f, objects: this.sync.owned(f.file) }));
    return { dir: this.dir, fieldManager: this.fieldManager, ready: this.ready, passes: this.passes, files };
  }

  settled(): Promise<void> {
    if (this.closed || this.retrying || (!this.working && this.pending.size === 0)) return Promise.resolve();
    return new Promise((res) => this.idleWaiters.push(res));
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.watcher?.close();
    while (this.working) await new Promise((r) => setTimeout(r, 10));
    this.wakeIfIdle();
  }
}
