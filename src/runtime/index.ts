// Public face of src/runtime: the host side of kubevz (templates, rootfs, OCI bundle, runc,
// cgroups, CNI). Knows nothing of Kubernetes.

import { HostRuntime, type HostRuntimeOptions } from './runtime.js';
import type { RuntimeOptions, VERuntime } from './types.js';

export * from './types.js';
export { teardownNode } from './runtime.js';
export { nodeBridgeAttachment, MANAGED_BRIDGE_ALIAS, type NodeBridgeAttachment } from './node-bridge.js';
export type { HostRuntimeOptions } from './runtime.js';
export { containerId, netnsName, hostVethName, macAddress, cgroupPath } from './names.js';
export { canonicalIp, familyOf, formatIp, nthAddress, parseCidrAny, parseIp, subnetContains, subnetSize, type IpFamily } from './network-addr.js';
export { resolvConf } from './network-files.js';
export type { NetworkMode } from './cni.js';
export {
  sameLimits,
  normalizeLimits,
  limitsDiff,
  limitsEqual,
  parseCpuset,
  formatCpuset,
  sharesToWeight,
  RESTART_LIMIT_FIELDS,
  LIVE_LIMIT_FIELDS,
  type LimitField,
} from './limits.js';
export { hostInfo } from './host-info.js';
export { stopNodeServices, LXCFS_FILES, LXCFS_FLAGS } from './lxcfs.js';
export { blockDigests, changedBlocks, dirDigest, readBlocks, writeBlock, zeroBlockDigest, DEFAULT_BLOCK_SIZE } from './disk-sync.js';
export { checkpointFeature, migrationScratchDir, removeKerndatCache, removeMigrationDir, removeMigrationScratch } from './checkpoint.js';
export { UsageReader } from './usage.js';
export { CgroupV1 } from './cgroup-v1.js';
export { CgroupV2 } from './cgroup-v2.js';
export { createCgroupReader, type CgroupReader } from './cgroup.js';
export { detectCgroupVersion, type CgroupVersion } from './cgroup.js';
export { BUSYBOX_TEMPLATE } from './template-busybox.js';
export type { EnsureTemplateOptions, TemplateInfo } from './templates.js';
export {
  templateDigest,
  canonicalRecipe,
  initProfile,
  type InitFlavor,
  type InitProfile,
  type TemplateProgress,
  type TemplateRecipe,
  type TemplateSource,
  type TemplateStage,
} from './template-recipe.js';

/** The runtime for this host. Optional binaries/paths (HostRuntimeOptions) are for tests. */
export function createRuntime(opts: RuntimeOptions | HostRuntimeOptions): VERuntime {
  return new HostRuntime(opts);
}
