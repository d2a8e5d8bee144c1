// The engine every desired-state source shares (watched directory, Git): validate a set of
// changed files, apply them with server-side apply under the source's field manager, prune
// what they no longer declare, and keep the inventory of what each file applied.
//
// Inventory: where "what did file F apply" is kept durably. Two records, on purpose:
//  * an inventory file (JSON, `<state-dir>/sources/<kind>-<hash>.json`, written atomically by
//    rename) listing per file the objects (kind, namespace, name, uid) and the applied revision.
//    It is written *before* the objects (old ∪ new, so a crash mid-pass loses track of nothing)
//    and again after the pass (exact);
//  * annotations on each object (`kubevz.io/source`, `kubevz.io/source-file`,
//    `kubevz.io/source-doc`), which survive a lost state dir and let a prune check, right before
//    deleting, that the object is still this source's (same uid, same source annotation).
// A dedicated API object was the alternative; it would need its own CRD on real clusters and
// RBAC, and a ConfigMap is not served by the embedded server.
//
// Atomicity: every document is validated locally against the CRD schemas and then by the
// server with a dry-run apply before anything is written. With `atomic` (Git: one commit) one
// bad document rejects the whole pass; otherwise (directory) it rejects its file only.

import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { KvzError, errorCode, errorMessage } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { ResourceRef } from '../core/resource-client.js';
import {
  SOURCE_ANNOTATION, SOURCE_DOC_ANNOTATION, SOURCE_FILE_ANNOTATION, actionOf, applyConfiguration, displayName, isManifestError, objectId, planObjects, problemsFrom,
  type AppliedObject, type ObjectRef, type PlannedDoc,
} from './apply.js';
import type { ApplyTarget } from './kinds.js';
import type { ManifestProblem, ParsedManifests } from './manifests.js';
import { crdValidator, schemaProblems, type LocalValidator } from './validate.js';

/** One object a file applied, as the inventory keeps it. */
export interface InventoryItem extends ObjectRef {
  /** The uid the object had when this source applied it; a prune spares an object with another uid. */
  uid?: string;
}

interface InventoryFile {
  sourceId: string;
  fieldManager: string;
  revision?: string;
  updatedAt: string;
  files: Record<string, { ref: ResourceRef; namespace?: string; name: string; uid?: string }[]>;
}

/** A changed file: its parsed content, or `removed`. */
export type FileChange = { file: string; parsed: ParsedManifests } | { file: string; removed: true };

export interface SyncResult {
  applied: AppliedObject[];
  pruned: ObjectRef[];
  /** Files whose documents were rejected (nothing of theirs changed), with every problem. */
  rejected: Map<string, ManifestProblem[]>;
}

export interface SourceSyncOptions {
  target: ApplyTarget;
  log: Logger;
  /** Stable identity of the source, stored in the `kubevz.io/source` annotation. */
  sourceId: string;
  fieldManager: string;
  /** Where the inventory is kept; without it, ownership comes from annotations only. */
  inventoryFile?: string;
  /** Namespace for objects whose manifest has none. Default "default". */
  namespace?: string;
  /** Default: the CRD schemas in crds/. */
  validate?: LocalValidator;
  /** Take over fields that other managers own (a source is the declared truth). Default true. */
  force?: boolean;
  /** Objects without a source annotation that this source owns anyway (written by older versions). */
  legacyOwner?: (sourceFile: string) => boolean;
}

export class SourceSync {
  private readonly inventory = new Map<string, Map<string, InventoryItem>>();
  private readonly validate: LocalValidator;
  private revisionValue?: string;

  constructor(private readonly o: SourceSyncOptions) {
    this.validate = o.validate ?? crdValidator();
  }

  /** The revision (Git commit) recorded with the last successful pass. */
  get revision(): string | undefined {
    return this.revisionValue;
  }

  /** Files that own objects now. */
  files(): string[] {
    return [...this.inventory.keys()].filter((f) => (this.inventory.get(f)?.size ?? 0) > 0).sort();
  }

  /** Object ids a file owns (`VirtualEnvironment.kubevz.io/default/web1`). */
  owned(file: string): string[] {
    return [...(this.inventory.get(file)?.keys() ?? [])];
  }

