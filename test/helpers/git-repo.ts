// A throwaway local Git repository for tests of the Git source: commit files, remove files,
// all offline with the `git` CLI (identity set per command, no global config touched).

import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

export interface TestRepo {
  dir: string;
  /** `file://` URL of the repository. */
  url: string;
  /** Writes (or, with null, removes) files and commits; returns the commit id. */
  commit(files: Record<string, string | null>, message: string): string;
  remove(): void;
}

export function makeRepo(branch = 'main'): TestRepo {
  const dir = mkdtempSync(join(tmpdir(), 'kvz-git-'));
  const git = (...args: string[]) =>
    execFileSync('git', ['-C', dir, '-c', 'user.name=kvz test', '-c', 'user.email=test@kubevz.invalid', '-c', 'commit.gpgsign=false', ...args], { encoding: 'utf8' }).trim();
  git('init', '--quiet', `--initial-branch=${branch}`);
  return {
    dir,
    url: `file://${dir}`,
    commit(files, message) {
      for (const [path, content] of Object.entries(files)) {
        const abs = join(dir, path);
        if (content === null) git('rm', '--quiet', path);
        else {
          mkdirSync(dirname(abs), { recursive: true });
          writeFileSync(abs, content);
          git('add', path);
        }
      }
      git('commit', '--quiet', '--allow-empty', '-m', message);
      return git('rev-parse', 'HEAD');
    },
    remove() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
