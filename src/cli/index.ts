// Public face of src/cli: the kvz dispatcher that src/bin/kvz.ts runs. Commands and their
// dependencies load on demand, so this stays cheap to import.
export { runCli, describeError } from './main.js';
export type { CliIO, Connection } from './context.js';
