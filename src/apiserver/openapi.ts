// OpenAPI documents built from the served CRD schemas, as the apiextensions-apiserver publishes
// them: `/openapi/v2` as a gnostic `openapi_v2.Document` protobuf (kubectl proto-decodes it, and
// wants `application/octet-stream`: Go's mime parser rejects the "@" of the official type), and
// `/openapi/v3` (discovery of one document per group/version, then JSON). Every kind's definition
// carries `x-kubernetes-group-version-kind`, which is how `kubectl explain` (v3 in kubectl ≥1.27,
// v2 before) and client-side validation find it; metadata refers to a published ObjectMeta.

import { createHash } from 'node:crypto';
import type { SchemaNode } from '../api/index.js';
import { isObj } from './object-meta.js';
import type { ResourceDef, ResourceTable } from './resources.js';

export const OPENAPI_CONTENT_TYPE = 'application/octet-stream';

const META = 'io.k8s.apimachinery.pkg.apis.meta.v1';
const OBJECT_META = `${META}.ObjectMeta`;
const LIST_META = `${META}.ListMeta`;

const str = (description: string): SchemaNode => ({ type: 'string', description });
const strMap = (description: string): SchemaNode => ({ type: 'object', additionalProperties: { type: 'string' }, description });

/** ObjectMeta as published by kube-apiserver (the fields clients write or read). */
function objectMetaSchema(): SchemaNode {
  return {
    type: 'object',
    description: 'ObjectMeta is metadata that all persisted resources must have, which includes all objects users must create.',
    properties: {
      name: str('Name must be unique within a namespace.'),
      generateName: str('GenerateName is an optional prefix, used by the server, to generate a unique name ONLY IF the Name field has not been provided.'),
      namespace: str('Namespace defines the space within which each name must be unique.'),
      uid: str('UID is the unique in time and space value for this object.'),
      resourceVersion: str('An opaque value that represents the internal version of this object.'),
      generation: { type: 'integer', format: 'int64', description: 'A sequence number representing a specific generation of the desired state.' },
      creationTimestamp: { type: 'string', format: 'date-time', description: 'CreationTimestamp is a timestamp representing the server time when this object was created.' },
      deletionTimestamp: { type: 'string', format: 'date-time', description: 'DeletionTimestamp is RFC 3339 date and time at which this resource will be deleted.' },
      deletionGracePeriodSeconds: { type: 'integer', format: 'int64', description: 'Number of seconds allowed for this object to gracefully terminate.' },
      labels: strMap('Map of string keys and values that can be used to organize and categorize (scope and select) objects.'),
      annotations: strMap('Annotations is an unstructured key value map stored with a resource.'),
      finalizers: { type: 'array', items: { type: 'string' }, 'x-kubernetes-list-type': 'set', description: 'Must be empty before the object is deleted from the registry.' },
      ownerReferences: {
        type: 'array',
        description: 'List of objects depended by this object.',
        'x-kubernetes-list-type': 'map',
        'x-kubernetes-list-map-keys': ['uid'],
        items: {
          type: 'object',
          required: ['apiVersion', 'kind', 'name', 'uid'],
          properties: {
            apiVersion: str('API version of the referent.'),
            kind: str('Kind of the referent.'),
            name: str('Name of the referent.'),
            uid: str('UID of the referent.'),
            controller: { type: 'boolean', description: 'If true, this reference points to the managing controller.' },
            blockOwnerDeletion: { type: 'boolean', description: 'If true, the owner cannot be deleted from storage until this reference is removed.' },
          },
        },
      },
      managedFields: {
        type: 'array',
        description: 'ManagedFields maps workflow-id and version to the set of fields that are managed by that workflow.',
        items: {
          type: 'object',
          properties: {
            manager: str('Manager is an identifier of the workflow managing these fields.'),
            operation: str('Operation is the type of operation which lead to this ManagedFieldsEntry being created.'),
            apiVersion: str('APIVersion defines the version of this resource that this field set applies to.'),
            time: { type: 'string', format: 'date-time', description: 'Time is the timestamp of when the ManagedFields entry was added.' },
            fieldsType: str('FieldsType is the discriminator for the different fields format and version.'),
            fieldsV1: { type: 'object', description: 'FieldsV1 holds the first JSON version format as described in the "FieldsV1" type.' },
            subresource: str('Subresource is the name of the subresource used to update that object.'),
          },
        },
      },
      selfLink: str('Deprecated: selfLink is a legacy read-only field that is no longer populated by the system.'),
    },
  };
}

