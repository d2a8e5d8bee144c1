// Validation of custom resources against their CRD's openAPIV3Schema, the way the Kubernetes API
// server does it: prune unknown fields (KEP-2332), apply `default:`s, then validate (ajv) and report
// every failing field as a path such as `spec.resources.memory.limit` with a reason.

import { isObject as isObj } from './json.js';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import type { CustomResourceDefinition, SchemaNode } from './crds.js';

export type FieldErrorReason =
  | 'FieldValueRequired'
  | 'FieldValueInvalid'
  | 'FieldValueNotSupported'
  | 'FieldValueTypeInvalid'
  | 'FieldValueTooLong'
  | 'FieldValueTooMany'
  | 'FieldValueForbidden'
  | 'FieldValueDuplicate';

/** One failing field, shaped like a Kubernetes `StatusCause`. */
export interface FieldError {
  reason: FieldErrorReason;
  field: string;
  /** Without the field: `Required value`, `Invalid value: 5: ...`. */
  message: string;
}

export interface ValidationResult {
  /** The pruned and defaulted object (a copy; the input is not changed). */
  object: Record<string, unknown>;
  errors: FieldError[];
  /** Paths of unknown fields that were dropped (for `fieldValidation=Strict|Warn`). */
  pruned: string[];
}

export type ObjectValidator = (obj: unknown) => ValidationResult;

// Formats Kubernetes knows; unknown ones are ignored, as the real server does.
const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;
const isInt = (n: number): boolean => Number.isInteger(n);

function newAjv(): Ajv {
  return new Ajv({
    allErrors: true,
    useDefaults: true,
    strict: false,
    logger: false,
    validateFormats: true,
    formats: {
      'date-time': RFC3339,
      date: /^\d{4}-\d{2}-\d{2}$/,
      int32: { type: 'number', validate: isInt },
      int64: { type: 'number', validate: isInt },
      float: { type: 'number', validate: () => true },
      double: { type: 'number', validate: () => true },
      byte: /^[A-Za-z0-9+/]*={0,2}$/,
    },
  });
}

const ajvInstance = newAjv();

/** Compile one openAPIV3Schema into a validator that prunes, defaults and validates. */
export function compileSchema(schema: SchemaNode): ObjectValidator {
  const root = withRootFields(schema);
  const validate: ValidateFunction = ajvInstance.compile(toJsonSchema(root));
  return (input: unknown) => {
    const object = structuredClone(input) as Record<string, unknown>;
    const pruned: string[] = [];
    pruneNode(object, root, '', pruned, true);
    validate(object);
    const errors = dedupe((validate.errors ?? []).flatMap((e) => toFieldError(e, object)));
    return { object, errors, pruned };
  };
}

/** Validators for each version of a CRD, keyed by version name. Versions without a schema accept anything. */
export function compileCrd(crd: CustomResourceDefinition): Map<string, ObjectValidator> {
  const out = new Map<string, ObjectValidator>();
  for (const v of crd.spec.versions) {
    const schema = v.schema?.openAPIV3Schema;
    out.set(
      v.name,
      schema ? compileSchema(schema) : (obj) => ({ object: structuredClone(obj) as Record<string, unknown>, errors: [], pruned: [] }),
    );
  }
  return out;
}

/** "a.b: Required value, ..." in the form kubectl prints (one error bare, several in brackets). */
export function formatFieldErrors(errors: FieldError[]): string {
  const parts = errors.map((e) => `${e.field}: ${e.message}`);
  return parts.length === 1 ? (parts[0] ?? '') : `[${parts.join(', ')}]`;
}

// apiVersion, kind and metadata belong to the server; a CRD schema may omit them.
function withRootFields(schema: SchemaNode): SchemaNode {
  const props = { ...((schema.properties as Record<string, SchemaNode> | undefined) ?? {}) };
  props.apiVersion ??= { type: 'string' };
  props.kind ??= { type: 'string' };
  props.metadata ??= { type: 'object' };
  return { ...schema, type: 'object', properties: props };
}


