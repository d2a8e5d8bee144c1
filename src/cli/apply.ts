// `kvz apply -f FILE|DIR|-`: server-side apply under the field manager `kvz` (as
// `kubectl apply --server-side`), with a kubectl-like line per object and one error line per
// rejected document. `--force-conflicts` takes over fields other managers own.

import { resolve } from 'node:path';
import { KVZ_FIELD_MANAGER, applyObjects, displayName, formatProblem, listManifestFiles, parseManifests, readManifestFile, type ManifestDoc, type ManifestProblem } from '../sources/index.js';
import { CONNECTION_FLAGS, UsageError, boolFlag, listFlag, parseArgs, stringFlag, type FlagSpec } from './args.js';
import type { CliIO } from './context.js';

const FLAGS: FlagSpec[] = [
  ...CONNECTION_FLAGS,
  { name: 'filename', short: 'f', type: 'string', multiple: true },
  { name: 'recursive', short: 'R', type: 'boolean' },
  { name: 'namespace', short: 'n', type: 'string' },
  { name: 'force-conflicts', type: 'boolean' },
  { name: 'field-manager', type: 'string' },
];

export async function runApply(argv: string[], io: CliIO): Promise<number> {
  const args = parseArgs(argv, FLAGS, 'apply');
  const paths = listFlag(args, 'filename');
  if (paths.length === 0) throw new UsageError('apply needs -f FILE|DIR|- (the manifests to apply)', 'apply');
  if (args.positionals.length > 0) throw new UsageError(`unexpected arguments: ${args.positionals.join(' ')} (use -f for each file)`, 'apply');

  const docs: ManifestDoc[] = [];
  const problems: ManifestProblem[] = [];
  for (const p of paths) {
    if (p === '-') {
      const parsed = parseManifests(io.readStdin(), '<stdin>');
      docs.push(...parsed.docs);
      problems.push(...parsed.problems);
      continue;
    }
    const files = listManifestFiles(resolve(p), boolFlag(args, 'recursive'));
    if (files.length === 0) io.stderr(`warning: no *.yaml or *.yml files in ${p}\n`);
    for (const f of files) {
      const parsed = readManifestFile(f);
      docs.push(...parsed.docs);
      problems.push(...parsed.problems);
    }
  }
  // A manifest that does not parse stops everything, before anything is sent.
  if (problems.length > 0) {
    for (const p of problems) io.stderr(`error: ${formatProblem(p)}\n`);
    return 1;
  }
  if (docs.length === 0) {
    io.stderr('error: no objects passed to apply\n');
    return 1;
  }
  const conn = io.connect({ kubeconfig: stringFlag(args, 'kubeconfig'), stateDir: stringFlag(args, 'state-dir') });
  const report = await applyObjects(conn.target, docs, {
    fieldManager: stringFlag(args, 'field-manager') ?? KVZ_FIELD_MANAGER,
    force: boolFlag(args, 'force-conflicts'),
    namespace: stringFlag(args, 'namespace'),
    log: io.log,
  });
  for (const a of report.applied) io.stdout(`${displayName(a)} ${a.action}\n`);
  for (const p of report.problems) io.stderr(`error: ${formatProblem(p)}\n`);
  return report.problems.length > 0 ? 1 : 0;
}
