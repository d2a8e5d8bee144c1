// Reading manifests: multi-document YAML files into objects, with every problem named by file,
// document index (0-based, as stored in the `kubevz.io/source-doc` annotation), line and field.

import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { LineCounter, parseAllDocuments, type Document } from 'yaml';
import type { KubeObject } from '../api/types.js';
import { KvzError } from '../core/errors.js';

/** One object read from a manifest. */
export interface ManifestDoc {
  /** Absolute path, or a label such as `<stdin>`. */
  file: string;
  /** 0-based position of the document in its file (empty documents count). */
  index: number;
  /** 1-based line where the document starts. */
  line: number;
  object: KubeObject;
  /** 1-based line of a field such as `spec.template` when the YAML has it. */
  lineOf?: (field: string) => number | undefined;
}

/** A manifest that cannot be applied: which file, which document, which field, and why. */
export interface ManifestProblem {
  file: string;
  index: number;
  line?: number;
  /** Dotted path such as `spec.resources.memory.limit`; absent for whole-document problems. */
  field?: string;
  message: string;
}

export function formatProblem(p: ManifestProblem): string {
  const where = `${p.file}: document ${p.index}${p.line !== undefined ? ` (line ${p.line})` : ''}`;
  return `${where}: ${p.field ? `${p.field}: ` : ''}${p.message}`;
}

export interface ParsedManifests {
  docs: ManifestDoc[];
  problems: ManifestProblem[];
}

/** Parses every YAML document of `text`; empty documents are skipped but keep their index. */
export function parseManifests(text: string, file: string): ParsedManifests {
  const lineCounter = new LineCounter();
  const parsed = parseAllDocuments(text, { lineCounter, prettyErrors: false });
  const docs: ManifestDoc[] = [];
  const problems: ManifestProblem[] = [];
  // parseAllDocuments returns an EmptyStream (not an array) for an empty file.
  const list: Document[] = Array.isArray(parsed) ? (parsed as Document[]) : [];
  const seen = new Map<string, number>();
  list.forEach((doc, index) => {
    // The first line of content (doc.range starts at the `---` marker).
    const contentsStart = (doc.contents as { range?: [number, number, number] } | null)?.range?.[0];
    const line = lineCounter.linePos(contentsStart ?? doc.range?.[0] ?? 0).line;
    if (doc.errors.length > 0) {
      for (const err of doc.errors) {
        const errLine = err.linePos?.[0]?.line ?? line;
        problems.push({ file, index, line: errLine, message: `invalid YAML: ${firstLine(err.message)}` });
      }
      return;
    }
    const value: unknown = doc.toJS({ maxAliasCount: 100 });
    if (value === null || value === undefined) return;
    // The line of the field, or of its nearest parent that exists (a missing field's mapping).
    const lineOf = (field: string): number | undefined => {
      const path = fieldPath(field);
      for (let n = path.length; n > 0; n--) {
        const node = doc.getIn(path.slice(0, n), true) as { range?: [number, number, number] } | undefined;
        if (node?.range) return lineCounter.linePos(node.range[0]).line;
      }
      return undefined;
    };
    const problem = checkObject(value);
    if (problem) {
      problems.push({ file, index, line: (problem.field && lineOf(problem.field)) || line, ...problem });
      return;
    }
    const object = value as KubeObject;
    const key = `${object.apiVersion}/${object.kind}/${object.metadata?.namespace ?? ''}/${object.metadata?.name}`;
    const first = seen.get(key);
    if (first !== undefined) {
      problems.push({ file, index, line: lineOf('metadata.name') ?? line, field: 'metadata.name', message: `duplicate of document ${first} (same kind, namespace and name)` });
      return;
    }
    seen.set(key, index);
    docs.push({ file, index, line, object, lineOf });
  });
  return { docs, problems };
}

/** The checks every object needs before it can be sent anywhere (the server checks the rest). */
function checkObject(value: unknown): { field?: string; message: string } | undefined {
  if (typeof value !== 'object' || Array.isArray(value)) return { message: `expected a mapping (an object with apiVersion, kind and metadata), got ${Array.isArray(value) ? 'a list' : typeof value}` };
  const o = value as Record<string, unknown>;
  if (typeof o.apiVersion !== 'string' || o.apiVersion === '') return { field: 'apiVersion', message: 'Required value: set apiVersion, e.g. kubevz.io/v1alpha1' };
  if (typeof o.kind !== 'string' || o.kind === '') return { field: 'kind', message: 'Required value: set kind, e.g. VirtualEnvironment' };
  const meta = o.metadata;
  if (typeof meta !== 'object' || meta === null || Array.isArray(meta)) return { field: 'metadata', message: 'Required value: set metadata.name' };
  const m = meta as Record<string, unknown>;
  if (typeof m.name !== 'string' || m.name === '') {
    return { field: 'metadata.name', message: m.generateName ? 'Required value: generateName is not supported by apply; set a name' : 'Required value' };
  }
  if (m.namespace !== undefined && (typeof m.namespace !== 'string' || m.namespace === '')) return { field: 'metadata.namespace', message: 'Invalid value: must be a non-empty string' };
  return undefined;
}

/** `spec.addresses[0]` → ['spec', 'addresses', 0]. */
function fieldPath(field: string): (string | number)[] {
  const out: (string | number)[] = [];
  for (const part of field.split('.')) {
    const m = /^([^[\]]*)((?:\[\d+\])*)$/.exec(part);
    if (!m) {
      out.push(part);
      continue;
    }
    if (m[1]) out.push(m[1]);
    for (const idx of (m[2] ?? '').matchAll(/\[(\d+)\]/g)) out.push(Number(idx[1]));
  }
  return out;
}

function firstLine(s: string): string {
  return s.split('\n')[0] ?? s;
}

export function isManifestFile(path: string): boolean {
  const base = path.slice(path.lastIndexOf('/') + 1);
  return /\.ya?ml$/i.test(base) && !base.startsWith('.');
}

/**
 * The manifest files named by `path`: the file itself, or the *.yaml/*.yml files of a directory
 * (sorted; subdirectories only with `recursive`, as kubectl's -R).
 */
export function listManifestFiles(path: string, recursive = false): string[] {
  const abs = resolve(path);
  let st;
  try {
    st = statSync(abs);
  } catch (err) {
    throw new KvzError('NotFound', `the path "${path}" does not exist`, { cause: err });
  }
  if (!st.isDirectory()) return [abs];
  const out: string[] = [];
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const p = join(dir, entry.name);
      if (entry.isDirectory()) {
        if (recursive && !entry.name.startsWith('.')) walk(p);
      } else if (isManifestFile(p)) out.push(p);
    }
  };
  walk(abs);
  return out;
}

/** Reads and parses one manifest file. */
export function readManifestFile(file: string): ParsedManifests {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    return { docs: [], problems: [{ file, index: 0, message: `cannot read: ${(err as Error).message}` }] };
  }
  return parseManifests(text, file);
}