const listMetaSchema: SchemaNode = {
  type: 'object',
  description: 'ListMeta describes metadata that synthetic resources must have, including lists and various status objects.',
  properties: {
    resourceVersion: str('String that identifies the server\'s internal version of this object.'),
    continue: str('continue may be set if the user set a limit on the number of items returned.'),
    remainingItemCount: { type: 'integer', format: 'int64', description: 'The number of subsequent items in the list which are not included in this list response.' },
  },
};

/** `kubevz.io` → `io.kubevz`, as definition names spell groups. */
function reverseGroup(group: string): string {
  return group.split('.').reverse().join('.');
}

export function definitionName(def: ResourceDef, version: string, kind = def.kind): string {
  return `${reverseGroup(def.group)}.${version}.${kind}`;
}

type Flavour = 'v2' | 'v3';

/** A CRD schema node as OpenAPI v2 (structural, no nullable/junctors) or v3 (as written). */
function convert(node: SchemaNode, flavour: Flavour): SchemaNode {
  const out: SchemaNode = {};
  const intOrString = node['x-kubernetes-int-or-string'] === true;
  for (const [k, v] of Object.entries(node)) {
    if (k === 'properties' && isObj(v)) {
      const props: Record<string, SchemaNode> = {};
      for (const [pk, pv] of Object.entries(v)) if (isObj(pv)) props[pk] = convert(pv, flavour);
      out.properties = props;
    } else if (k === 'items' && isObj(v)) out.items = convert(v, flavour);
    else if (k === 'additionalProperties') {
      if (isObj(v)) out.additionalProperties = convert(v, flavour);
      else if (flavour === 'v3') out.additionalProperties = v;
    } else if (flavour === 'v2' && ['nullable', 'oneOf', 'anyOf', 'not', 'allOf', 'default', 'enum', 'x-kubernetes-validations'].includes(k)) continue;
    else if (k === 'type' && intOrString) continue;
    else out[k] = v;
  }
  if (intOrString && flavour === 'v2') out.format = 'int-or-string';
  if (intOrString && flavour === 'v3') out.anyOf = [{ type: 'integer' }, { type: 'string' }];
  return out;
}

function gvkExt(def: ResourceDef, version: string, kind: string): Record<string, unknown>[] {
  return [{ group: def.group, kind, version }];
}

/** The definitions (v2) or component schemas (v3) of the kinds served in `defs`. */
function kindSchemas(defs: { def: ResourceDef; version: string }[], flavour: Flavour): Record<string, SchemaNode> {
  const prefix = flavour === 'v2' ? '#/definitions/' : '#/components/schemas/';
  const ref = (name: string): SchemaNode => (flavour === 'v2' ? { $ref: `${prefix}${name}` } : { allOf: [{ $ref: `${prefix}${name}` }], default: {} });
  const out: Record<string, SchemaNode> = { [OBJECT_META]: objectMetaSchema(), [LIST_META]: listMetaSchema };
  for (const { def, version } of defs) {
    const crd = def.schemas?.get(version) ?? { type: 'object', 'x-kubernetes-preserve-unknown-fields': true };
    const s = convert(crd, flavour);
    const props = { ...((s.properties as Record<string, SchemaNode> | undefined) ?? {}) };
    props.apiVersion = str('APIVersion defines the versioned schema of this representation of an object.');
    props.kind = str('Kind is a string value representing the REST resource this object represents.');
    props.metadata = { ...ref(OBJECT_META), description: "Standard object's metadata." };
    const name = definitionName(def, version);
    out[name] = { ...s, type: 'object', properties: props, 'x-kubernetes-group-version-kind': gvkExt(def, version, def.kind) };
    out[definitionName(def, version, def.listKind)] = {
      type: 'object',
      required: ['items'],
      description: `${def.listKind} is a list of ${def.kind}`,
      properties: {
        apiVersion: props.apiVersion,
        kind: props.kind,
        items: { type: 'array', description: `List of ${def.plural}.`, items: { $ref: `${prefix}${name}` } },
        metadata: { ...ref(LIST_META), description: 'Standard list metadata.' },
      },
      'x-kubernetes-group-version-kind': gvkExt(def, version, def.listKind),
    };
  }
  return out;
}

