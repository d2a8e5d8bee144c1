// Template recipes as the runtime sees them (plain values, no Kubernetes), their canonical form
// and digest, and the init profile a template's VEs boot with. The digest content-addresses a
// template cache: the same recipe (and the same inputs: busybox binary, tarball bytes) gives the
// same digest on every node; anything that changes the tree changes it.

import { createHash } from 'node:crypto';

/** Bumped when kubevz's own preparation of trees changes, so every cache is rebuilt once. */
export const PREPARE_VERSION = 2;

export type InitFlavor = 'systemd' | 'sysvinit' | 'busybox' | 'other';

export type TemplateSource =
  | { kind: 'busybox' }
  | {
      kind: 'debootstrap';
      suite: string;
      variant?: string;
      components?: string[];
      include?: string[];
      exclude?: string[];
      /** Mirror URI; undefined = the node's own Debian apt source. A transport detail: not in the digest. */
      mirror?: string;
    }
  | { kind: 'tarball'; /** absolute path or file:// URL */ url: string; sha256?: string };

export interface TemplateRecipe {
  source: TemplateSource;
  /** Shell script run in the new tree (chroot) before kubevz prepares its init. */
  preInstall?: string;
  /** Shell script run in the new tree (chroot) after preparation, before clean-up and packing. */
  postInstall?: string;
  /** Overrides of what is detected from the tree. */
  init?: { flavor?: InitFlavor | 'auto'; command?: string[]; stopSignal?: string };
}

/** How a template's VEs boot and stop; written into the cache's meta.json, read by the runtime. */
export interface InitProfile {
  flavor: InitFlavor;
  /** PID 1's argv. */
  command: string[];
  /** Extra process environment for init (KEY=VALUE). */
  env: string[];
  /** What `runc kill` sends for a graceful stop (a name runc knows, or a number). */
  stopSignal: string;
}

export type TemplateStage = 'Pending' | 'Downloading' | 'Installing' | 'Preparing' | 'Packing' | 'Ready' | 'Failed';

export interface TemplateProgress {
  stage: TemplateStage;
  /** 0–100, an estimate. */
  percent: number;
  message?: string;
}

export const BUILTIN_BUSYBOX_RECIPE: TemplateRecipe = { source: { kind: 'busybox' } };

/** Defaults filled in, lists sorted and de-duplicated, transport details dropped: equal recipes hash equal. */
export function canonicalRecipe(r: TemplateRecipe): Record<string, unknown> {
  const sortedSet = (xs: string[] | undefined) => [...new Set(xs ?? [])].sort();
  let source: Record<string, unknown>;
  switch (r.source.kind) {
    case 'busybox':
      source = { kind: 'busybox' };
      break;
    case 'debootstrap':
      source = {
        kind: 'debootstrap',
        suite: r.source.suite,
        variant: r.source.variant ?? 'minbase',
        components: r.source.components?.length ? sortedSet(r.source.components) : ['main'],
        include: sortedSet(r.source.include),
        exclude: sortedSet(r.source.exclude),
      };
      break;
    case 'tarball':
      // The file's bytes are hashed separately; its path is where it is, not what it is.
      source = { kind: 'tarball' };
      break;
  }
  const out: Record<string, unknown> = { source };
  if (r.preInstall) out.preInstall = r.preInstall;
  if (r.postInstall) out.postInstall = r.postInstall;
  const init: Record<string, unknown> = {};
  if (r.init?.flavor && r.init.flavor !== 'auto') init.flavor = r.init.flavor;
  if (r.init?.command?.length) init.command = r.init.command;
  if (r.init?.stopSignal) init.stopSignal = r.init.stopSignal;
  if (Object.keys(init).length) out.init = init;
  return out;
}

function stableJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(stableJson).join(',')}]`;
  if (v && typeof v === 'object') {
    return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${stableJson((v as Record<string, unknown>)[k])}`).join(',')}}`;
  }
  return JSON.stringify(v);
}

/**
 * sha256 over the canonical recipe, kubevz's preparation version and the content hashes of
 * the recipe's inputs (the busybox binary, the tarball file).
 */
export function templateDigest(r: TemplateRecipe, inputs: Record<string, string> = {}): string {
  return createHash('sha256')
    .update(stableJson({ prepare: PREPARE_VERSION, recipe: canonicalRecipe(r), inputs }))
    .digest('hex');
}

/** The profile for a flavor; explicit recipe settings win. */
export function initProfile(flavor: InitFlavor, override?: TemplateRecipe['init']): InitProfile {
  const base: InitProfile =
    flavor === 'systemd'
      ? // systemd halts on SIGRTMIN+3 (runc 1.1 does not know the name, so the number).
        { flavor, command: ['/sbin/init'], env: ['container=oci'], stopSignal: '37' }
      : flavor === 'sysvinit'
        ? // SIGPWR runs the inittab powerwait entry, which kubevz points at `shutdown -h now`.
          { flavor, command: ['/sbin/init'], env: [], stopSignal: 'PWR' }
        : { flavor, command: ['/sbin/init'], env: [], stopSignal: 'TERM' };
  if (override?.command?.length) base.command = [...override.command];
  if (override?.stopSignal) base.stopSignal = override.stopSignal;
  return base;
}

/** The profile of a cache built before meta.json existed (the busybox tree of the first issue). */
export const LEGACY_INIT: InitProfile = { flavor: 'busybox', command: ['/sbin/init'], env: [], stopSignal: 'TERM' };
