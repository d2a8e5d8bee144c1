// The node's template cache. templates/<name>/ holds rootfs/ (the unpacked tree: the read-only
// lower layer shared by every VE of the template, never written), cache.tar.zst (the packed
// cache) and meta.json (digest, init profile, sizes). A build happens in
// templates/.build-<name>-<random>/ and is renamed into place only when complete, so a failed
// or interrupted build leaves nothing half-made; the same recipe gives the same digest, and a
// different digest builds anew and swaps. Builds of one name are serialised.

import { randomBytes } from 'node:crypto';
import { chmod, copyFile, mkdir, readFile, readdir, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { KvzError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { run } from './command.js';
import { extractTarball, packTree, sha256Stream, tarballPath, treeBytes } from './template-archive.js';
import { assertStaticElf, busyboxRecipe, sha256File, type BusyboxRecipe } from './template-busybox.js';
import { runInTree } from './template-chroot.js';
import { debootstrap } from './template-debootstrap.js';
import { cleanTree, prepareTree } from './template-prepare.js';
import {
  BUILTIN_BUSYBOX_RECIPE,
  LEGACY_INIT,
  canonicalRecipe,
  templateDigest,
  type InitProfile,
  type TemplateProgress,
  type TemplateRecipe,
} from './template-recipe.js';
import type { EnsureResult } from './types.js';

export const BUILTIN_TEMPLATE = 'busybox';

/** What a node has cached for one template (meta.json). */
export interface TemplateInfo {
  name: string;
  rootfs: string;
  digest: string;
  source: TemplateRecipe['source']['kind'];
  init: InitProfile;
  /** Packed cache (tar.zst) size in bytes. */
  sizeBytes: number;
  /** Unpacked tree size on disk in bytes. */
  unpackedBytes: number;
  builtAt: string;
  buildMs: number;
  /** Built from the built-in busybox recipe (no declaration). */
  builtin: boolean;
}

export interface EnsureTemplateOptions {
  signal?: AbortSignal;
  onProgress?: (p: TemplateProgress) => void;
}

export interface TemplateCacheOptions {
  dir: string;
  busybox: string;
  log: Logger;
  /** Names of the VEs on this node whose mounted root uses the template (they pin its tree). */
  usedBy: (name: string) => Promise<string[]>;
  /** For tests: the node's apt sources. */
  aptSources?: string[];
}

const NAME_RE = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

async function exists(p: string): Promise<boolean> {
  return stat(p).then(
    () => true,
    () => false,
  );
}

/** Mount points at or under a directory, deepest first (from this process's mountinfo). */
async function mountsUnder(dir: string): Promise<string[]> {
  const text = await readFile('/proc/self/mountinfo', 'utf8').catch(() => '');
  const points = text
    .split('\n')
    .map((l) => (l.split(' ')[4] ?? '').replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))))
    .filter((m) => m === dir || m.startsWith(`${dir}/`));
  return points.sort((a, b) => b.length - a.length);
}

/** rm -rf that never descends into something mounted (a build step killed half-way). */
async function removeTree(dir: string): Promise<void> {
  for (const m of await mountsUnder(dir)) await run('umount', ['--lazy', m]).catch(() => undefined);
  await rm(dir, { recursive: true, force: true });
}

export class TemplateCache {
  private readonly tails = new Map<string, Promise<unknown>>();
  private readonly hashes = new Map<string, { key: string; hash: string }>();
  private readonly active = new Set<string>();

  constructor(private readonly opts: TemplateCacheOptions) {}

  rootfs(name: string): string {
    return join(this.opts.dir, name, 'rootfs');
  }

  /**
   * Makes sure the template is built from `recipe` (same digest) and returns its info. Without
   * a recipe: what is cached, whatever its recipe; the built-in busybox is built if missing.
   */
  ensure(name: string, recipe?: TemplateRecipe, opts: EnsureTemplateOptions = {}): Promise<TemplateInfo & { result: EnsureResult }> {
    if (!NAME_RE.test(name)) {
      return Promise.reject(new KvzError('Invalid', `template name ${JSON.stringify(name)} is not a valid resource name (lower-case letters, digits, '-', '.')`));
    }
    const prev = this.tails.get(name) ?? Promise.resolve();
    const next = prev.catch(() => undefined).then(() => this.doEnsure(name, recipe, opts));
    this.tails.set(name, next);
    return next.finally(() => {
      if (this.tails.get(name) === next) this.tails.delete(name);
    });
  }

