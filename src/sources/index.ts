// Public face of src/sources: desired-state feeds that apply into the API (the watched
// directory) and the client-side apply they share with `kvz apply`.
export * from './manifests.js';
export * from './kinds.js';
export * from './apply.js';
export * from './merge-patch.js';
export * from './manifest-dir.js';
