// Which block device holds a path: the device block I/O throttles must name. A partition is
// mapped to its whole disk (the kernel takes throttles only for whole disks); a path on a
// filesystem without a block device (tmpfs, overlay over tmpfs) has none.

import { existsSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { BlockDevice } from './limits.js';

/** Linux dev_t (as Node's stat gives it) → major:minor. */
export function splitDev(dev: number): BlockDevice {
  const d = BigInt(dev);
  const major = Number(((d >> 8n) & 0xfffn) | ((d >> 32n) & ~0xfffn));
  const minor = Number((d & 0xffn) | ((d >> 12n) & ~0xffn));
  return { major, minor };
}

export function blockDeviceOf(path: string, sysRoot = '/sys'): BlockDevice | undefined {
  let dev: BlockDevice;
  try {
    dev = splitDev(statSync(path).dev);
  } catch {
    return undefined;
  }
  const sys = join(sysRoot, 'dev', 'block', `${dev.major}:${dev.minor}`);
  if (!existsSync(sys)) return undefined;
  if (existsSync(join(sys, 'partition'))) {
    try {
      const parent = readFileSync(join(dirname(realpathSync(sys)), 'dev'), 'utf8').trim();
      const [major, minor] = parent.split(':').map(Number);
      if (major !== undefined && minor !== undefined) return { major, minor };
    } catch {
      return undefined;
    }
  }
  return dev;
}