  /** Reads the inventory file, then adds objects that carry this source's annotations. */
  async load(): Promise<void> {
    if (this.o.inventoryFile && existsSync(this.o.inventoryFile)) {
      let data: InventoryFile;
      try {
        data = JSON.parse(readFileSync(this.o.inventoryFile, 'utf8')) as InventoryFile;
      } catch (err) {
        throw new KvzError('Invalid', `cannot read the source inventory ${this.o.inventoryFile}: ${errorMessage(err)}; move it away to rebuild it from the objects' annotations`, { cause: err });
      }
      this.revisionValue = data.revision;
      for (const [file, items] of Object.entries(data.files ?? {})) for (const it of items) this.ownedBy(file).set(objectId(it), it);
    }
    for (const ref of await this.o.target.kinds()) {
      let items;
      try {
        items = await this.o.target.client(ref).list();
      } catch (err) {
        // A kind from the local CRDs that this server does not serve has no objects to own.
        if (errorCode(err) === 'NotFound') continue;
        throw err;
      }
      for (const o of items) {
        const ann = o.metadata?.annotations ?? {};
        const file = ann[SOURCE_FILE_ANNOTATION];
        if (!file || !o.metadata?.name || !this.isOurs(ann)) continue;
        const item: InventoryItem = { ref, name: o.metadata.name, namespace: ref.namespaced ? o.metadata.namespace : undefined, uid: o.metadata.uid };
        const id = objectId(item);
        if (![...this.inventory.values()].some((m) => m.has(id))) this.ownedBy(file).set(id, item);
      }
    }
  }

  private isOurs(ann: Record<string, string>): boolean {
    const src = ann[SOURCE_ANNOTATION];
    if (src !== undefined) return src === this.o.sourceId;
    const file = ann[SOURCE_FILE_ANNOTATION];
    return !!file && !!this.o.legacyOwner?.(file);
  }

  private ownedBy(file: string): Map<string, InventoryItem> {
    let m = this.inventory.get(file);
    if (!m) this.inventory.set(file, (m = new Map()));
    return m;
  }