/** Custom resources (those with a schema) and the version each is served at. */
function servedKinds(resources: ResourceTable, group?: string, version?: string): { def: ResourceDef; version: string }[] {
  const out: { def: ResourceDef; version: string }[] = [];
  for (const def of resources.all()) {
    if (!def.schemas || (group !== undefined && def.group !== group)) continue;
    for (const v of def.versions) if (version === undefined || v === version) out.push({ def, version: v });
  }
  return out;
}

// ---- OpenAPI v3 ----

const queryParam = (name: string, description: string) => ({ name, in: 'query', description, schema: { type: 'string', uniqueItems: true } });

function v3Paths(kinds: { def: ResourceDef; version: string }[]): Record<string, unknown> {
  const paths: Record<string, unknown> = {};
  for (const { def, version } of kinds) {
    const base = `/apis/${def.group}/${version}${def.namespaced ? '/namespaces/{namespace}' : ''}/${def.plural}`;
    const ref = { $ref: `#/components/schemas/${definitionName(def, version)}` };
    const listRef = { $ref: `#/components/schemas/${definitionName(def, version, def.listKind)}` };
    const gvk = { group: def.group, version, kind: def.kind };
    const ok = (schema: unknown) => ({ '200': { description: 'OK', content: { 'application/json': { schema } } } });
    const body = { content: { 'application/json': { schema: ref } }, required: true };
    const write = [queryParam('dryRun', 'When present, indicates that modifications should not be persisted.'), queryParam('fieldManager', 'fieldManager is a name associated with the actor or entity that is making these changes.'), queryParam('fieldValidation', 'fieldValidation instructs the server on how to handle objects in the request containing unknown or duplicate fields.')];
    const op = (action: string, id: string, extra: Record<string, unknown>) => ({ operationId: `${id}${def.kind}`, 'x-kubernetes-action': action, 'x-kubernetes-group-version-kind': gvk, ...extra });
    const nsParam = def.namespaced ? [{ name: 'namespace', in: 'path', required: true, schema: { type: 'string', uniqueItems: true } }] : [];
    paths[base] = {
      parameters: nsParam,
      get: op('list', 'list', { responses: ok(listRef) }),
      post: op('post', 'create', { parameters: write, requestBody: body, responses: { ...ok(ref), '201': { description: 'Created', content: { 'application/json': { schema: ref } } } } }),
      delete: op('deletecollection', 'deletecollection', { responses: ok({ type: 'object' }) }),
    };
    paths[`${base}/{name}`] = {
      parameters: [...nsParam, { name: 'name', in: 'path', required: true, schema: { type: 'string', uniqueItems: true } }],
      get: op('get', 'read', { responses: ok(ref) }),
      put: op('put', 'replace', { parameters: write, requestBody: body, responses: ok(ref) }),
      patch: op('patch', 'patch', {
        parameters: [...write, queryParam('force', 'Force is going to "force" Apply requests.')],
        requestBody: { content: Object.fromEntries(['application/apply-patch+yaml', 'application/json-patch+json', 'application/merge-patch+json'].map((t) => [t, { schema: { type: 'object' } }])), required: true },
        responses: ok(ref),
      }),
      delete: op('delete', 'delete', { responses: ok({ type: 'object' }) }),
    };
  }
  return paths;
}

/** The `/openapi/v3/apis/G/V` document, or undefined if nothing is served there. */
export function openApiV3GroupVersion(resources: ResourceTable, group: string, version: string): Record<string, unknown> | undefined {
  const kinds = servedKinds(resources, group, version);
  if (kinds.length === 0) return undefined;
  return {
    openapi: '3.0.0',
    info: { title: 'Kubernetes CRD Swagger', version: 'v0.1.0' },
    paths: v3Paths(kinds),
    components: { schemas: kindSchemas(kinds, 'v3') },
  };
}

function hashOf(v: unknown): string {
  return createHash('sha512').update(JSON.stringify(v)).digest('hex').slice(0, 128).toUpperCase();
}

