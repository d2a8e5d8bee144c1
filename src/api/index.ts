// Public face of src/api: resource types, quantities, field errors, CRD loading and schema validation.
export * from './types.js';
export * from './quantity.js';
export * from './invalid.js';
export * from './crds.js';
export * from './schema.js';
export * from './duration.js';
export * from './migration-phases.js';
export * from './json.js';