  /**
   * Validates, applies and prunes one set of changes. Throws only for errors that are not the
   * manifests' fault (server unreachable): then the caller retries the same changes later.
   */
  async sync(changes: FileChange[], opts: { atomic: boolean; revision?: string }): Promise<SyncResult> {
    const rejected = new Map<string, ManifestProblem[]>();
    const reject = (ps: ManifestProblem[]) => {
      for (const p of ps) rejected.set(p.file, [...(rejected.get(p.file) ?? []), p]);
    };
    const changed = new Map(changes.map((c) => [c.file, c]));

    // 1. Parse problems, kinds, schemas.
    const planned = new Map<string, PlannedDoc[]>();
    for (const c of changed.values()) {
      if ('removed' in c) continue;
      reject(c.parsed.problems);
      const plan = await planObjects(this.o.target, c.parsed.docs, this.o.namespace);
      reject(plan.problems);
      reject(schemaProblems(this.validate, plan.planned));
      planned.set(c.file, plan.planned);
    }

    // 2. One declaration per object across the source's files.
    const accepted = () => [...planned.keys()].filter((f) => !rejected.has(f));
    const declaredBy = new Map<string, string>();
    for (const [file, items] of this.inventory) if (!changed.has(file)) for (const id of items.keys()) declaredBy.set(id, file);
    for (const file of [...planned.keys()].sort()) {
      for (const { doc, obj } of planned.get(file) ?? []) {
        const other = declaredBy.get(objectId(obj));
        if (other !== undefined && other !== file) {
          reject([{ file, index: doc.index, line: doc.lineOf?.('metadata.name') ?? doc.line, field: 'metadata.name', message: `${displayName(obj)} is already declared in ${other}` }]);
        } else declaredBy.set(objectId(obj), file);
      }
    }
    if (opts.atomic && rejected.size > 0) return { applied: [], pruned: [], rejected };

    // 3. Server-side dry-run of every accepted document: what the server would reject, before any write.
    const before = new Map<PlannedDoc, string | undefined>();
    for (const file of accepted()) {
      for (const p of planned.get(file) ?? []) {
        try {
          const dry = await this.o.target.client(p.obj.ref).applyPatch(this.configuration(p), { fieldManager: this.o.fieldManager, force: this.o.force ?? true, dryRun: true });
          before.set(p, dry.metadata?.resourceVersion || undefined);
        } catch (err) {
          if (!isManifestError(err)) throw err;
          reject(problemsFrom(err, p.doc));
        }
      }
    }
    if (opts.atomic && rejected.size > 0) return { applied: [], pruned: [], rejected };

    // 4. Write-ahead: the inventory names the new objects before they exist.
    const files = [...accepted(), ...[...changed.values()].filter((c) => 'removed' in c).map((c) => c.file)];
    for (const file of accepted()) for (const { obj } of planned.get(file) ?? []) if (!this.ownedBy(file).has(objectId(obj))) this.ownedBy(file).set(objectId(obj), obj);
    this.save();

    // 5. Apply.
    const applied: AppliedObject[] = [];
    for (const file of accepted()) {
      const now = new Map<string, InventoryItem>();
      for (const p of planned.get(file) ?? []) {
        const object = await this.o.target.client(p.obj.ref).applyPatch(this.configuration(p), { fieldManager: this.o.fieldManager, force: this.o.force ?? true });
        applied.push({ ...p.obj, doc: p.doc, action: actionOf(before.get(p), object), object });
        now.set(objectId(p.obj), { ...p.obj, uid: object.metadata?.uid });
      }
      // Objects the file declared before and no longer does stay listed until pruned below.
      for (const [id, it] of this.inventory.get(file) ?? []) if (!now.has(id)) now.set(id, it);
      this.inventory.set(file, now);
    }

    // 6. Prune what the processed files applied and nothing in the source declares any more.
    const declared = new Set<string>();
    for (const [file, items] of this.inventory) {
      if (!changed.has(file) || rejected.has(file)) for (const id of items.keys()) declared.add(id);
    }
    for (const file of accepted()) for (const { obj } of planned.get(file) ?? []) declared.add(objectId(obj));
    const pruned: ObjectRef[] = [];
    for (const file of files) {
      const items = this.inventory.get(file);
      if (!items) continue;
      const mine = new Set((planned.get(file) ?? []).map((p) => objectId(p.obj)));
      for (const [id, it] of items) {
        if (mine.has(id) && !rejected.has(file)) continue;
        // Declared by another file now (moved): that file owns it; nothing to delete.
        if (!declared.has(id) && (await this.prune(it, file))) pruned.push(it);
        items.delete(id);
      }
      if (items.size === 0) this.inventory.delete(file);
    }
    if (opts.revision !== undefined && (!opts.atomic || rejected.size === 0)) this.revisionValue = opts.revision;
    this.save();
    return { applied, pruned, rejected };
  }

  private configuration(p: PlannedDoc) {
    return applyConfiguration(p.doc, p.obj, {
      [SOURCE_ANNOTATION]: this.o.sourceId,
      [SOURCE_FILE_ANNOTATION]: p.doc.file,
      [SOURCE_DOC_ANNOTATION]: String(p.doc.index),
    });
  }

  /** Deletes an object this source applied, unless it is gone, was recreated, or now belongs to someone else. */
  private async prune(it: InventoryItem, file: string): Promise<boolean> {
    const client = this.o.target.client(it.ref);
    const live = await client.get(it.name, it.namespace);
    if (!live) return false;
    const ann = live.metadata?.annotations ?? {};
    if (!this.isOurs(ann) || (it.uid !== undefined && live.metadata?.uid !== it.uid)) {
      this.o.log.info({ object: displayName(it), file, source: ann[SOURCE_ANNOTATION] }, 'not pruning an object that is no longer this source\'s');
      return false;
    }
    return client.delete(it.name, it.namespace);
  }

  private save(): void {
    const path = this.o.inventoryFile;
    if (!path) return;
    const data: InventoryFile = {
      sourceId: this.o.sourceId,
      fieldManager: this.o.fieldManager,
      revision: this.revisionValue,
      updatedAt: new Date().toISOString(),
      files: Object.fromEntries([...this.inventory].filter(([, m]) => m.size > 0).map(([f, m]) => [f, [...m.values()].map((it) => ({ ref: it.ref, namespace: it.namespace, name: it.name, uid: it.uid }))])),
    };
    mkdirSync(dirname(path), { recursive: true });
    const tmp = `${path}.tmp-${process.pid}`;
    writeFileSync(tmp, `${JSON.stringify(data, null, 2)}\n`);
    renameSync(tmp, path);
  }
}
