// Public face of src/sources: desired-state feeds that apply into the API (the watched
// directory, a Git repository), the engine they share (validate, server-side apply, prune,
// inventory), and the server-side apply used by `kvz apply`.
export * from './manifests.js';
export * from './kinds.js';
export * from './apply.js';
export * from './merge-patch.js';
export * from './validate.js';
export * from './source-sync.js';
export * from './manifest-dir.js';
export * from './git-source.js';
