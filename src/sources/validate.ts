// Local validation of manifests against the CRD schemas in crds/ (the same ajv validators the
// embedded server uses), so a source rejects a bad document with its field before asking the
// server anything. Kinds without a local CRD are left to the server's dry-run.

import { compileCrd, loadCrds, type CustomResourceDefinition, type FieldError, type ObjectValidator } from '../api/index.js';
import type { ResourceRef } from '../core/resource-client.js';
import type { ManifestProblem } from './manifests.js';
import type { PlannedDoc } from './apply.js';

export type LocalValidator = (ref: ResourceRef, obj: unknown) => FieldError[];

/** A validator over the given CRDs (default: crds/); schemas are compiled on first use. */
export function crdValidator(crds: CustomResourceDefinition[] = loadCrds()): LocalValidator {
  const compiled = new Map<string, Map<string, ObjectValidator>>();
  return (ref, obj) => {
    const crd = crds.find((c) => c.spec.group === ref.group && c.spec.names.kind === ref.kind);
    if (!crd) return [];
    const key = `${ref.group}/${ref.kind}`;
    let versions = compiled.get(key);
    if (!versions) compiled.set(key, (versions = compileCrd(crd)));
    const validate = versions.get(ref.version);
    return validate ? validate(obj).errors : [];
  };
}

/** The schema problems of planned documents, with the document's line for each field. */
export function schemaProblems(validate: LocalValidator, planned: PlannedDoc[]): ManifestProblem[] {
  const out: ManifestProblem[] = [];
  for (const { doc, obj } of planned) {
    for (const e of validate(obj.ref, doc.object)) {
      out.push({ file: doc.file, index: doc.index, line: doc.lineOf?.(e.field) ?? doc.line, field: e.field, message: e.message });
    }
  }
  return out;
}
