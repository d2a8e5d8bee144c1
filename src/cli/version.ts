// `kvz version`: the package version, read from package.json next to the built tree.

import { readFileSync } from 'node:fs';

export function kvzVersion(): string {
  try {
    // dist/src/cli/version.js → the repository's package.json
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version?: string };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

export function versionText(): string {
  return `kvz version ${kvzVersion()} (node ${process.version}, ${process.platform}/${process.arch})\n`;
}
