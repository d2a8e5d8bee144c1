// The real runtime passes the same contract as the fake the node-agent unit tests use.

import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../../src/core/logger.js';
import { createRuntime, teardownNode } from '../../src/runtime/index.js';
import { inCI, missingPrereqs, uniqueSuffix } from '../helpers/prereq.js';
import { runtimeContract } from '../helpers/runtime-contract.js';

runtimeContract('host runtime', async () => {
  const missing = missingPrereqs({ root: true, binaries: ['runc', 'ip'] });
  if (missing.length) {
    if (inCI) throw new Error(`prerequisite missing under CI: ${missing.join(', ')}`);
    return undefined;
  }
  const suffix = uniqueSuffix();
  const bridge = `kvzc${suffix}`.slice(0, 15);
  const net = 20 + (process.pid % 60);
  const stateDir = mkdtempSync(join(tmpdir(), 'kvz-contract-'));
  return {
    runtime: createRuntime({ stateDir, bridge: { name: bridge, subnet: `10.213.${net}.0/24` }, log: silentLogger }),
    config: { uid: randomUUID(), name: `test/c-${suffix}`, hostname: `c-${suffix}`, template: 'busybox', addresses: [`10.213.${net}.10/24`], limits: { pids: 64, memoryBytes: 64 << 20 } },
    cleanup: async () => {
      await teardownNode({ bridge });
      rmSync(stateDir, { recursive: true, force: true });
    },
  };
});
