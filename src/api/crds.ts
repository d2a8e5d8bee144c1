// Loading CustomResourceDefinitions from YAML files (crds/ is the schema source of truth) and
// the small typed view of a CRD that the validator and the embedded API server need.

import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';

export interface PrinterColumn {
  name: string;
  type: string;
  jsonPath: string;
  format?: string;
  description?: string;
  priority?: number;
}

/** An OpenAPI v3 schema node as written in a CRD (structural, with x-kubernetes-* extensions). */
export type SchemaNode = Record<string, unknown>;

export interface CrdVersion {
  name: string;
  served: boolean;
  storage: boolean;
  subresources?: { status?: object; scale?: object };
  additionalPrinterColumns?: PrinterColumn[];
  schema?: { openAPIV3Schema?: SchemaNode };
}

export interface CrdNames {
  plural: string;
  singular?: string;
  kind: string;
  listKind?: string;
  shortNames?: string[];
  categories?: string[];
}

export interface CustomResourceDefinition {
  apiVersion: string;
  kind: 'CustomResourceDefinition';
  metadata: { name: string; [k: string]: unknown };
  spec: { group: string; scope: 'Namespaced' | 'Cluster'; names: CrdNames; versions: CrdVersion[] };
  [k: string]: unknown;
}

/** The repository's crds/ directory, found from this module's location (dist/src/api/*.js → repo root). */
export function defaultCrdDir(): string {
  return fileURLToPath(new URL('../../../crds/', import.meta.url));
}

/** Every CustomResourceDefinition document in the *.yaml, *.yml and *.json files of `dir`, sorted by file name. */
export function loadCrds(dir: string = defaultCrdDir()): CustomResourceDefinition[] {
  const files = readdirSync(dir)
    .filter((f) => /\.(ya?ml|json)$/.test(f))
    .sort();
  const out: CustomResourceDefinition[] = [];
  for (const f of files) {
    const path = join(dir, f);
    for (const doc of parseAllDocuments(readFileSync(path, 'utf8'))) {
      if (doc.errors.length > 0) throw new Error(`${path}: invalid YAML: ${doc.errors[0]?.message ?? ''}`);
      const value: unknown = doc.toJS();
      if (isCrd(value)) out.push(value);
    }
  }
  return out;
}

/** True for an object that looks like an apiextensions.k8s.io/v1 CRD (enough fields to serve it). */
export function isCrd(value: unknown): value is CustomResourceDefinition {
  if (!value || typeof value !== 'object') return false;
  const v = value as Record<string, unknown>;
  const spec = v.spec as Record<string, unknown> | undefined;
  return (
    v.kind === 'CustomResourceDefinition' &&
    typeof spec === 'object' &&
    spec !== null &&
    typeof spec.group === 'string' &&
    typeof spec.names === 'object' &&
    Array.isArray(spec.versions)
  );
}
