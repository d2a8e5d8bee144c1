// Public face of src/controller.
export { Controller, type ControllerOptions } from './controller.js';
export { Scheduler, type SchedulerOptions, type Placement } from './scheduler.js';
export { NodeHealth, type NodeHealthOptions } from './node-health.js';
export { veRequests, nodeAllocatable, nodeHealth, formatAmounts, type Amounts } from './capacity.js';