/** `/openapi/v3`: one entry per group/version with a content hash kubectl caches by. */
export function openApiV3Discovery(resources: ResourceTable): Record<string, unknown> {
  const paths: Record<string, unknown> = {};
  const gvs = new Set(servedKinds(resources).map(({ def, version }) => `${def.group}/${version}`));
  for (const gv of [...gvs].sort()) {
    const [group = '', version = ''] = gv.split('/');
    paths[`apis/${gv}`] = { serverRelativeURL: `/openapi/v3/apis/${gv}?hash=${hashOf(openApiV3GroupVersion(resources, group, version))}` };
  }
  return { paths };
}

// ---- OpenAPI v2 paths ----
// kubectl 1.20 (Debian 12's kubernetes-client; kubectl ≥1.27 no longer asks) decides whether a kind
// supports server-side dry-run — `apply --dry-run=server`, `diff` — by finding the PATCH operation
// whose `x-kubernetes-group-version-kind` (a map here, a list on definitions) names the kind in
// /openapi/v2 and looking for a `dryRun` query parameter on it; a kind it cannot find makes it look
// for Namespace's instead, and without either it refuses: "doesn't support dry-run". So every
// served kind, built-in ones too, gets its paths here, with the write parameters the server takes.

interface V2Param {
  name: string;
  in: 'path' | 'query' | 'body';
  description: string;
  required?: boolean;
  type?: string;
  uniqueItems?: boolean;
  schema?: SchemaNode;
}

const v2Query = (name: string, description: string): V2Param => ({ name, in: 'query', description, type: 'string', uniqueItems: true });
const v2PathParam = (name: string, description: string): V2Param => ({ name, in: 'path', description, required: true, type: 'string', uniqueItems: true });

const WRITE_PARAMS: V2Param[] = [
  v2Query('dryRun', 'When present, indicates that modifications should not be persisted. Valid value: All.'),
  v2Query('fieldManager', 'fieldManager is a name associated with the actor or entity that is making these changes.'),
  v2Query('fieldValidation', 'fieldValidation instructs the server on how to handle objects in the request containing unknown or duplicate fields: Ignore, Warn or Strict.'),
];

/** `kubevz.io` → `KubevzIo`, `v1alpha1` → `V1alpha1`, as operation ids spell them ('' → `Core`). */
function camel(s: string): string {
  if (s === '') return 'Core';
  return s.split(/[.-]/).map((w) => w.charAt(0).toUpperCase() + w.slice(1)).join('');
}

function v2Paths(resources: ResourceTable): Record<string, unknown> {
  const paths: Record<string, unknown> = {};
  for (const def of resources.all()) {
    for (const version of def.versions) {
      const hasSchema = def.schemas?.has(version) === true;
      const ref = (kind: string): SchemaNode => (hasSchema ? { $ref: `#/definitions/${definitionName(def, version, kind)}` } : { type: 'object' });
      const gvk = { group: def.group, kind: def.kind, version };
      const id = (verb: string) => `${verb}${camel(def.group)}${camel(version)}${def.namespaced ? 'Namespaced' : ''}${def.kind}`;
      const op = (action: string, verb: string, params: V2Param[], schema: SchemaNode, extra: Record<string, unknown> = {}) => ({
        operationId: id(verb),
        produces: ['application/json', 'application/yaml'],
        schemes: ['https'],
        parameters: params,
        responses: { '200': { description: 'OK', schema } },
        'x-kubernetes-action': action,
        'x-kubernetes-group-version-kind': gvk,
        ...extra,
      });
      const body: V2Param = { name: 'body', in: 'body', description: '', required: true, schema: ref(def.kind) };
      const patchBody: V2Param = { name: 'body', in: 'body', description: '', required: true, schema: { type: 'object' } };
      const patchOp = () =>
        op('patch', 'patch', [patchBody, ...WRITE_PARAMS, v2Query('force', 'Force is going to "force" Apply requests.')], ref(def.kind), {
          consumes: ['application/json-patch+json', 'application/merge-patch+json', 'application/apply-patch+yaml'],
        });
      const prefix = def.group === '' ? `/api/${version}` : `/apis/${def.group}/${version}`;
      const base = `${prefix}${def.namespaced ? '/namespaces/{namespace}' : ''}/${def.plural}`;
      const nsParams = def.namespaced ? [v2PathParam('namespace', 'object name and auth scope, such as for teams and projects')] : [];
      const nameParams = [v2PathParam('name', `name of the ${def.kind}`), ...nsParams];
      paths[base] = {
        parameters: nsParams,
        get: op('list', 'list', [v2Query('labelSelector', 'A selector to restrict the list of returned objects by their labels.')], ref(def.listKind)),
        post: op('post', 'create', [body, ...WRITE_PARAMS], ref(def.kind)),
        delete: op('deletecollection', 'deleteCollection', [], { type: 'object' }),
      };
      paths[`${base}/{name}`] = {
        parameters: nameParams,
        get: op('get', 'read', [], ref(def.kind)),
        put: op('put', 'replace', [body, ...WRITE_PARAMS], ref(def.kind)),
        patch: patchOp(),
        delete: op('delete', 'delete', [v2Query('dryRun', 'When present, indicates that modifications should not be persisted. Valid value: All.')], { type: 'object' }),
      };
      if (def.statusSubresource) {
        paths[`${base}/{name}/status`] = {
          parameters: nameParams,
          get: op('get', 'read', [], ref(def.kind), { operationId: `${id('read')}Status` }),
          put: op('put', 'replace', [body, ...WRITE_PARAMS], ref(def.kind), { operationId: `${id('replace')}Status` }),
          patch: { ...patchOp(), operationId: `${id('patch')}Status` },
        };
      }
    }
  }
  return paths;
}

