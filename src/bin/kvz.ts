#!/usr/bin/env node
// The kvz entry point: everything else lives in src/cli.

import { runCli } from '../cli/index.js';

runCli(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`error: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
