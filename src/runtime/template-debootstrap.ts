// The `debootstrap` recipe: a Debian tree from the node's own apt mirror (read from the host's
// apt sources, so no mirror host name lives in kubevz), run in a throw-away mount + pid
// namespace, with progress estimated from debootstrap's "I:" lines and the log's tail in the
// error when it fails.

import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { KvzError } from '../core/errors.js';
import { isolated, runStreaming } from './template-chroot.js';
import type { TemplateProgress, TemplateSource } from './template-recipe.js';

type DebootstrapSource = Extract<TemplateSource, { kind: 'debootstrap' }>;

export const APT_SOURCES = ['/etc/apt/sources.list.d/debian.sources', '/etc/apt/sources.list'];

/**
 * The Debian archive URI from apt sources: deb822 stanzas (`Types: deb`, `URIs: ...`) or
 * one-line `deb [opts] URI suite comps`. Security and updates-only archives are skipped.
 */
export function mirrorFromAptSources(text: string): string | undefined {
  const isMain = (uri: string, suites: string[]) =>
    !/security/.test(uri) && suites.length > 0 && suites.some((s) => !/-(security|updates|backports)$/.test(s) && !/\/updates$/.test(s));
  if (/^\s*(Types|URIs)\s*:/im.test(text)) {
    for (const stanza of text.split(/\n\s*\n/)) {
      const field = (name: string) => new RegExp(`^${name}\\s*:\\s*(.*)$`, 'im').exec(stanza)?.[1]?.trim().split(/\s+/) ?? [];
      if (/^\s*Enabled\s*:\s*no/im.test(stanza)) continue;
      if (!field('Types').includes('deb')) continue;
      const uri = field('URIs')[0];
      if (uri && isMain(uri, field('Suites'))) return uri;
    }
    return undefined;
  }
  for (const raw of text.split('\n')) {
    const line = raw.replace(/#.*/, '').trim();
    const m = /^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)/.exec(line);
    if (m?.[1] && m[2] && isMain(m[1], [m[2]])) return m[1];
  }
  return undefined;
}

export async function nodeMirror(files = APT_SOURCES): Promise<string> {
  for (const f of files) {
    const text = await readFile(f, 'utf8').catch(() => undefined);
    const uri = text === undefined ? undefined : mirrorFromAptSources(text);
    if (uri) return uri;
  }
  throw new KvzError('HostSetup', `no Debian apt source found in ${files.join(' or ')}; set spec.debootstrap.mirror in the VETemplate`);
}

export function debootstrapArgs(src: DebootstrapSource, target: string, mirror: string): string[] {
  const args = [`--variant=${src.variant ?? 'minbase'}`, `--components=${(src.components?.length ? src.components : ['main']).join(',')}`];
  if (args[0] === '--variant=default') args.shift();
  if (src.include?.length) args.push(`--include=${src.include.join(',')}`);
  if (src.exclude?.length) args.push(`--exclude=${src.exclude.join(',')}`);
  args.push(src.suite, target, mirror);
  return args;
}

/**
 * Progress from debootstrap's "I:" lines. Percentages are estimates over the whole build (the
 * caller's preparation and packing take the last ~15%): download to 45, extract and unpack to
 * 64, configure to 85.
 */
export class DebootstrapProgress {
  private retrieved = 0;
  private extracted = 0;
  private unpacked = 0;
  private configured = 0;
  private last: TemplateProgress = { stage: 'Downloading', percent: 1, message: 'starting debootstrap' };

  /** Percent within [from, to] for n of the packages retrieved (known once downloads are done). */
  private span(from: number, to: number, n: number): number {
    return from + Math.round(((to - from) * Math.min(n, this.retrieved)) / Math.max(this.retrieved, 1));
  }

  /** Returns the new progress when the line moved it, else undefined. */
  line(l: string): TemplateProgress | undefined {
    const m = /^I: (.*)$/.exec(l.trim());
    if (!m?.[1]) return undefined;
    const msg = m[1];
    let next: TemplateProgress | undefined;
    if (/^Retrieving (InRelease|Release|Packages)/.test(msg)) next = { stage: 'Downloading', percent: 2, message: msg };
    else if (/^Resolving dependencies|^Checking component/.test(msg)) next = { stage: 'Downloading', percent: 4, message: msg };
    else if (/^Retrieving /.test(msg)) {
      // The package count is not printed up front; a minbase with an init is ~120 packages.
      this.retrieved++;
      next = { stage: 'Downloading', percent: 5 + Math.round((40 * this.retrieved) / Math.max(120, this.retrieved + 5)), message: msg };
    } else if (/^Extracting /.test(msg)) next = { stage: 'Installing', percent: this.span(46, 55, ++this.extracted), message: msg };
    else if (/^Unpacking /.test(msg)) next = { stage: 'Installing', percent: this.span(56, 64, ++this.unpacked), message: msg };
    else if (/^Configuring /.test(msg)) next = { stage: 'Installing', percent: this.span(65, 84, ++this.configured), message: msg };
    else if (/^Base system installed/.test(msg)) next = { stage: 'Installing', percent: 85, message: msg };
    if (!next) return undefined;
    if (next.percent < this.last.percent) next.percent = this.last.percent;
    this.last = next;
    return next;
  }
}

export interface DebootstrapOptions {
  signal?: AbortSignal;
  onProgress?: (p: TemplateProgress) => void;
  /** For tests: where the node's apt sources are. */
  aptSources?: string[];
}

/** Runs debootstrap into `target` (which must not exist yet or be empty). */
export async function debootstrap(src: DebootstrapSource, target: string, opts: DebootstrapOptions = {}): Promise<void> {
  const mirror = src.mirror || (await nodeMirror(opts.aptSources));
  const progress = new DebootstrapProgress();
  const { cmd, args } = isolated(['debootstrap', ...debootstrapArgs(src, target, mirror)]);
  opts.onProgress?.({ stage: 'Downloading', percent: 1, message: `debootstrap ${src.suite} from ${mirror}` });
  const res = await runStreaming(cmd, args, {
    signal: opts.signal,
    env: { DEBIAN_FRONTEND: 'noninteractive', LC_ALL: 'C' },
    onLine: (l) => {
      const p = progress.line(l);
      if (p) opts.onProgress?.(p);
    },
  });
  if (res.exitCode === 0) return;
  // debootstrap's own log says more than its stdout (which package, which maintainer script).
  const log = await readFile(join(target, 'debootstrap', 'debootstrap.log'), 'utf8').catch(() => '');
  const logTail = log.trim().split('\n').slice(-15).join('\n');
  throw new KvzError(
    'CommandFailed',
    `debootstrap ${src.suite} from ${mirror} failed (exit ${res.exitCode}); check spec.debootstrap (suite, include) and the mirror. Output:\n${res.tail.slice(-10).join('\n')}${logTail ? `\ndebootstrap.log:\n${logTail}` : ''}`,
    { details: { exitCode: res.exitCode, mirror } },
  );
}
