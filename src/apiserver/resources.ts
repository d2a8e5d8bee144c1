// What the server serves: built-in kinds (core/v1 events, secrets and namespaces, coordination.k8s.io/v1
// leases, apiextensions.k8s.io/v1 CRDs) plus one entry per CustomResourceDefinition, loaded from
// crds/ or created through the API. Discovery, routing, tables and validation all read from here.

import { createHash } from 'node:crypto';
import type { CustomResourceDefinition, ObjectValidator, PrinterColumn, SchemaNode } from '../api/index.js';
import { compileCrd } from '../api/index.js';

export interface ResourceDef {
  /** '' for the core group. */
  group: string;
  /** Served versions, preferred first. */
  versions: string[];
  plural: string;
  singular: string;
  kind: string;
  listKind: string;
  namespaced: boolean;
  shortNames: string[];
  categories: string[];
  statusSubresource: boolean;
  printerColumns: Map<string, PrinterColumn[]>;
  /** Per-version schema validators; undefined for built-ins we store without a schema. */
  validators?: Map<string, ObjectValidator>;
  /** Per-version openAPIV3Schema (CRDs): list/map types for server-side apply, and /openapi. */
  schemas?: Map<string, SchemaNode>;
  /** Custom resources refuse an unconditional PUT (422 without metadata.resourceVersion). */
  requireRvOnUpdate: boolean;
  /** Store key: `group/plural` (`core/plural` for the core group). */
  key: string;
  /** Name of the CRD that defines it, if any. */
  crdName?: string;
}

export const VERBS = ['delete', 'deletecollection', 'get', 'list', 'patch', 'create', 'update', 'watch'];

export function storageVersionHash(group: string, version: string, kind: string): string {
  return createHash('sha256').update(`${group}/${version}/${kind}`).digest().subarray(0, 8).toString('base64');
}

function builtin(d: Omit<ResourceDef, 'key' | 'listKind' | 'requireRvOnUpdate' | 'printerColumns' | 'shortNames' | 'categories' | 'statusSubresource'> & Partial<ResourceDef> & { columns?: PrinterColumn[] }): ResourceDef {
  const printerColumns = new Map<string, PrinterColumn[]>();
  for (const v of d.versions) printerColumns.set(v, d.columns ?? []);
  return {
    listKind: `${d.kind}List`,
    shortNames: [],
    categories: [],
    statusSubresource: false,
    requireRvOnUpdate: false,
    ...d,
    printerColumns,
    key: `${d.group || 'core'}/${d.plural}`,
  };
}

