// How the agents write a VEMigration's status, and the source's crash marker.
//
// Every phase change an agent writes is guarded by the object's resourceVersion (a JSON patch
// with a `test` op on the status subresource): the controller may fail or abort a migration
// before Restoring at any moment, and a guarded write makes "the controller failed it" and "we
// moved it on" mutually exclusive. A lost race is re-read: if the migration is still in a phase
// we may move it from, we try again; otherwise the caller rolls back.

import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { transitionPatch, type TransitionOptions } from '../api/migration-phases.js';
import type { MigrationPhase, VEMigration } from '../api/types.js';
import { errorCode, KvzError } from '../core/errors.js';
import type { VEConfig } from '../runtime/index.js';
import type { JsonPatchOp, ResourceClient } from '../core/resource-client.js';

export function isTerminalPhase(phase: MigrationPhase | undefined): boolean {
  return phase === 'Succeeded' || phase === 'Failed';
}

/** Thrown when the migration left the phases the agent may move it from (failed, aborted, deleted). */
export class MigrationGone extends KvzError {
  constructor(message: string) {
    super('Conflict', message, { details: { migrationGone: true } });
  }
}

export function isMigrationGone(err: unknown): boolean {
  return err instanceof KvzError && err.details.migrationGone === true;
}

/**
 * Moves the migration to phase `to` (with more status fields) if it is still in one of `from`,
 * guarded by its resourceVersion (api/migration-phases.ts transitionPatch); retries lost races;
 * MigrationGone when it was deleted or moved elsewhere meanwhile (failed or aborted).
 */
export async function advance(
  client: ResourceClient<VEMigration>,
  namespace: string,
  name: string,
  from: readonly MigrationPhase[],
  to: MigrationPhase,
  opts: TransitionOptions = {},
): Promise<VEMigration> {
  for (let attempt = 0; ; attempt++) {
    const mig = await client.get(name, namespace);
    if (!mig) throw new MigrationGone(`migration ${namespace}/${name} was deleted`);
    const phase = mig.status?.phase;
    if (!phase || !from.includes(phase)) throw new MigrationGone(`migration ${namespace}/${name} is ${phase ?? 'without a phase'} (expected ${from.join(' or ')})`);
    try {
      return await client.jsonPatchStatus(name, namespace, transitionPatch(mig, to, opts) as JsonPatchOp[]);
    } catch (err) {
      if (errorCode(err) !== 'Conflict' || attempt >= 8) throw err;
    }
  }
}

// ---- the source's marker: survives an agent crash mid-migration ----

export interface SourceMarker {
  namespace: string;
  name: string;
  /** The VEMigration's uid (a new migration of the same name is another one). */
  migrationUid?: string;
  veUid: string;
  /** Set once the VE was dumped: a rollback must restore from these images. */
  imageDir?: string;
  dumped?: boolean;
  mode: 'live' | 'offline';
  /** The VE's config on this node, to bring it back without reading anything else. */
  config?: VEConfig;
}

export function markerDir(stateDir: string): string {
  return join(stateDir, 'migrations');
}

function markerPath(stateDir: string, namespace: string, name: string): string {
  return join(markerDir(stateDir), `${namespace}_${name}.json`);
}

export async function writeMarker(stateDir: string, m: SourceMarker): Promise<void> {
  await mkdir(markerDir(stateDir), { recursive: true, mode: 0o700 });
  const p = markerPath(stateDir, m.namespace, m.name);
  await writeFile(`${p}.tmp`, JSON.stringify(m, null, 2), { mode: 0o600 });
  await rename(`${p}.tmp`, p);
}

export async function removeMarker(stateDir: string, namespace: string, name: string): Promise<void> {
  await rm(markerPath(stateDir, namespace, name), { force: true });
}

export async function readMarkers(stateDir: string): Promise<SourceMarker[]> {
  const names = await readdir(markerDir(stateDir)).catch(() => [] as string[]);
  const out: SourceMarker[] = [];
  for (const n of names.filter((f) => f.endsWith('.json'))) {
    try {
      out.push(JSON.parse(await readFile(join(markerDir(stateDir), n), 'utf8')) as SourceMarker);
    } catch {
      // A torn write cannot happen (rename), but a hand-edited file should not stop the agent.
    }
  }
  return out;
}