  /** The cached template's info, or undefined. Reads meta.json (trees from before it: busybox defaults). */
  async info(name: string): Promise<TemplateInfo | undefined> {
    const dir = join(this.opts.dir, name);
    const meta = await readFile(join(dir, 'meta.json'), 'utf8').then(
      (t) => JSON.parse(t) as Omit<TemplateInfo, 'rootfs' | 'name'>,
      () => undefined,
    );
    if (meta) return { ...meta, name, rootfs: join(dir, 'rootfs') };
    if (!(await exists(join(dir, 'rootfs')))) return undefined;
    const digest = (await readFile(join(dir, 'digest'), 'utf8').catch(() => '')).trim();
    return { name, rootfs: join(dir, 'rootfs'), digest, source: 'busybox', init: LEGACY_INIT, sizeBytes: 0, unpackedBytes: 0, builtAt: '', buildMs: 0, builtin: name === BUILTIN_TEMPLATE };
  }

  private async doEnsure(name: string, given: TemplateRecipe | undefined, opts: EnsureTemplateOptions): Promise<TemplateInfo & { result: EnsureResult }> {
    const current = await this.info(name);
    let recipe = given;
    if (!recipe) {
      if (current && !(name === BUILTIN_TEMPLATE && current.builtin)) return { ...current, result: 'unchanged' };
      if (name !== BUILTIN_TEMPLATE) {
        throw new KvzError('NotFound', `template ${JSON.stringify(name)} is not built on this node and has no recipe: declare a VETemplate named ${JSON.stringify(name)} (kubectl apply, or kvz template import)`);
      }
      recipe = BUILTIN_BUSYBOX_RECIPE;
    }
    const digest = templateDigest(recipe, await this.inputs(recipe));
    if (current?.digest === digest && (await exists(current.rootfs))) return { ...current, result: 'unchanged' };

    await mkdir(this.opts.dir, { recursive: true });
    await this.sweep();
    const tmp = join(this.opts.dir, `.build-${name}-${randomBytes(4).toString('hex')}`);
    this.active.add(tmp);
    const started = Date.now();
    const report = (p: TemplateProgress) => opts.onProgress?.(p);
    try {
      const root = join(tmp, 'rootfs');
      await mkdir(tmp, { recursive: true });
      await this.buildSource(recipe, root, opts);
      if (recipe.preInstall) {
        report({ stage: 'Preparing', percent: 86, message: 'running preInstall' });
        await runInTree(root, recipe.preInstall, `template ${name}: spec.preInstall`, { signal: opts.signal });
      }
      report({ stage: 'Preparing', percent: 87, message: 'preparing the init' });
      const init = await prepareTree(root, recipe);
      if (recipe.postInstall) {
        report({ stage: 'Preparing', percent: 88, message: 'running postInstall' });
        await runInTree(root, recipe.postInstall, `template ${name}: spec.postInstall`, { signal: opts.signal });
      }
      await cleanTree(root);
      report({ stage: 'Packing', percent: 90, message: 'packing cache.tar.zst' });
      const [sizeBytes, unpackedBytes] = await Promise.all([packTree(root, join(tmp, 'cache.tar.zst'), opts.signal), treeBytes(root, opts.signal)]);
      const meta: Omit<TemplateInfo, 'name' | 'rootfs'> & { recipe: unknown } = {
        digest,
        source: recipe.source.kind,
        init,
        sizeBytes,
        unpackedBytes,
        builtAt: new Date().toISOString().replace(/\.\d{3}Z$/, 'Z'),
        buildMs: Date.now() - started,
        builtin: given === undefined,
        recipe: canonicalRecipe(recipe),
      };
      await writeFile(join(tmp, 'meta.json'), `${JSON.stringify(meta, null, 2)}\n`);
      await writeFile(join(tmp, 'digest'), `${digest}\n`);
      opts.signal?.throwIfAborted();
      const hadOld = await this.swapIn(name, tmp);
      this.opts.log.info({ template: name, digest: digest.slice(0, 12), init: init.flavor, sizeBytes, unpackedBytes, ms: meta.buildMs }, hadOld ? 'template rebuilt' : 'template built');
      report({ stage: 'Ready', percent: 100 });
      return { ...meta, name, rootfs: this.rootfs(name), result: hadOld ? 'updated' : 'created' };
    } catch (err) {
      await removeTree(tmp);
      throw err;
    } finally {
      this.active.delete(tmp);
    }
  }