const AGE: PrinterColumn = { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' };

export const CRD_RESOURCE = builtin({
  group: 'apiextensions.k8s.io', versions: ['v1'], plural: 'customresourcedefinitions', singular: 'customresourcedefinition',
  kind: 'CustomResourceDefinition', namespaced: false, shortNames: ['crd', 'crds'], statusSubresource: true,
  columns: [{ name: 'Created At', type: 'date', jsonPath: '.metadata.creationTimestamp' }],
});

export const NAMESPACE_RESOURCE = builtin({
  group: '', versions: ['v1'], plural: 'namespaces', singular: 'namespace', kind: 'Namespace', namespaced: false, shortNames: ['ns'],
  columns: [{ name: 'Status', type: 'string', jsonPath: '.status.phase' }, AGE],
});

export const EVENT_RESOURCE = builtin({
  group: '', versions: ['v1'], plural: 'events', singular: 'event', kind: 'Event', namespaced: true, shortNames: ['ev'],
  columns: [
    { name: 'Last Seen', type: 'date', jsonPath: '.lastTimestamp' },
    { name: 'Type', type: 'string', jsonPath: '.type' },
    { name: 'Reason', type: 'string', jsonPath: '.reason' },
    { name: 'Object', type: 'string', jsonPath: '.involvedObject.name' },
    { name: 'Message', type: 'string', jsonPath: '.message' },
  ],
});

export const LEASE_RESOURCE = builtin({
  group: 'coordination.k8s.io', versions: ['v1'], plural: 'leases', singular: 'lease', kind: 'Lease', namespaced: true,
  columns: [{ name: 'Holder', type: 'string', jsonPath: '.spec.holderIdentity' }, AGE],
});

/** Secrets: the one-time credential of a migration's data channel lives in one (the embedded server stores them as given). */
export const SECRET_RESOURCE = builtin({
  group: '', versions: ['v1'], plural: 'secrets', singular: 'secret', kind: 'Secret', namespaced: true,
  columns: [{ name: 'Type', type: 'string', jsonPath: '.type' }, AGE],
});

/** A ResourceDef for a CRD, or an error message if the CRD cannot be served. */
export function resourceFromCrd(crd: CustomResourceDefinition): ResourceDef {
  const { group, names, scope } = crd.spec;
  const served = crd.spec.versions.filter((v) => v.served !== false);
  if (served.length === 0) throw new Error(`CRD ${crd.metadata.name} serves no version`);
  // The storage version is preferred; the others follow in file order.
  served.sort((a, b) => Number(b.storage === true) - Number(a.storage === true));
  const printerColumns = new Map<string, PrinterColumn[]>();
  const schemas = new Map<string, SchemaNode>();
  for (const v of served) {
    printerColumns.set(v.name, v.additionalPrinterColumns ?? []);
    if (v.schema?.openAPIV3Schema) schemas.set(v.name, v.schema.openAPIV3Schema);
  }
  return {
    group,
    versions: served.map((v) => v.name),
    plural: names.plural,
    singular: names.singular ?? names.kind.toLowerCase(),
    kind: names.kind,
    listKind: names.listKind ?? `${names.kind}List`,
    namespaced: scope !== 'Cluster',
    shortNames: names.shortNames ?? [],
    categories: names.categories ?? [],
    statusSubresource: served.some((v) => v.subresources?.status !== undefined),
    printerColumns,
    validators: compileCrd(crd),
    schemas,
    requireRvOnUpdate: true,
    key: `${group}/${names.plural}`,
    crdName: crd.metadata.name,
  };
}

/** The set of served resources; CRD resources can be added or replaced at run time. */
export class ResourceTable {
  private readonly byKey = new Map<string, ResourceDef>();

  constructor() {
    for (const r of [CRD_RESOURCE, NAMESPACE_RESOURCE, EVENT_RESOURCE, LEASE_RESOURCE, SECRET_RESOURCE]) this.byKey.set(r.key, r);
  }

  /** Serve (or re-serve) a CRD's resource. Built-ins cannot be overridden. */
  addCrd(crd: CustomResourceDefinition): ResourceDef {
    const def = resourceFromCrd(crd);
    const existing = this.byKey.get(def.key);
    if (existing && !existing.crdName) throw new Error(`${def.key} is built in`);
    this.byKey.set(def.key, def);
    return def;
  }

  removeCrd(crdName: string): void {
    for (const [k, d] of this.byKey) if (d.crdName === crdName) this.byKey.delete(k);
  }

  lookup(group: string, version: string, plural: string): ResourceDef | undefined {
    const d = this.byKey.get(`${group || 'core'}/${plural}`);
    return d && d.versions.includes(version) ? d : undefined;
  }

  all(): ResourceDef[] {
    return [...this.byKey.values()].sort((a, b) => a.key.localeCompare(b.key));
  }

  /** API groups (not core) with their versions, preferred first, sorted by group name. */
  groups(): { name: string; versions: string[] }[] {
    const m = new Map<string, string[]>();
    for (const d of this.all()) {
      if (!d.group) continue;
      const vs = m.get(d.group) ?? [];
      for (const v of d.versions) if (!vs.includes(v)) vs.push(v);
      m.set(d.group, vs);
    }
    return [...m.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([name, versions]) => ({ name, versions }));
  }

  inGroupVersion(group: string, version: string): ResourceDef[] {
    return this.all().filter((d) => d.group === group && d.versions.includes(version));
  }
}
