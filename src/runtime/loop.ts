// Loop devices backing a VE's disk image, found by backing file (`losetup -j`), so an agent
// restart re-uses what is attached instead of attaching twice, and destroy detaches leftovers.

import { run } from './command.js';

/** `losetup -j FILE` output → device paths ("/dev/loop3: [65024]:123 (/path/img)"). */
export function parseLosetupJ(out: string): string[] {
  return out
    .split('\n')
    .map((l) => /^(\/dev\/loop\d+):/.exec(l.trim())?.[1])
    .filter((d): d is string => d !== undefined);
}

/** Loop devices whose backing file is `file`. */
export async function loopDevicesFor(file: string, signal?: AbortSignal): Promise<string[]> {
  const res = await run('losetup', ['-j', file], { signal });
  return parseLosetupJ(res.stdout);
}

/**
 * Detaches every loop device backed by `file`; a device already gone is fine. Returns once none
 * is listed any more (or after ~2 s): an autoclear device whose filesystem was just unmounted is
 * released by the kernel a moment later, and callers (and checks) expect it gone on return.
 */
export async function detachLoops(file: string, signal?: AbortSignal): Promise<string[]> {
  const devs = await loopDevicesFor(file, signal);
  for (const dev of devs) {
    const res = await run('losetup', ['-d', dev], { signal, allowFailure: true });
    if (res.exitCode !== 0 && !/No such device/i.test(res.stderr)) {
      await run('losetup', ['-d', dev], { signal });
    }
  }
  for (let i = 0; devs.length && i < 100; i++) {
    if (!(await loopDevicesFor(file, signal)).length) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  return devs;
}

/** Tells the loop driver that the backing file grew (`losetup -c`). */
export async function refreshLoopCapacity(dev: string, signal?: AbortSignal): Promise<void> {
  await run('losetup', ['-c', dev], { signal });
}
