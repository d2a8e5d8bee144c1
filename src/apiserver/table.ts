// `meta.k8s.io/v1 Table` answers for `kubectl get` (kube-api-notes §2.4): a Name column, then the
// CRD's additionalPrinterColumns (or a default Age column), cells computed with JSONPath, dates as
// HumanDuration, and each row's object as PartialObjectMetadata so -A and --show-labels work.

import type { PrinterColumn } from '../api/index.js';
import { jsonPath, printResults } from './jsonpath.js';
import { humanDuration } from '../api/duration.js';

const NAME_DESCRIPTION =
  'Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: http://kubernetes.io/docs/user-guide/identifiers#names';

export const DEFAULT_COLUMNS: PrinterColumn[] = [{ name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' }];

export interface TableColumnDefinition {
  name: string;
  type: string;
  format: string;
  description: string;
  priority: number;
}

export type IncludeObject = 'None' | 'Metadata' | 'Object';

export { humanDuration };

export function columnDefinitions(columns: PrinterColumn[]): TableColumnDefinition[] {
  const cols = columns.length > 0 ? columns : DEFAULT_COLUMNS;
  return [
    { name: 'Name', type: 'string', format: 'name', description: NAME_DESCRIPTION, priority: 0 },
    ...cols.map((c) => ({
      name: c.name,
      type: c.type,
      format: c.format ?? '',
      description: c.description ?? `Custom resource definition column (in JSONPath format): ${c.jsonPath}`,
      priority: c.priority ?? 0,
    })),
  ];
}

function cell(obj: unknown, col: PrinterColumn, now: number): unknown {
  let values: unknown[];
  try {
    values = jsonPath(obj, col.jsonPath);
  } catch {
    return null;
  }
  if (values.length === 0) return null;
  const v = values[0];
  switch (col.type) {
    case 'integer':
      return typeof v === 'number' ? Math.trunc(v) : null;
    case 'number':
      return typeof v === 'number' ? v : null;
    case 'boolean':
      return typeof v === 'boolean' ? v : null;
    case 'date': {
      if (typeof v !== 'string') return null;
      const t = Date.parse(v);
      return Number.isNaN(t) ? '<invalid>' : humanDuration(now - t);
    }
    default:
      return printResults(values);
  }
}

function partialMetadata(obj: Record<string, unknown>): Record<string, unknown> {
  return { kind: 'PartialObjectMetadata', apiVersion: 'meta.k8s.io/v1', metadata: obj.metadata ?? {} };
}

export interface TableOptions {
  columns: PrinterColumn[];
  resourceVersion: string;
  continueToken?: string;
  includeObject?: IncludeObject;
  /** Leave columnDefinitions out (null), as the real server does for watch events after the first. */
  noHeaders?: boolean;
  now?: number;
}

export function buildTable(objects: Record<string, unknown>[], opts: TableOptions): Record<string, unknown> {
  const now = opts.now ?? Date.now();
  const cols = opts.columns.length > 0 ? opts.columns : DEFAULT_COLUMNS;
  const include = opts.includeObject ?? 'Metadata';
  const rows = objects.map((o) => {
    const name = (o.metadata as Record<string, unknown> | undefined)?.name ?? '';
    const row: Record<string, unknown> = { cells: [name, ...cols.map((c) => cell(o, c, now))] };
    if (include === 'Metadata') row.object = partialMetadata(o);
    else if (include === 'Object') row.object = o;
    return row;
  });
  const metadata: Record<string, unknown> = { resourceVersion: opts.resourceVersion };
  if (opts.continueToken) metadata.continue = opts.continueToken;
  return {
    kind: 'Table',
    apiVersion: 'meta.k8s.io/v1',
    metadata,
    columnDefinitions: opts.noHeaders ? null : columnDefinitions(opts.columns),
    rows,
  };
}
