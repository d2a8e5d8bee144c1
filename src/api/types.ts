// TypeScript mirror of crds/*.yaml (the schemas are the source of truth; keep both in step).

export const GROUP = 'kubevz.io';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;

/** Label the controller sets on a scheduled VE; node agents select on it. */
export const NODE_LABEL = 'kubevz.io/node';
/** Finalizer the node agent holds while a VE has state on its host. */
export const VE_FINALIZER = 'kubevz.io/host-cleanup';
/** Name of the template that every node can build without a declaration. */
export const BUILTIN_BUSYBOX_TEMPLATE = 'busybox';

export interface ObjectMeta {
  name?: string;
  generateName?: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  deletionGracePeriodSeconds?: number;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  finalizers?: string[];
  ownerReferences?: unknown[];
  managedFields?: unknown[];
}

export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata?: ObjectMeta;
  [k: string]: unknown;
}

export type ConditionStatus = 'True' | 'False' | 'Unknown';

export interface Condition {
  type: string;
  status: ConditionStatus;
  observedGeneration?: number;
  lastTransitionTime: string;
  reason: string;
  message: string;
}

export type PowerState = 'Running' | 'Stopped' | 'Suspended';

export type VEPhase = 'Pending' | 'Creating' | 'Running' | 'Stopped' | 'Suspended' | 'Migrating' | 'Failed' | 'Terminating';

export type Quantity = string | number;

export interface VEResources {
  cpu?: { units?: number; limit?: Quantity; cpus?: number; cpuset?: string };
  memory?: { limit?: Quantity; swap?: Quantity; guarantee?: Quantity };
  processes?: number;
  openFiles?: number;
  disk?: {
    space?: Quantity;
    inodes?: number;
    quotaUgidLimit?: number;
    ioWeight?: number;
    readBps?: Quantity;
    writeBps?: Quantity;
    readIops?: number;
    writeIops?: number;
  };
}

export interface VESpec {
  template: string;
  powerState?: PowerState;
  hostname?: string;
  nodeName?: string;
  nodeSelector?: Record<string, string>;
  stopTimeoutSeconds?: number;
  cloneFrom?: string;
  onBoot?: boolean;
  /** What happens when init exits on its own (default Always, with back-off). */
  restartPolicy?: 'Always' | 'OnFailure' | 'Never';
  resources?: VEResources;
  network?: { mode?: 'bridged' | 'routed'; addresses?: string[]; nameservers?: string[]; searchDomains?: string[] };
  security?: VESecuritySpec;
  /** Host device nodes granted to this VE exclusively on its node. */
  devices?: { path: string; access?: string }[];
}

export interface VESecuritySpec {
  /** Own user namespace with a per-VE host id range (default true); false = privileged mode. */
  userNamespace?: boolean;
  /** Run privileged (status says so) where the node cannot give a user namespace; default false = the VE fails. */
  allowPrivilegedFallback?: boolean;
  /** Host id range to keep (set by migration from status.security.uidRange). */
  uidRange?: { hostId: number; size: number };
}

export interface VESecurityStatus {
  userNamespace: boolean;
  privileged: boolean;
  uidRange?: { hostId: number; size: number };
  reason?: string;
}

export interface Beancounter {
  resource: string;
  held?: number;
  maxheld?: number;
  barrier?: number | string;
  limit?: number | string;
  failcnt?: number;
}

export interface VEStatus {
  phase?: VEPhase;
  nodeName?: string;
  addresses?: string[];
  initPid?: number;
  message?: string;
  observedGeneration?: number;
  conditions?: Condition[];
  beancounters?: Beancounter[];
  appliedResources?: Record<string, unknown>;
  pendingResources?: { field: string; reason: string }[];
  disk?: Record<string, unknown>;
  security?: VESecurityStatus;
}

export interface VirtualEnvironment extends KubeObject {
  metadata: ObjectMeta & { name: string; namespace: string };
  spec: VESpec;
  status?: VEStatus;
}

export const VE_RESOURCE = { group: GROUP, version: VERSION, plural: 'virtualenvironments', kind: 'VirtualEnvironment' } as const;

// --- VENode (crds/venodes.yaml) ---

/** Quantities as the API holds them: CPUs ("2", "1500m"), bytes ("512Mi", "2097152Ki"). */
export interface NodeResources {
  cpu?: Quantity;
  memory?: Quantity;
  disk?: Quantity;
}

export interface NodeFeatures {
  cgroupVersion?: 'v1' | 'v2';
  criu?: boolean;
  criuVersion?: string;
  onlineDiskGrow?: boolean;
  secondLevelQuota?: boolean;
  userNamespaces?: boolean;
  /** lxcfs serves VE /proc files (meminfo, cpuinfo, ...) with each VE's own limits. */
  lxcfs?: boolean;
  /** Why each boolean above is what it is, in the runtime's words (keyed like the booleans). */
  reasons?: Partial<Record<'criu' | 'onlineDiskGrow' | 'secondLevelQuota' | 'userNamespaces' | 'lxcfs', string>>;
}

