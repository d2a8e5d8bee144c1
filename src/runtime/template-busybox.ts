// The built-in `busybox` template: the host's static busybox, its applet links, a minimal /etc
// and an init that behaves like a distribution's. The recipe is data, so its digest (with the
// busybox binary's hash) content-addresses the built tree: a change to either rebuilds it.

import { createHash } from 'node:crypto';
import { open, readFile } from 'node:fs/promises';
import { KvzError } from '../core/errors.js';

export const BUSYBOX_TEMPLATE = 'busybox';
export const RECIPE_VERSION = 1;

/**
 * PID 1 of a busybox VE. busybox's own init treats SIGTERM as "reboot" and always sleeps ~2 s
 * on the way down, so a small ash script is used instead: it reaps every child (ash's `wait`
 * collects any exited child, adopted orphans included), runs /etc/init.d/rcS at start and rcK
 * at shutdown, and on SIGTERM/SIGINT/SIGPWR (or 37 = SIGRTMIN+3, systemd's "halt") sends TERM
 * to every process, waits up to ~5 s for them (polling every 20 ms; each poll also reaps), KILLs the rest and exits.
 */
export const INIT_SCRIPT = `#!/bin/sh
# kubevz busybox init (PID 1): rcS at start, reap children, clean shutdown on TERM/INT/PWR.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
stopping=
shutdown() {
  [ -n "$stopping" ] && return
  stopping=1
  trap '' TERM INT PWR 37
  [ -x /etc/init.d/rcK ] && /etc/init.d/rcK
  kill -TERM -1 2>/dev/null
  i=0
  while kill -0 -1 2>/dev/null && [ $i -lt 250 ]; do sleep 0.02; i=$((i+1)); done
  kill -KILL -1 2>/dev/null
  exit 0
}
trap shutdown TERM INT PWR 37
trap '' HUP
[ -x /etc/init.d/rcS ] && /etc/init.d/rcS
while :; do
  sleep 2147483647 &
  wait
done
`;

const RC_S = `#!/bin/sh
# Start services: /etc/init.d/S??* in order.
for s in /etc/init.d/S??*; do
  [ -x "$s" ] && "$s" start
done
exit 0
`;

const RC_K = `#!/bin/sh
# Stop services: /etc/init.d/S??* in reverse order.
for s in $(ls -r /etc/init.d/S??* 2>/dev/null); do
  [ -x "$s" ] && "$s" stop
done
exit 0
`;

export interface RecipeFile {
  path: string;
  mode: number;
  content: string;
}

export interface BusyboxRecipe {
  version: number;
  dirs: { path: string; mode: number }[];
  files: RecipeFile[];
  symlinks: { path: string; target: string }[];
  /** Where the busybox binary goes; every applet links to it. */
  binary: string;
  /** Applets that are not linked because the recipe provides its own file. */
  overrides: string[];
}

export function busyboxRecipe(): BusyboxRecipe {
  return {
    version: RECIPE_VERSION,
    binary: 'bin/busybox',
    dirs: [
      { path: 'bin', mode: 0o755 }, { path: 'sbin', mode: 0o755 }, { path: 'usr/bin', mode: 0o755 },
      { path: 'usr/sbin', mode: 0o755 }, { path: 'usr/local/bin', mode: 0o755 }, { path: 'etc/init.d', mode: 0o755 },
      { path: 'proc', mode: 0o555 }, { path: 'sys', mode: 0o555 }, { path: 'dev', mode: 0o755 },
      { path: 'run', mode: 0o755 }, { path: 'tmp', mode: 0o1777 }, { path: 'root', mode: 0o700 },
      { path: 'home', mode: 0o755 }, { path: 'mnt', mode: 0o755 }, { path: 'var/log', mode: 0o755 },
      { path: 'var/tmp', mode: 0o1777 },
    ],
    files: [
      { path: 'sbin/init', mode: 0o755, content: INIT_SCRIPT },
      { path: 'etc/init.d/rcS', mode: 0o755, content: RC_S },
      { path: 'etc/init.d/rcK', mode: 0o755, content: RC_K },
      { path: 'etc/passwd', mode: 0o644, content: 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' },
      { path: 'etc/shadow', mode: 0o640, content: 'root:*:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n' },
      { path: 'etc/group', mode: 0o644, content: 'root:x:0:\ntty:x:5:\nnogroup:x:65534:\n' },
      { path: 'etc/hostname', mode: 0o644, content: 'localhost\n' },
      { path: 'etc/hosts', mode: 0o644, content: '127.0.0.1\tlocalhost\n' },
      { path: 'etc/resolv.conf', mode: 0o644, content: '' },
      { path: 'etc/shells', mode: 0o644, content: '/bin/sh\n/bin/ash\n' },
      {
        path: 'etc/profile',
        mode: 0o644,
        content: "export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\nexport PS1='\\u@\\h:\\w\\$ '\nexport HOME=${HOME:-/root}\n",
      },
      { path: 'etc/os-release', mode: 0o644, content: 'NAME="kubevz busybox"\nID=busybox\nPRETTY_NAME="kubevz busybox"\n' },
    ],
    symlinks: [{ path: 'var/run', target: '../run' }],
    overrides: ['sbin/init'],
  };
}

export async function sha256File(path: string): Promise<string> {
  return createHash('sha256').update(await readFile(path)).digest('hex');
}

export function recipeDigest(recipe: BusyboxRecipe, binarySha256: string): string {
  return createHash('sha256').update(JSON.stringify(recipe)).update('\0').update(binarySha256).digest('hex');
}

/** Refuses a dynamically linked busybox: the template has no libc. Reads the ELF program headers for PT_INTERP. */
export async function assertStaticElf(path: string): Promise<void> {
  const fh = await open(path, 'r').catch((err: unknown) => {
    throw new KvzError('HostSetup', `busybox not found at ${path}: install busybox-static`, { cause: err });
  });
  try {
    const head = Buffer.alloc(64);
    await fh.read(head, 0, 64, 0);
    if (head.readUInt32BE(0) !== 0x7f454c46 || head[4] !== 2) {
      throw new KvzError('HostSetup', `${path} is not a 64-bit ELF binary`);
    }
    const phoff = Number(head.readBigUInt64LE(0x20));
    const phentsize = head.readUInt16LE(0x36);
    const phnum = head.readUInt16LE(0x38);
    const ph = Buffer.alloc(phentsize * phnum);
    await fh.read(ph, 0, ph.length, phoff);
    for (let i = 0; i < phnum; i++) {
      if (ph.readUInt32LE(i * phentsize) === 3 /* PT_INTERP */) {
        throw new KvzError('HostSetup', `${path} is dynamically linked; the busybox template needs busybox-static`);
      }
    }
  } finally {
    await fh.close();
  }
}