  /** Content hashes of what the recipe reads besides itself (cached by inode, size and mtime). */
  private async inputs(recipe: TemplateRecipe): Promise<Record<string, string>> {
    if (recipe.source.kind === 'busybox') return { busybox: await this.fileHash(this.opts.busybox, 'busybox', 'install busybox-static') };
    if (recipe.source.kind === 'tarball') {
      const path = tarballPath(recipe.source.url);
      const hash = await this.fileHash(path, 'template tarball', 'copy the file to that path on this node');
      if (recipe.source.sha256 && recipe.source.sha256 !== hash) {
        throw new KvzError('Invalid', `template tarball ${path} has sha256 ${hash}, but spec.tarball.sha256 says ${recipe.source.sha256}: the file is not the one declared`);
      }
      return { tarball: hash };
    }
    return {};
  }

  private async fileHash(path: string, what: string, fix: string): Promise<string> {
    const st = await stat(path).catch((err: unknown) => {
      throw new KvzError(what === 'busybox' ? 'HostSetup' : 'Invalid', `${what} not found at ${path}: ${fix}`, { cause: err });
    });
    const key = `${st.ino}:${st.size}:${st.mtimeMs}`;
    const cached = this.hashes.get(path);
    if (cached?.key === key) return cached.hash;
    const hash = st.size < 64 << 20 ? await sha256File(path) : await sha256Stream(path);
    this.hashes.set(path, { key, hash });
    return hash;
  }

  private async buildSource(recipe: TemplateRecipe, root: string, opts: EnsureTemplateOptions): Promise<void> {
    const src = recipe.source;
    switch (src.kind) {
      case 'busybox':
        opts.onProgress?.({ stage: 'Installing', percent: 20, message: 'linking busybox applets' });
        await this.buildBusybox(busyboxRecipe(), root, opts.signal);
        return;
      case 'debootstrap':
        await debootstrap(src, root, { signal: opts.signal, onProgress: opts.onProgress, aptSources: this.opts.aptSources });
        return;
      case 'tarball':
        opts.onProgress?.({ stage: 'Installing', percent: 20, message: `unpacking ${tarballPath(src.url)}` });
        await mkdir(root, { mode: 0o755 });
        await extractTarball(tarballPath(src.url), root, opts.signal);
        return;
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
    const users = await this.opts.usedBy(name);
    if (users.length > 0) {
      this.opts.log.warn({ template: name, path: old, ves: users }, 'old template tree kept until its VEs stop using it');
    } else {
      await removeTree(old);
    }
    return true;
  }

  /** Removes leftovers: builds interrupted by a crash, old trees no mount uses any more. */
  async sweep(): Promise<void> {
    const entries = await readdir(this.opts.dir).catch(() => [] as string[]);
    for (const e of entries) {
      const p = join(this.opts.dir, e);
      if (e.startsWith('.build-') && !this.active.has(p)) await removeTree(p);
      // A VE mounted before a swap keeps the old tree as its lower layer (mountinfo still shows
      // the name it was mounted by), so an old tree goes only when no VE of the template is mounted.
      else if (e.startsWith('.old-')) {
        const name = /^\.old-(.*)-[0-9a-f]{8}$/.exec(e)?.[1];
        if (name && (await this.opts.usedBy(name)).length > 0) continue;
        await removeTree(p);
      }
    }
  }

  /** Removes a template's cache; refused while VEs on this node use it. */
  async remove(name: string): Promise<EnsureResult> {
    const final = join(this.opts.dir, name);
    if (!NAME_RE.test(name) || !(await exists(final))) return 'unchanged';
    const users = await this.opts.usedBy(name);
    if (users.length > 0) {
      throw new KvzError('Conflict', `template ${JSON.stringify(name)} is in use by ${users.join(', ')} on this node: delete or move those VEs first`, { details: { ves: users } });
    }
    const old = join(this.opts.dir, `.old-${name}-${randomBytes(4).toString('hex')}`);
    await rename(final, old);
    await removeTree(old);
    this.opts.log.info({ template: name }, 'template cache removed');
    return 'deleted';
  }

  /** Every template cached on this node. */
  async list(): Promise<TemplateInfo[]> {
    const out: TemplateInfo[] = [];
    for (const n of await this.names()) {
      const i = await this.info(n);
      if (i) out.push(i);
    }
    return out;
  }

  async names(): Promise<string[]> {
    const entries = await readdir(this.opts.dir, { withFileTypes: true }).catch(() => []);
    return entries.filter((e) => e.isDirectory() && !e.name.startsWith('.')).map((e) => e.name);
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
}
