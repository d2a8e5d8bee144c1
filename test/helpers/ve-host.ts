// A real host runtime for integration tests of one file: its own state dir, bridge and subnet
// (unique per process), a config builder, exec with captured output, and host-side probes
// (loop devices, mounts) to check that nothing leaks. `close()` removes everything.

import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { promisify } from 'node:util';
import { silentLogger } from '../../src/core/logger.js';
import { createRuntime, teardownNode, type VEConfig, type VERuntime } from '../../src/runtime/index.js';
import { uniqueSuffix } from './prereq.js';

export const execFileP = promisify(execFile);

/** Runs a command inside a running VE with stdout and stderr captured together. */
export async function execCapture(rt: VERuntime, uid: string, argv: string[]): Promise<{ code: number; out: string }> {
  const out = new PassThrough();
  const chunks: Buffer[] = [];
  out.on('data', (c: Buffer) => chunks.push(c));
  const code = await rt.exec(uid, argv, { tty: false, stdin: 'ignore', stdout: out, stderr: out });
  return { code, out: Buffer.concat(chunks).toString('utf8') };
}

export interface VEHost {
  rt: VERuntime;
  stateDir: string;
  suffix: string;
  /** The node bridge and its subnet, for a second runtime on the same state dir. */
  bridge: { name: string; subnet: string };
  /** A config with a fresh uid and the next free address of this host's subnet. */
  config(name: string, extra?: Partial<VEConfig>): VEConfig;
  execOut(uid: string, argv: string[]): Promise<{ code: number; out: string }>;
  /** Loop devices whose backing file lies under the state dir. */
  loopsUnderStateDir(): Promise<string[]>;
  /** Mount points under the state dir. */
  mountsUnderStateDir(): string[];
  destroyAll(): Promise<void>;
  close(): Promise<void>;
}

export function makeVEHost(prefix: string, octet: number): VEHost {
  const suffix = uniqueSuffix();
  const stateDir = mkdtempSync(join(tmpdir(), `kvz-${prefix}-`));
  const bridge = `kvz${prefix}${suffix}`.slice(0, 15);
  const net = (process.pid % 200) + 20;
  const subnet = `10.${octet}.${net}.0/24`;
  const rt = createRuntime({ stateDir, bridge: { name: bridge, subnet }, log: silentLogger });
  const uids = new Set<string>();
  let nextHost = 10;
  const host: VEHost = {
    rt,
    stateDir,
    suffix,
    bridge: { name: bridge, subnet },
    config(name, extra = {}) {
      const uid = randomUUID();
      uids.add(uid);
      return {
        uid,
        name: `test/${name}-${suffix}`,
        hostname: `${name}-${suffix}`,
        template: 'busybox',
        addresses: [`10.${octet}.${net}.${nextHost++}/24`],
        limits: { pids: 100 },
        ...extra,
      };
    },
    execOut: (uid, argv) => execCapture(rt, uid, argv),
    async loopsUnderStateDir() {
      const { stdout } = await execFileP('losetup', ['-l', '-n', '-O', 'NAME,BACK-FILE']);
      return stdout
        .split('\n')
        .filter((l) => l.includes(stateDir))
        .map((l) => l.trim());
    },
    mountsUnderStateDir() {
      return readFileSync('/proc/self/mountinfo', 'utf8')
        .split('\n')
        .map((l) => l.split(' ')[4] ?? '')
        .filter((m) => m.startsWith(stateDir));
    },
    async destroyAll() {
      for (const uid of uids) await rt.destroy(uid, { timeoutMs: 5_000 }).catch(() => undefined);
    },
    async close() {
      await host.destroyAll();
      // Whatever a failed test left: unmount (deepest first) and detach before removing files.
      for (const m of host.mountsUnderStateDir().reverse()) await execFileP('umount', ['-l', m]).catch(() => undefined);
      for (const l of await host.loopsUnderStateDir()) await execFileP('losetup', ['-d', l.split(/\s+/)[0] ?? '']).catch(() => undefined);
      await teardownNode({ bridge });
      rmSync(stateDir, { recursive: true, force: true });
    },
  };
  return host;
}
