// Public face of src/core.
export * from './errors.js';
export * from './logger.js';
export * from './revert.js';
export * from './reconcile.js';
export * from './work-queue.js';
export * from './controller-loop.js';
export * from './resource-client.js';
export * from './kube-client.js';
export * from './conditions.js';
export * from './finalizer.js';
export * from './events.js';
export * from './leader-election.js';
