// A Git repository as a source of desired state (single-host GitOps): every interval the
// branch is fetched with the `git` CLI into a bare mirror under the state dir, and the
// manifests under PATH at the fetched commit are applied as one unit with the same
// apply/prune/inventory engine as the watched directory (field manager `kubevz-git:<url>…`).
// A commit with an invalid manifest changes nothing: it is reported with the commit and file,
// and the previous good commit stays applied. No working tree is checked out; files are read
// with `git ls-tree` / `git cat-file` at the exact commit.

import type * as k8s from '@kubernetes/client-node';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync } from 'node:fs';
import { isAbsolute, join, posix, resolve } from 'node:path';
import { KvzError, errorMessage } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { displayName, fieldManagerName } from './apply.js';
import { kubeApplyTarget, type ApplyTarget } from './kinds.js';
import { inventoryFileFor } from './manifest-dir.js';
import { formatProblem, isManifestFile, parseManifests, type ManifestProblem } from './manifests.js';
import { SourceSync, type FileChange } from './source-sync.js';

export interface GitSourceOptions {
  /** A URL git understands (`file:///srv/repo.git`, `https://…`) or a local path. */
  url: string;
  branch: string;
  /** Directory inside the repository; "" or "." for the root. */
  path: string;
  intervalMs: number;
  /** The mirror and the inventory go under `<stateDir>/sources`. */
  stateDir: string;
  log: Logger;
  target?: ApplyTarget;
  kubeconfig?: k8s.KubeConfig;
  namespace?: string;
  /** The git binary. Default "git". */
  git?: string;
  /** Per git command. Default 120 s. */
  commandTimeoutMs?: number;
}

export interface GitCommit {
  commit: string;
  subject: string;
}

export interface GitSourceStatus {
  url: string;
  branch: string;
  path: string;
  fieldManager: string;
  /** The commit whose manifests are in the API now. */
  applied?: GitCommit & { at: string };
  /** The newest commit that was rejected, while it is the branch head. */
  rejected?: GitCommit & { problems: ManifestProblem[] };
  /** The last fetch or apply error (server or repository unreachable), until a poll succeeds. */
  error?: string;
  /** Objects the applied commit declares. */
  objects: string[];
}

export interface GitSource {
  status(): GitSourceStatus;
  /** Fetches and applies now (also what each interval does); resolves when done. */
  poll(): Promise<void>;
  close(): Promise<void>;
}

/** `30s`, `5m`, `1h`, `500ms`, `1m30s`, or a bare number of seconds. */
export function parseInterval(value: string, flag = '--interval'): number {
  if (/^\d+(\.\d+)?$/.test(value)) return Number(value) * 1000;
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h)/gy;
  const unit: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  let total = 0;
  let end = 0;
  for (let m = re.exec(value); m; m = re.exec(value)) {
    total += Number(m[1]) * unit[m[2]!]!;
    end = re.lastIndex;
  }
  if (end !== value.length || value === '' || total <= 0) throw new KvzError('Invalid', `${flag} ${value}: expected a duration such as 30s, 5m or 1h`);
  return total;
}

/** The stable identity of a Git source (the `kubevz.io/source` annotation). */
export function gitSourceId(url: string, branch: string, path: string): string {
  return `git:${url}#${branch}:${normalizePath(path)}`;
}

function normalizePath(p: string): string {
  const n = posix.normalize(p.replace(/\\/g, '/')).replace(/^\/+|\/+$/g, '');
  return n === '.' ? '' : n;
}

/** Starts the source; resolves after the first poll (applied, rejected or failed: see status()). */
export async function startGitSource(opts: GitSourceOptions): Promise<GitSource> {
  const target = opts.target ?? (opts.kubeconfig ? kubeApplyTarget(opts.kubeconfig, opts.log) : undefined);
  if (!target) throw new KvzError('Invalid', 'startGitSource needs a target or a kubeconfig');
  if (!opts.branch) throw new KvzError('Invalid', 'the Git source needs a branch (--branch)');
  // A local path is made absolute, so the source id does not depend on the working directory.
  const url = /^[a-z][a-z0-9+.-]*:\/\//i.test(opts.url) || /^[^/]+@[^:]+:/.test(opts.url) || isAbsolute(opts.url) ? opts.url : resolve(opts.url);
  const src = new GitPoller({ ...opts, url }, target);
  await src.start();
  return src;
}

class GitPoller implements GitSource {
  private readonly sync: SourceSync;
  private readonly fieldManager: string;
  private readonly repoDir: string;
  private readonly path: string;
  private readonly abort = new AbortController();
  private readonly log: Logger;
  private timer?: NodeJS.Timeout;
  private running?: Promise<void>;
  private applied?: GitCommit & { at: string };
  private rejected?: GitCommit & { problems: ManifestProblem[] };
  private error?: string;
  private closed = false;

  constructor(
    private readonly o: GitSourceOptions,
    target: ApplyTarget,
  ) {
    this.path = normalizePath(o.path);
    this.log = o.log;
    const sourceId = gitSourceId(o.url, o.branch, this.path);
    const sourcesDir = join(o.stateDir, 'sources');
    this.repoDir = join(sourcesDir, `git-${createHash('sha256').update(sourceId).digest('hex').slice(0, 16)}.git`);
    this.fieldManager = fieldManagerName('kubevz-git', `${o.url}#${o.branch}:${this.path}`);
    this.sync = new SourceSync({ target, log: this.log, sourceId, fieldManager: this.fieldManager, inventoryFile: inventoryFileFor(sourcesDir, sourceId), namespace: o.namespace });
  }

