// The runtime's view of a VE's cgroup, behind one small interface: v1 today, v2 in a later
// issue. Implementations take their root and the VE's cgroup path as parameters so tests run
// on fixture directory trees.

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { KvzError } from '../core/errors.js';
import type { VELimits } from './types.js';
import { CgroupV1 } from './cgroup-v1.js';

export type CgroupVersion = 'v1' | 'v2';

export interface CgroupReader {
  readonly version: CgroupVersion;
  /** The limit files as the kernel holds them; unlimited values come back undefined. */
  readLimits(cgroupPath: string): Promise<VELimits>;
  /** Whether any controller still has a directory for this cgroup path. */
  exists(cgroupPath: string): Promise<boolean>;
}

export function detectCgroupVersion(root = '/sys/fs/cgroup'): CgroupVersion {
  return existsSync(join(root, 'cgroup.controllers')) ? 'v2' : 'v1';
}

export function createCgroupReader(root = '/sys/fs/cgroup'): CgroupReader {
  const version = detectCgroupVersion(root);
  if (version === 'v1') return new CgroupV1(root);
  return {
    version,
    async readLimits() {
      throw new KvzError('Unavailable', 'reading cgroup v2 limits is not implemented yet');
    },
    async exists(cgroupPath: string) {
      return existsSync(join(root, cgroupPath));
    },
  };
}
