// Public face of src/controller.
export { Controller, type ControllerOptions } from './controller.js';
export { Scheduler, type SchedulerOptions, type Placement } from './scheduler.js';
export { NodeHealth, type NodeHealthOptions } from './node-health.js';
export { veRequests, nodeAllocatable, nodeHealth, formatAmounts, type Amounts } from './capacity.js';
export { MigrationController, PinnedMove, MIGRATION_FINALIZER, PINNED_GENERATION_ANNOTATION, SECRET_REF, credentialSecretName, type Secret, type MigrationControllerOptions, type PinnedMoveOptions } from './migration.js';
export { preflight, estimateDowntimeMs, inSubnet, type PreflightResult } from './migration-preflight.js';
