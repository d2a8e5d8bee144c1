// Runs real kubectl binaries against a test API server: a temporary HOME and cache dir per
// runner (kubectl caches discovery and OpenAPI per host:port), background runs for `-w` and
// `wait`, and, for a version matrix, the kubectl.1.NN binaries installed next to the dispatcher
// plus older ones (Debian's kubectl 1.20, unpacked by hack/install-deps.sh).

import { execFile, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, realpathSync } from 'node:fs';
import { dirname, join } from 'node:path';

/** Where hack/install-deps.sh unpacks Debian's kubernetes-client (kubectl 1.20) without installing it. */
export const OLD_KUBECTL = '/var/cache/kubevz/kubectl-1.20/kubectl';

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

export interface Background {
  /** Output so far. */
  stdout(): string;
  /** Resolves when the output (or, with -v=6 request logs, stderr) matches; rejects after timeoutMs. */
  waitFor(re: RegExp, timeoutMs?: number, stream?: 'stdout' | 'stderr'): Promise<void>;
  done: Promise<Run>;
  /** Kills the process by its PID. */
  stop(): void;
}

export class Kubectl {
  readonly env: NodeJS.ProcessEnv;

  constructor(
    private readonly dir: string,
    kubeconfig: string,
    readonly bin = 'kubectl',
    extraEnv: NodeJS.ProcessEnv = {},
  ) {
    mkdirSync(join(dir, 'home'), { recursive: true });
    this.env = { ...process.env, HOME: join(dir, 'home'), KUBECONFIG: kubeconfig, KUBECTL_EXTERNAL_DIFF: '', ...extraEnv };
  }

  private args(a: string[]): string[] {
    return [...a, `--cache-dir=${join(this.dir, 'cache')}`];
  }

  run(args: string[], timeoutMs = 60_000, env: NodeJS.ProcessEnv = {}): Promise<Run> {
    return new Promise((resolve) => {
      execFile(this.bin, this.args(args), { env: { ...this.env, ...env }, timeout: timeoutMs }, (err, stdout, stderr) => {
        resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
      });
    });
  }

  background(args: string[]): Background {
    const p = spawn(this.bin, this.args(args), { env: this.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let waiters: (() => void)[] = [];
    const wake = () => {
      const w = waiters;
      waiters = [];
      w.forEach((f) => f());
    };
    p.stdout.on('data', (c: Buffer) => {
      out += c.toString();
      wake();
    });
    p.stderr.on('data', (c: Buffer) => {
      err += c.toString();
      wake();
    });
    const done = new Promise<Run>((resolve) => p.on('close', (code) => resolve({ code: code ?? 1, stdout: out, stderr: err })));
    return {
      stdout: () => out,
      done,
      waitFor(re, timeoutMs = 15_000, stream = 'stdout') {
        return new Promise((resolve, reject) => {
          const t = setTimeout(() => reject(new Error(`kubectl ${args.join(' ')}: no ${String(re)} in ${stream} ${JSON.stringify(out)} (stderr ${JSON.stringify(err)})`)), timeoutMs);
          const check = () => {
            if (re.test(stream === 'stdout' ? out : err)) {
              clearTimeout(t);
              resolve();
            } else waiters.push(check);
          };
          check();
        });
      },
      stop() {
        if (p.exitCode === null && p.pid !== undefined) process.kill(p.pid, 'SIGTERM');
      },
    };
  }
}

/** `kubectl.1.NN` binaries next to the real path of the `kubectl` on PATH, oldest first. */
export function kubectlMinors(): { minor: number; bin: string }[] {
  let which: string;
  try {
    which = execFileSync('sh', ['-c', 'command -v kubectl'], { encoding: 'utf8' }).trim();
  } catch {
    return [];
  }
  if (!which || !existsSync(which)) return [];
  const binDir = dirname(realpathSync(which));
  return readdirSync(binDir)
    .map((f) => /^kubectl\.1\.(\d+)$/.exec(f))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => ({ minor: Number(m[1]), bin: join(binDir, m[0]) }))
    .sort((a, b) => a.minor - b.minor);
}

/**
 * Extra kubectl binaries for the matrix: KVZ_EXTRA_KUBECTL (colon-separated paths; hack/test.sh
 * sets it), or when that is unset the kubectl 1.20 hack/install-deps.sh unpacked, if it is there.
 */
export function extraKubectls(env: NodeJS.ProcessEnv = process.env): string[] {
  const listed = env.KVZ_EXTRA_KUBECTL;
  if (listed === undefined) return existsSync(OLD_KUBECTL) ? [OLD_KUBECTL] : [];
  return [...new Set(listed.split(':').filter((p) => p !== ''))];
}

/** The client's minor version from `kubectl version --client -o json` (every kubectl since 1.11 has it). */
export function clientMinor(bin: string): number | undefined {
  try {
    const out = execFileSync(bin, ['version', '--client', '-o', 'json'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 20_000 });
    const minor = Number.parseInt((JSON.parse(out) as { clientVersion?: { minor?: string } }).clientVersion?.minor ?? '', 10);
    return Number.isFinite(minor) ? minor : undefined;
  } catch {
    return undefined;
  }
}