const PASS_THROUGH = [
  'enum', 'pattern', 'minLength', 'maxLength', 'minimum', 'maximum', 'minItems', 'maxItems', 'uniqueItems',
  'minProperties', 'maxProperties', 'multipleOf', 'format', 'default', 'required',
] as const;

/** OpenAPI v3.0 + x-kubernetes-* → plain JSON Schema for ajv. Pruning is done separately (pruneNode). */
function toJsonSchema(node: SchemaNode): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of PASS_THROUGH) if (node[k] !== undefined) out[k] = node[k];
  let type: unknown = node.type;
  if (node['x-kubernetes-int-or-string'] === true) type = ['integer', 'string'];
  if (type !== undefined) out.type = node.nullable === true && typeof type === 'string' ? [type, 'null'] : type;
  if (node.nullable === true && Array.isArray(type)) out.type = [...(type as string[]), 'null'];
  // OpenAPI 3.0 has boolean exclusiveMinimum/Maximum; JSON Schema draft-07 wants the number.
  if (node.exclusiveMinimum === true && typeof node.minimum === 'number') {
    out.exclusiveMinimum = node.minimum;
    delete out.minimum;
  }
  if (node.exclusiveMaximum === true && typeof node.maximum === 'number') {
    out.exclusiveMaximum = node.maximum;
    delete out.maximum;
  }
  if (isObj(node.properties)) {
    const props: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(node.properties)) if (isObj(v)) props[k] = toJsonSchema(v);
    out.properties = props;
  }
  if (isObj(node.additionalProperties)) out.additionalProperties = toJsonSchema(node.additionalProperties);
  if (isObj(node.items)) out.items = toJsonSchema(node.items);
  for (const j of ['allOf', 'anyOf', 'oneOf'] as const) {
    const list = node[j];
    if (Array.isArray(list)) out[j] = list.filter(isObj).map(toJsonSchema);
  }
  if (isObj(node.not)) out.not = toJsonSchema(node.not);
  return out;
}

function childPath(path: string, key: string): string {
  return path === '' ? key : `${path}.${key}`;
}

/**
 * Drops fields the schema does not specify (unless under x-kubernetes-preserve-unknown-fields),
 * and nulls for non-nullable fields (so a default can apply; kubernetes#95423). Root metadata is
 * the server's business and is left alone.
 */
function pruneNode(value: unknown, schema: SchemaNode, path: string, pruned: string[], isRoot = false): void {
  if (Array.isArray(value)) {
    if (isObj(schema.items)) value.forEach((v, i) => pruneNode(v, schema.items as SchemaNode, `${path}[${i}]`, pruned));
    return;
  }
  if (!isObj(value)) return;
  const preserve = schema['x-kubernetes-preserve-unknown-fields'] === true;
  const embedded = schema['x-kubernetes-embedded-resource'] === true;
  const props = isObj(schema.properties) ? (schema.properties as Record<string, SchemaNode>) : undefined;
  const additional = schema.additionalProperties;
  for (const key of Object.keys(value)) {
    const sub = props?.[key] ?? (isObj(additional) ? additional : undefined);
    const v = value[key];
    if (isRoot && key === 'metadata') continue;
    if (embedded && (key === 'apiVersion' || key === 'kind' || key === 'metadata')) continue;
    if (sub === undefined) {
      if (preserve || additional === true) continue;
      delete value[key];
      pruned.push(childPath(path, key));
      continue;
    }
    if (v === null && sub.nullable !== true) {
      delete value[key];
      continue;
    }
    pruneNode(v, sub, childPath(path, key), pruned);
  }
}

/** JSON pointer from ajv → `spec.list[0].name`, using the data to tell array indexes from keys. */
function fieldPath(pointer: string, data: unknown): { path: string; value: unknown } {
  let path = '';
  let cur: unknown = data;
  if (pointer === '') return { path, value: cur };
  for (const raw of pointer.slice(1).split('/')) {
    const seg = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (Array.isArray(cur)) {
      path += `[${seg}]`;
      cur = cur[Number(seg)];
    } else {
      path = childPath(path, seg);
      cur = isObj(cur) ? cur[seg] : undefined;
    }
  }
  return { path, value: cur };
}