// ---- OpenAPI v2, gnostic protobuf ----

/** The swagger 2.0 document (as JSON); `openApiV2Protobuf` encodes it. */
export function openApiV2Document(resources: ResourceTable): Record<string, unknown> {
  return { swagger: '2.0', info: { title: 'Kubernetes', version: 'v1.32.0' }, paths: v2Paths(resources), definitions: kindSchemas(servedKinds(resources), 'v2') };
}

class Pb {
  private readonly parts: Buffer[] = [];

  private varint(n: number): void {
    const bytes: number[] = [];
    let v = BigInt(n);
    if (v < 0n) v += 1n << 64n;
    do {
      let b = Number(v & 0x7fn);
      v >>= 7n;
      if (v > 0n) b |= 0x80;
      bytes.push(b);
    } while (v > 0n);
    this.parts.push(Buffer.from(bytes));
  }
  private key(field: number, wire: number): void {
    this.varint((field << 3) | wire);
  }
  string(field: number, s: string | undefined): this {
    if (s === undefined || s === '') return this;
    return this.bytes(field, Buffer.from(s, 'utf8'));
  }
  bytes(field: number, b: Buffer): this {
    this.key(field, 2);
    this.varint(b.length);
    this.parts.push(b);
    return this;
  }
  message(field: number, m: Pb): this {
    return this.bytes(field, m.done());
  }
  int(field: number, n: unknown): this {
    if (typeof n !== 'number' || n === 0) return this;
    this.key(field, 0);
    this.varint(Math.trunc(n));
    return this;
  }
  bool(field: number, b: unknown): this {
    if (b !== true) return this;
    this.key(field, 0);
    this.varint(1);
    return this;
  }
  double(field: number, n: unknown): this {
    if (typeof n !== 'number') return this;
    this.key(field, 1);
    const b = Buffer.alloc(8);
    b.writeDoubleLE(n);
    this.parts.push(b);
    return this;
  }
  done(): Buffer {
    return Buffer.concat(this.parts);
  }
}

/** `Any{yaml}`: gnostic keeps vendor extensions and defaults as YAML text (JSON is YAML). */
const anyYaml = (v: unknown) => new Pb().string(2, JSON.stringify(v));

function schemaPb(s: SchemaNode): Pb {
  const m = new Pb();
  m.string(1, s.$ref as string | undefined);
  m.string(2, s.format as string | undefined);
  m.string(3, s.title as string | undefined);
  m.string(4, s.description as string | undefined);
  m.double(7, s.maximum);
  m.bool(8, s.exclusiveMaximum);
  m.double(9, s.minimum);
  m.bool(10, s.exclusiveMinimum);
  m.int(11, s.maxLength);
  m.int(12, s.minLength);
  m.string(13, s.pattern as string | undefined);
  m.int(14, s.maxItems);
  m.int(15, s.minItems);
  for (const r of Array.isArray(s.required) ? (s.required as string[]) : []) m.string(19, r);
  if (isObj(s.additionalProperties)) m.message(21, new Pb().message(1, schemaPb(s.additionalProperties)));
  if (typeof s.type === 'string') m.message(22, new Pb().string(1, s.type));
  if (isObj(s.items)) m.message(23, new Pb().message(1, schemaPb(s.items)));
  if (isObj(s.properties)) {
    const props = new Pb();
    for (const [k, v] of Object.entries(s.properties)) if (isObj(v)) props.message(1, new Pb().string(1, k).message(2, schemaPb(v)));
    m.message(25, props);
  }
  vendorExtensions(m, 31, s);
  return m;
}

