// The `kvz up --git …` flag set: a Git repository as a source of desired state next to (or
// instead of) the watched directory. Parsing and start-up live here so up.ts only wires them in.

import type * as k8s from '@kubernetes/client-node';
import type { Logger } from '../core/logger.js';
import { parseInterval, startGitSource, type GitSource } from '../sources/index.js';

export const UP_GIT_USAGE = `  --git URL|PATH      apply the manifests of a Git repository (file://, https://, or a local path) [none]
  --branch BRANCH     branch of --git                                      [main]
  --path DIR          directory inside the repository                      [.]
  --interval DURATION how often --git is fetched (30s, 5m, 1h)             [30s]
`;

/** The node:util parseArgs options of the flag set. */
export const UP_GIT_OPTIONS = {
  git: { type: 'string' },
  branch: { type: 'string', default: 'main' },
  path: { type: 'string', default: '.' },
  interval: { type: 'string', default: '30s' },
} as const;

export interface UpGitOptions {
  url: string;
  branch: string;
  path: string;
  intervalMs: number;
}

/** undefined when --git was not given; throws with the flag's name when a value is wrong. */
export function parseUpGit(values: { git?: string; branch?: string; path?: string; interval?: string }): UpGitOptions | undefined {
  if (!values.git) return undefined;
  return { url: values.git, branch: values.branch ?? 'main', path: values.path ?? '.', intervalMs: parseInterval(values.interval ?? '30s', '--interval') };
}

export async function startUpGit(o: UpGitOptions, kc: k8s.KubeConfig, stateDir: string, log: Logger): Promise<GitSource> {
  return startGitSource({ ...o, stateDir, kubeconfig: kc, log: log.child({ component: 'git-source' }) });
}

/** The banner line: where the source is and which commit is applied. */
export function gitBannerLine(src: GitSource): string {
  const st = src.status();
  const at = st.applied ? `commit ${st.applied.commit.slice(0, 12)} (${st.applied.subject})` : st.rejected ? `commit ${st.rejected.commit.slice(0, 12)} rejected, see the log` : `not synced yet: ${st.error ?? 'see the log'}`;
  return `  git:         ${st.url} branch ${st.branch} path ${st.path}: ${at}`;
}
