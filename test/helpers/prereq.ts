// Prerequisite checks for tests that need root or host binaries. On a developer's laptop a
// missing prerequisite skips the test with the reason; under CI (CI=true) it fails it.

import { execFileSync } from 'node:child_process';
import type { TestContext } from 'node:test';

export const inCI = process.env.CI === 'true';

export function missingPrereqs(opts: { root?: boolean; binaries?: string[] }): string[] {
  const missing: string[] = [];
  if (opts.root && process.getuid?.() !== 0) missing.push('root');
  for (const bin of opts.binaries ?? []) {
    try {
      execFileSync('sh', ['-c', `command -v ${bin}`], { stdio: 'ignore' });
    } catch {
      missing.push(bin);
    }
  }
  return missing;
}

/** Returns true when the test may run; otherwise skips it (or, under CI, throws). */
export function requirePrereqs(t: TestContext, opts: { root?: boolean; binaries?: string[] }): boolean {
  const missing = missingPrereqs(opts);
  if (missing.length === 0) return true;
  const reason = `needs ${missing.join(', ')}`;
  if (inCI) throw new Error(`prerequisite missing under CI: ${reason}`);
  t.skip(reason);
  return false;
}

/** A short unique suffix for names of host objects a test creates. */
export function uniqueSuffix(): string {
  return `${process.pid.toString(36)}${Math.floor(Math.random() * 36 ** 4).toString(36)}`;
}