export interface VENodeStatus {
  capacity?: NodeResources;
  allocatable?: NodeResources;
  allocated?: NodeResources & { ves?: number };
  features?: NodeFeatures;
  nodeInfo?: { kernelVersion?: string; hostname?: string; agentVersion?: string; bridge?: string; subnet?: string };
  heartbeatTime?: string;
  observedGeneration?: number;
  conditions?: Condition[];
}

export interface VENode extends KubeObject {
  metadata: ObjectMeta & { name: string };
  spec?: { unschedulable?: boolean };
  status?: VENodeStatus;
}

export const VENODE_RESOURCE = { group: GROUP, version: VERSION, plural: 'venodes', kind: 'VENode' } as const;

/** Annotation `kvz restart` sets (a timestamp); the agent restarts the VE once per new value. */
export const RESTART_REQUESTED_ANNOTATION = 'kubevz.io/restart-requested';
/** Annotation the agent sets to the value of RESTART_REQUESTED_ANNOTATION it has acted on. */
export const RESTARTED_ANNOTATION = 'kubevz.io/restarted';

// ---- VETemplate (crds/vetemplates.yaml) ----

export type TemplateSourceKind = 'debootstrap' | 'busybox' | 'tarball';
export type TemplateInitFlavor = 'auto' | 'systemd' | 'sysvinit' | 'busybox' | 'other';
export type TemplateStage = 'Pending' | 'Downloading' | 'Installing' | 'Preparing' | 'Packing' | 'Ready' | 'Failed' | 'Removed';

export interface VETemplateSpec {
  source: TemplateSourceKind;
  debootstrap?: { suite: string; variant?: string; components?: string[]; include?: string[]; exclude?: string[]; mirror?: string };
  busybox?: Record<string, never>;
  tarball?: { url: string; sha256?: string };
  preInstall?: string;
  postInstall?: string;
  init?: { flavor?: TemplateInitFlavor; command?: string[]; stopSignal?: string };
}

/** One node's template cache, as its agent reports it. */
export interface TemplateNodeStatus {
  node: string;
  stage: TemplateStage;
  percent?: number;
  message?: string;
  digest?: string;
  init?: string;
  sizeBytes?: number;
  unpackedBytes?: number;
  buildMs?: number;
  builtAt?: string;
  buildRequest?: string;
  observedGeneration?: number;
}

export interface VETemplateStatus {
  observedGeneration?: number;
  nodes?: TemplateNodeStatus[];
  conditions?: Condition[];
}

export interface VETemplate extends KubeObject {
  metadata: ObjectMeta & { name: string };
  spec: VETemplateSpec;
  status?: VETemplateStatus;
}

export const VET_RESOURCE = { group: GROUP, version: VERSION, plural: 'vetemplates', kind: 'VETemplate' } as const;
/** Annotation `kvz template build` sets (a fresh token) to ask every node to build the template now. */
export const TEMPLATE_BUILD_ANNOTATION = 'kubevz.io/build-request';

// --- VEMigration (crds/vemigrations.yaml) ---

export type MigrationPhase =
  | 'Pending'
  | 'Scheduling'
  | 'PreparingTarget'
  | 'TargetReady'
  | 'Checkpointing'
  | 'Transferring'
  | 'Restoring'
  | 'Succeeded'
  | 'Failed';

export interface VEMigrationSpec {
  /** Name of the VE (same namespace). */
  ve: string;
  targetNode?: string;
  mode?: 'live' | 'offline';
  maxDowntimeMs?: number;
  allowDowntimeOverrun?: boolean;
  timeoutSeconds?: number;
  dryRun?: boolean;
}

export interface VEMigrationStatus {
  phase?: MigrationPhase;
  sourceNode?: string;
  targetNode?: string;
  veUid?: string;
  method?: string;
  transitions?: { phase: string; time: string; message?: string }[];
  timings?: Record<string, number>;
  downtimeMs?: number;
  estimatedDowntimeMs?: number;
  bytesTransferred?: number;
  transfer?: { address?: string; port?: number };
  credentialSecret?: string;
  message?: string;
  reason?: string;
  criuLog?: string;
  startTime?: string;
  completionTime?: string;
  observedGeneration?: number;
  conditions?: Condition[];
}

export interface VEMigration extends KubeObject {
  metadata: ObjectMeta & { name: string; namespace: string };
  spec: VEMigrationSpec;
  status?: VEMigrationStatus;
}

export const VEM_RESOURCE = { group: GROUP, version: VERSION, plural: 'vemigrations', kind: 'VEMigration' } as const;

/** Set on a VE while a migration moves it: its agents leave it to the migration (value: the VEMigration's name). */
export const MIGRATION_ANNOTATION = 'kubevz.io/migration';
/** Key in the credential Secret that holds the data channel's one-time token. */
export const MIGRATION_TOKEN_KEY = 'token';