/** Go-like rendering of a value in an error message: strings quoted, numbers bare. */
function show(v: unknown): string {
  return JSON.stringify(v) ?? 'null';
}

function toFieldError(e: ErrorObject, data: unknown): FieldError[] {
  const { path, value } = fieldPath(e.instancePath, data);
  const p = e.params as Record<string, unknown>;
  const inBody = `${path} in body`;
  switch (e.keyword) {
    case 'required':
      return [{ reason: 'FieldValueRequired', field: childPath(path, String(p.missingProperty)), message: 'Required value' }];
    case 'enum': {
      const allowed = (p.allowedValues as unknown[]).map(show).join(', ');
      return [{ reason: 'FieldValueNotSupported', field: path, message: `Unsupported value: ${show(value)}: supported values: ${allowed}` }];
    }
    case 'type': {
      const t = Array.isArray(p.type) ? (p.type as string[]).filter((x) => x !== 'null').join('-or-') : String(p.type);
      const got = value === null ? 'null' : Array.isArray(value) ? 'array' : typeof value === 'object' ? 'object' : typeof value;
      return [{ reason: 'FieldValueTypeInvalid', field: path, message: `Invalid value: ${show(got)}: ${inBody} must be of type ${t}: ${show(got)}` }];
    }
    case 'pattern':
      return [{ reason: 'FieldValueInvalid', field: path, message: `Invalid value: ${show(value)}: ${inBody} should match '${String(p.pattern)}'` }];
    case 'minimum':
    case 'exclusiveMinimum':
      return [{ reason: 'FieldValueInvalid', field: path, message: `Invalid value: ${show(value)}: ${inBody} should be greater than ${e.keyword === 'minimum' ? 'or equal to ' : ''}${String(p.limit)}` }];
    case 'maximum':
    case 'exclusiveMaximum':
      return [{ reason: 'FieldValueInvalid', field: path, message: `Invalid value: ${show(value)}: ${inBody} should be less than ${e.keyword === 'maximum' ? 'or equal to ' : ''}${String(p.limit)}` }];
    case 'maxLength':
      return [{ reason: 'FieldValueTooLong', field: path, message: `Too long: may not be longer than ${String(p.limit)}` }];
    case 'minLength':
      return [{ reason: 'FieldValueInvalid', field: path, message: `Invalid value: ${show(value)}: ${inBody} should be at least ${String(p.limit)} chars long` }];
    case 'maxItems':
      return [{ reason: 'FieldValueTooMany', field: path, message: `Too many: ${Array.isArray(value) ? value.length : '?'}: must have at most ${String(p.limit)} items` }];
    case 'minItems':
      return [{ reason: 'FieldValueInvalid', field: path, message: `Invalid value: ${show(value)}: ${inBody} should have at least ${String(p.limit)} items` }];
    case 'format':
      return [{ reason: 'FieldValueInvalid', field: path, message: `Invalid value: ${show(value)}: ${inBody} must be of type ${String(p.format)}: ${show(value)}` }];
    case 'uniqueItems':
      return [{ reason: 'FieldValueDuplicate', field: `${path}[${String(p.j)}]`, message: `Duplicate value: ${show(Array.isArray(value) ? value[Number(p.j)] : undefined)}` }];
    case 'anyOf':
    case 'oneOf':
      return []; // the branches' own errors say more
    default:
      return [{ reason: 'FieldValueInvalid', field: path, message: `Invalid value: ${show(value)}: ${e.message ?? e.keyword}` }];
  }
}

function dedupe(errors: FieldError[]): FieldError[] {
  const seen = new Set<string>();
  return errors.filter((e) => {
    const k = `${e.field}\u0000${e.message}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}
