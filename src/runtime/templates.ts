// The node's template cache: templates/<name>/rootfs (read-only lower layer shared by every VE
// of the template) plus templates/<name>/digest. A tree is built in a temp dir and renamed
// into place, so a failed build leaves nothing; a digest change builds anew and swaps.

import { randomBytes } from 'node:crypto';
import { chmod, copyFile, mkdir, readFile, readdir, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { KvzError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { run } from './command.js';
import {
  BUSYBOX_TEMPLATE,
  assertStaticElf,
  busyboxRecipe,
  recipeDigest,
  sha256File,
  type BusyboxRecipe,
} from './template-busybox.js';
import type { EnsureResult } from './types.js';

export interface TemplateCacheOptions {
  dir: string;
  busybox: string;
  log: Logger;
  /** Whether an old tree may be removed now (no mounted VE uses the template). */
  inUse: (name: string) => Promise<boolean>;
}

async function exists(p: string): Promise<boolean> {
  try {
    await stat(p);
    return true;
  } catch {
    return false;
  }
}

export class TemplateCache {
  private readonly building = new Map<string, Promise<{ rootfs: string; result: EnsureResult }>>();
  private binaryHash?: { key: string; hash: string };

  constructor(private readonly opts: TemplateCacheOptions) {}

  rootfs(name: string): string {
    return join(this.opts.dir, name, 'rootfs');
  }

  /** Builds or rebuilds the template if needed; concurrent callers share one build. */
  ensure(name: string, signal?: AbortSignal): Promise<{ rootfs: string; result: EnsureResult }> {
    const running = this.building.get(name);
    if (running) return running.then((r) => ({ ...r, result: 'unchanged' as const }));
    const p = this.doEnsure(name, signal).finally(() => this.building.delete(name));
    this.building.set(name, p);
    return p;
  }

  private async doEnsure(name: string, signal?: AbortSignal): Promise<{ rootfs: string; result: EnsureResult }> {
    const rootfs = this.rootfs(name);
    if (name !== BUSYBOX_TEMPLATE) {
      if (await exists(rootfs)) return { rootfs, result: 'unchanged' };
      throw new KvzError('NotFound', `template ${JSON.stringify(name)} is not in this node's cache (${this.opts.dir}); only the built-in "busybox" is built here`);
    }
    const recipe = busyboxRecipe();
    const digest = recipeDigest(recipe, await this.busyboxHash());
    const current = await readFile(join(this.opts.dir, name, 'digest'), 'utf8').catch(() => '');
    if (current.trim() === digest && (await exists(rootfs))) return { rootfs, result: 'unchanged' };

    await mkdir(this.opts.dir, { recursive: true });
    const tmp = join(this.opts.dir, `.build-${name}-${randomBytes(4).toString('hex')}`);
    try {
      await this.buildBusybox(recipe, join(tmp, 'rootfs'), signal);
      await writeFile(join(tmp, 'digest'), `${digest}\n`);
      const hadOld = await this.swapIn(name, tmp);
      this.opts.log.info({ template: name, digest: digest.slice(0, 12) }, hadOld ? 'template rebuilt' : 'template built');
      return { rootfs, result: hadOld ? 'updated' : 'created' };
    } catch (err) {
      await rm(tmp, { recursive: true, force: true });
      throw err;
    }
  }

  /** Renames the built tree into place; an old tree is moved aside and removed unless VEs still mount it. */
  private async swapIn(name: string, built: string): Promise<boolean> {
    const final = join(this.opts.dir, name);
    if (!(await exists(final))) {
      await rename(built, final);
      return false;
    }
    const old = join(this.opts.dir, `.old-${name}-${randomBytes(4).toString('hex')}`);
    await rename(final, old);
    await rename(built, final);
    if (await this.opts.inUse(name)) {
      this.opts.log.warn({ template: name, path: old }, 'old template tree kept: running VEs still use it');
    } else {
      await rm(old, { recursive: true, force: true });
    }
    return true;
  }

  private async busyboxHash(): Promise<string> {
    const st = await stat(this.opts.busybox).catch((err: unknown) => {
      throw new KvzError('HostSetup', `busybox not found at ${this.opts.busybox}: install busybox-static`, { cause: err });
    });
    const key = `${st.ino}:${st.size}:${st.mtimeMs}`;
    if (this.binaryHash?.key !== key) this.binaryHash = { key, hash: await sha256File(this.opts.busybox) };
    return this.binaryHash.hash;
  }

  private async buildBusybox(recipe: BusyboxRecipe, root: string, signal?: AbortSignal): Promise<void> {
    await assertStaticElf(this.opts.busybox);
    await mkdir(root, { recursive: true, mode: 0o755 });
    for (const d of recipe.dirs) {
      await mkdir(join(root, d.path), { recursive: true });
      await chmod(join(root, d.path), d.mode);
    }
    const binary = join(root, recipe.binary);
    await mkdir(dirname(binary), { recursive: true });
    await copyFile(this.opts.busybox, binary);
    await chmod(binary, 0o755);
    const { stdout } = await run(this.opts.busybox, ['--list-full'], { signal });
    const applets = stdout.split('\n').map((s) => s.trim()).filter(Boolean);
    for (const applet of applets) {
      if (applet === recipe.binary || recipe.overrides.includes(applet)) continue;
      const link = join(root, applet);
      await mkdir(dirname(link), { recursive: true });
      // Relative links keep the tree valid wherever it is mounted.
      await symlink(relative(dirname(link), binary), link).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'EEXIST') throw err;
      });
    }
    for (const f of recipe.files) {
      const p = join(root, f.path);
      await mkdir(dirname(p), { recursive: true });
      await rm(p, { force: true });
      await writeFile(p, f.content);
      await chmod(p, f.mode);
    }
    for (const s of recipe.symlinks) {
      const p = join(root, s.path);
      await mkdir(dirname(p), { recursive: true });
      await rm(p, { recursive: true, force: true });
      await symlink(s.target, p);
    }
  }

  /** Template names present in the cache. */
  async names(): Promise<string[]> {
    const entries = await readdir(this.opts.dir, { withFileTypes: true }).catch(() => []);
    return entries.filter((e) => e.isDirectory() && !e.name.startsWith('.')).map((e) => e.name);
  }
}