/** Vendor extensions (`x-…` keys) as repeated NamedAny in `field`. */
function vendorExtensions(m: Pb, field: number, o: object): void {
  for (const [k, v] of Object.entries(o)) if (k.startsWith('x-')) m.message(field, new Pb().string(1, k).message(2, anyYaml(v)));
}

/** ParametersItem{parameter: Parameter{body_parameter | non_body_parameter{query | path}}}. */
function parameterPb(p: V2Param): Pb {
  let param: Pb;
  if (p.in === 'body') {
    param = new Pb().message(1, new Pb().string(1, p.description).string(2, p.name).string(3, 'body').bool(4, p.required).message(5, schemaPb(p.schema ?? {})));
  } else if (p.in === 'query') {
    const q = new Pb().bool(1, p.required).string(2, 'query').string(3, p.description).string(4, p.name).string(6, p.type).bool(20, p.uniqueItems);
    param = new Pb().message(2, new Pb().message(3, q));
  } else {
    const q = new Pb().bool(1, p.required).string(2, 'path').string(3, p.description).string(4, p.name).string(5, p.type).bool(19, p.uniqueItems);
    param = new Pb().message(2, new Pb().message(4, q));
  }
  return new Pb().message(1, param);
}

interface V2Operation {
  operationId: string;
  produces?: string[];
  consumes?: string[];
  parameters?: V2Param[];
  responses?: Record<string, { description: string; schema?: SchemaNode }>;
  schemes?: string[];
  [ext: `x-${string}`]: unknown;
}

function operationPb(op: V2Operation): Pb {
  const m = new Pb().string(5, op.operationId);
  for (const t of op.produces ?? []) m.string(6, t);
  for (const t of op.consumes ?? []) m.string(7, t);
  for (const p of op.parameters ?? []) m.message(8, parameterPb(p));
  const responses = new Pb();
  for (const [code, r] of Object.entries(op.responses ?? {})) {
    const resp = new Pb().string(1, r.description);
    if (r.schema) resp.message(2, new Pb().message(1, schemaPb(r.schema)));
    responses.message(1, new Pb().string(1, code).message(2, new Pb().message(1, resp)));
  }
  m.message(9, responses);
  for (const s of op.schemes ?? []) m.string(10, s);
  vendorExtensions(m, 13, op);
  return m;
}

const PATH_ITEM_FIELDS: Record<string, number> = { get: 2, put: 3, post: 4, delete: 5, patch: 8 };

function pathItemPb(item: Record<string, unknown>): Pb {
  const m = new Pb();
  for (const [verb, field] of Object.entries(PATH_ITEM_FIELDS)) {
    const op = item[verb];
    if (isObj(op)) m.message(field, operationPb(op as unknown as V2Operation));
  }
  for (const p of (item.parameters as V2Param[] | undefined) ?? []) m.message(9, parameterPb(p));
  return m;
}

export function openApiV2Protobuf(resources: ResourceTable): Buffer {
  const doc = openApiV2Document(resources);
  const info = doc.info as { title: string; version: string };
  const paths = new Pb();
  for (const [name, item] of Object.entries(doc.paths as Record<string, Record<string, unknown>>)) paths.message(2, new Pb().string(1, name).message(2, pathItemPb(item)));
  const defs = new Pb();
  for (const [name, s] of Object.entries(doc.definitions as Record<string, SchemaNode>)) defs.message(1, new Pb().string(1, name).message(2, schemaPb(s)));
  return new Pb().string(1, '2.0').message(2, new Pb().string(1, info.title).string(2, info.version)).message(8, paths).message(9, defs).done();
}