  async start(): Promise<void> {
    await this.sync.load();
    if (!existsSync(this.repoDir)) {
      mkdirSync(this.repoDir, { recursive: true });
      await this.git(['init', '--quiet', '--bare']);
    }
    await this.poll();
    this.arm();
  }

  private arm(): void {
    if (this.closed) return;
    this.timer = setTimeout(() => {
      void this.poll().finally(() => this.arm());
    }, this.o.intervalMs);
  }

  poll(): Promise<void> {
    // One poll at a time; a poll asked for during another waits for it and runs after.
    const run = (this.running ?? Promise.resolve()).then(() => this.pollOnce());
    this.running = run.finally(() => {
      if (this.running === run) this.running = undefined;
    });
    return run;
  }

  private async pollOnce(): Promise<void> {
    if (this.closed) return;
    try {
      await this.git(['fetch', '--quiet', '--no-tags', '--force', this.o.url, `+refs/heads/${this.o.branch}:refs/kvz/source`]);
      const commit = (await this.git(['rev-parse', '--verify', 'refs/kvz/source^{commit}'])).trim();
      // A commit already applied in this run, or already rejected, needs nothing. After a restart
      // the recorded commit is applied once more: cheap, and it repairs objects deleted meanwhile.
      if (commit === this.applied?.commit || commit === this.rejected?.commit) {
        this.error = undefined;
        return;
      }
      const subject = (await this.git(['log', '-1', '--format=%s', commit])).trim();
      const changes = await this.changesAt(commit);
      const result = await this.sync.sync(changes, { atomic: true, revision: commit });
      this.error = undefined;
      if (result.rejected.size > 0) {
        const problems = [...result.rejected.values()].flat();
        this.rejected = { commit, subject, problems };
        for (const p of problems) {
          this.log.error(
            { url: this.o.url, branch: this.o.branch, commit, file: p.file, doc: p.index, line: p.line, field: p.field, appliedCommit: this.applied?.commit ?? this.sync.revision },
            `commit ${commit.slice(0, 12)} rejected, nothing applied from it (the previous commit stays applied): ${formatProblem(p)}`,
          );
        }
        return;
      }
      this.rejected = undefined;
      this.applied = { commit, subject, at: new Date().toISOString() };
      const changed = result.applied.filter((a) => a.action !== 'unchanged').map((a) => `${displayName(a)} ${a.action}`);
      this.log.info(
        { url: this.o.url, branch: this.o.branch, path: this.path || '.', commit, subject, objects: result.applied.length, changed, pruned: result.pruned.map(displayName) },
        `applied commit ${commit.slice(0, 12)} (${subject})`,
      );
    } catch (err) {
      if (this.closed) return;
      this.error = errorMessage(err);
      this.log.warn({ url: this.o.url, branch: this.o.branch, err: this.error, retryInMs: this.o.intervalMs }, 'Git source poll failed; will retry at the next interval');
    }
  }

  /** Every manifest under the path at `commit`, plus the files the inventory has that are gone. */
  private async changesAt(commit: string): Promise<FileChange[]> {
    const listing = await this.git(['ls-tree', '-r', '-z', '--name-only', commit, '--', ...(this.path ? [`${this.path}/`] : [])]);
    const files = listing.split('\0').filter((f) => f && isManifestFile(f) && !f.split('/').some((part) => part.startsWith('.'))).sort();
    const changes: FileChange[] = [];
    for (const file of files) {
      const text = await this.git(['cat-file', 'blob', `${commit}:${file}`]);
      changes.push({ file, parsed: parseManifests(text, file) });
    }
    const present = new Set(files);
    for (const file of this.sync.files()) if (!present.has(file)) changes.push({ file, removed: true });
    return changes;
  }

  private git(args: string[]): Promise<string> {
    const bin = this.o.git ?? 'git';
    const full = ['-C', this.repoDir, ...args];
    return new Promise((res, rej) => {
      execFile(
        bin,
        full,
        {
          signal: this.abort.signal,
          timeout: this.o.commandTimeoutMs ?? 120_000,
          maxBuffer: 64 << 20,
          // Never prompt for credentials: a daemon has nobody to answer.
          env: { ...process.env, GIT_TERMINAL_PROMPT: '0', GIT_ASKPASS: 'true', LC_ALL: 'C' },
        },
        (err, stdout, stderr) => {
          if (!err) return res(stdout);
          const msg = String(stderr || err.message).trim();
          rej(new KvzError('CommandFailed', `${bin} ${full.join(' ')} failed: ${msg}${args[0] === 'fetch' ? ` (check that --git ${this.o.url} is a reachable repository with a branch ${this.o.branch})` : ''}`, { cause: err }));
        },
      );
    });
  }

  status(): GitSourceStatus {
    const objects = this.sync.files().flatMap((f) => this.sync.owned(f));
    return { url: this.o.url, branch: this.o.branch, path: this.path || '.', fieldManager: this.fieldManager, applied: this.applied, rejected: this.rejected, error: this.error, objects };
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.abort.abort();
    await this.running?.catch(() => {});
  }
}
