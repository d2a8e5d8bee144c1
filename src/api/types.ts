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

export type PowerState = 'Running' | 'Stopped';

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
  resources?: VEResources;
  network?: { mode?: 'bridged' | 'routed'; addresses?: string[] };
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
}

export interface VirtualEnvironment extends KubeObject {
  metadata: ObjectMeta & { name: string; namespace: string };
  spec: VESpec;
  status?: VEStatus;
}

export const VE_RESOURCE = { group: GROUP, version: VERSION, plural: 'virtualenvironments', kind: 'VirtualEnvironment' } as const;
