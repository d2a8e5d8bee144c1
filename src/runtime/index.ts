// Public face of src/runtime: the host side of kubevz (templates, rootfs, OCI bundle, runc,
// cgroups, CNI). Knows nothing of Kubernetes.

import { HostRuntime, type HostRuntimeOptions } from './runtime.js';
import type { RuntimeOptions, VERuntime } from './types.js';

export * from './types.js';
export { teardownNode } from './runtime.js';
export type { HostRuntimeOptions } from './runtime.js';
export { containerId, netnsName, hostVethName, macAddress, cgroupPath } from './names.js';
export { sameLimits, normalizeLimits } from './limits.js';
export { detectCgroupVersion, type CgroupVersion } from './cgroup.js';
export { BUSYBOX_TEMPLATE } from './template-busybox.js';

/** The runtime for this host. Optional binaries/paths (HostRuntimeOptions) are for tests. */
export function createRuntime(opts: RuntimeOptions | HostRuntimeOptions): VERuntime {
  return new HostRuntime(opts);
}
