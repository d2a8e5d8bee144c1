// The SQLite store (after k3s' kine, simplified for a single writer): `objects` holds the current
// state for fast get/list, `log` is the append-only change log that watches replay from. The log's
// rowid is the global revision = metadata.resourceVersion, kept monotonic across compaction and
// restarts (see loadRev). Events are fanned out in-process right after each commit, so no polling.
// Stored bodies are the JSON.stringify of the object, so lists and answers can send them as they are.

import Database from 'better-sqlite3';
import { closeSync, mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';

export type Obj = Record<string, unknown> & { metadata: Record<string, unknown> };
export type EventType = 'ADDED' | 'MODIFIED' | 'DELETED';

export interface StoreEvent {
  type: EventType;
  resource: string;
  namespace: string;
  name: string;
  rev: number;
  object: Obj;
  /** The previous state (live events only; replayed events do not carry it). */
  prev?: Obj;
}

export type StoreListener = (ev: StoreEvent) => void;

/** The stored JSON text of objects this store just wrote or read (see storedJson). */
const texts = new WeakMap<object, string>();

/**
 * The JSON text `o` was stored as, if `o` came from this store's get or write: byte for byte
 * JSON.stringify(o) as long as nobody changed `o` since, which callers do not (they copy). Lets an
 * answer skip serialising the object again.
 */
export function storedJson(o: object): string | undefined {
  return texts.get(o);
}

function parseStored(text: string): Obj {
  const o = JSON.parse(text) as Obj;
  texts.set(o, text);
  return o;
}

/** Why a write was refused; the registry turns these into Status errors. */
export class StoreConflict extends Error {
  constructor(readonly kind: 'exists' | 'missing' | 'modified') {
    super(kind);
  }
}

interface Row {
  rev: number;
  body: string;
}

/** Which rows a list reads: one namespace (or all), one name (or all), and where a page starts. */
export interface ScanRange {
  namespace?: string;
  name?: string;
  /** Continue strictly after this namespace/name (the last item of the previous page). */
  after?: { namespace: string; name: string };
}

function scanQuery(column: string, resource: string, range: ScanRange): { sql: string; args: unknown[] } {
  let sql = `SELECT ${column} FROM objects WHERE resource = ?`;
  const args: unknown[] = [resource];
  if (range.namespace !== undefined) {
    sql += ` AND namespace = ?`;
    args.push(range.namespace);
  }
  if (range.name !== undefined) {
    sql += ` AND name = ?`;
    args.push(range.name);
  }
  if (range.after) {
    // A row value compares namespace first, then name: the same order as ORDER BY below.
    sql += ` AND (namespace, name) > (?, ?)`;
    args.push(range.after.namespace, range.after.name);
  }
  return { sql: `${sql} ORDER BY namespace, name`, args };
}

interface LogRow {
  rev: number;
  resource: string;
  namespace: string;
  name: string;
  type: EventType;
  body: string;
}

export class Store {
  private readonly db: Database.Database;
  private readonly listeners = new Set<StoreListener>();
  private rev: number;
  private compacted: number;
  private readonly statements = new Map<string, Database.Statement>();
  private readonly writeTx: Database.Transaction<Store['writeInTx']>;

  constructor(path: string) {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    // Create the file 0600 first: SQLite gives the -wal and -shm files the same mode.
    closeSync(openSync(path, 'a', 0o600));
    this.db = new Database(path);
    this.db.pragma('journal_mode = WAL');
    // WAL + synchronous=NORMAL: a commit is in the WAL file (the OS page cache) when it returns, so
    // it survives a crash of this process (kill -9); the WAL is fsynced at checkpoints, so only an
    // OS crash or power loss can lose the newest commits (never corrupt the database).
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('busy_timeout = 5000');
    // One process owns the database: exclusive locking saves the file-lock system calls of every
    // transaction and the shared-memory wal-index, and a second server on the same state dir is
    // refused (SQLITE_BUSY) instead of numbering revisions behind the first one's back.
    this.db.pragma('locking_mode = EXCLUSIVE');
    // Room for the whole current state in SQLite's page cache (a ceiling, used as the data grows):
    // with the 2 MiB default a list of 10,000 objects (~8 MB) re-reads most pages from the OS.
    this.db.pragma('cache_size = -65536');
    // New databases: no AUTOINCREMENT (its sqlite_sequence row is one more page written per
    // commit) and no (resource, rev) index on the log (one more page per commit; a watch replays
    // the retention window in rev order and skips other resources). Revisions stay monotonic
    // across compaction and restarts through meta.compact_rev (see loadRev). Databases created
    // before keep their table definitions and work the same.
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS objects (
        resource TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
        rev INTEGER NOT NULL, body TEXT NOT NULL,
        PRIMARY KEY (resource, namespace, name));
      CREATE TABLE IF NOT EXISTS log (
        rev INTEGER PRIMARY KEY,
        resource TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
        type TEXT NOT NULL CHECK (type IN ('ADDED','MODIFIED','DELETED')),
        body TEXT NOT NULL, ts INTEGER NOT NULL);
      DROP INDEX IF EXISTS log_resource_rev;
      CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL);
    `);
    const c = this.stmt(`SELECT v FROM meta WHERE k = 'compact_rev'`).get() as { v: number } | undefined;
    this.compacted = c?.v ?? 0;
    this.rev = this.loadRev();
    this.writeTx = this.db.transaction(this.writeInTx.bind(this));
  }

  /**
   * The newest revision ever handed out: the log's newest row, else (everything compacted away)
   * the compaction point, which is the newest revision at that time. A database from before
   * (AUTOINCREMENT) also has it in sqlite_sequence.
   */
  private loadRev(): number {
    const top = this.stmt(`SELECT MAX(rev) AS rev FROM log`).get() as { rev: number | null };
    const hasSeq = this.stmt(`SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'`).get() !== undefined;
    const seq = hasSeq ? (this.db.prepare(`SELECT seq FROM sqlite_sequence WHERE name = 'log'`).get() as { seq: number } | undefined) : undefined;
    return Math.max(top.rev ?? 0, this.compacted, seq?.seq ?? 0);
  }

  /** Prepared statements are cached: preparing one costs more than running it. */
  private stmt(sql: string): Database.Statement {
    let st = this.statements.get(sql);
    if (!st) this.statements.set(sql, (st = this.db.prepare(sql)));
    return st;
  }

  /** A cached statement that returns its single column's values instead of row objects. */
  private column(sql: string): Database.Statement {
    const key = `column: ${sql}`;
    let st = this.statements.get(key);
    if (!st) this.statements.set(key, (st = this.db.prepare(sql).pluck()));
    return st;
  }

  /**
   * Current objects' stored JSON texts in namespace/name order (`namespace` undefined: all of
   * them; `name`: only that one), strictly after `after` when given. Rows are pulled one at a
   * time, so a caller that has a page full stops reading there and a long list is never all in
   * memory; the caller must not use the store until it has finished or broken off the iteration.
   */
  *scan(resource: string, range: ScanRange = {}): IterableIterator<string> {
    const { sql, args } = scanQuery('body', resource, range);
    yield* this.column(sql).iterate(...args) as IterableIterator<string>;
  }

  /**
   * Like scan, as the stored UTF-8 bytes (no decoding into JS strings, which an answer would only
   * encode again): what an unfiltered list sends as it is stored.
   */
  *scanBytes(resource: string, range: ScanRange = {}): IterableIterator<Buffer> {
    const { sql, args } = scanQuery('CAST(body AS BLOB)', resource, range);
    yield* this.column(sql).iterate(...args) as IterableIterator<Buffer>;
  }

  /** The newest revision (the resourceVersion of a list read now). */
  currentRev(): number {
    return this.rev;
  }

  /** Revisions at or below this are gone from the log; a watch from an older RV gets 410. */
  compactRev(): number {
    return this.compacted;
  }

  onEvent(listener: StoreListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  get(resource: string, namespace: string, name: string): Obj | undefined {
    const row = this.stmt(`SELECT rev, body FROM objects WHERE resource = ? AND namespace = ? AND name = ?`).get(resource, namespace, name) as Row | undefined;
    return row ? parseStored(row.body) : undefined;
  }

  /** Current objects sorted by namespace/name; `namespace` undefined means all namespaces. */
  list(resource: string, namespace?: string, name?: string): { items: Obj[]; rev: number } {
    const range: ScanRange = {};
    if (namespace !== undefined) range.namespace = namespace;
    if (name !== undefined) range.name = name;
    const { sql, args } = scanQuery('body', resource, range);
    const bodies = this.column(sql).all(...args) as string[];
    return { items: bodies.map((b) => parseStored(b)), rev: this.rev };
  }

  /**
   * Objects (any resource) with an ownerReference to `ownerUid`, for the garbage collector. The
   * index is built on first use from the stored bodies and kept up by every write after that,
   * so a burst of deletions does not scan the whole table once per deleted object.
   */
  ownedBy(ownerUid: string): { resource: string; object: Obj }[] {
    const owners = this.ownerIndex();
    const out: { resource: string; object: Obj }[] = [];
    for (const key of owners.get(ownerUid) ?? []) {
      const [resource, namespace, name] = key.split('\0') as [string, string, string];
      const object = this.get(resource, namespace, name);
      if (object) out.push({ resource, object });
    }
    return out;
  }

  /** owner uid → keys (resource NUL namespace NUL name) of the objects that name it. */
  private owners: Map<string, Set<string>> | undefined;

  private ownerIndex(): Map<string, Set<string>> {
    if (this.owners) return this.owners;
    const owners = new Map<string, Set<string>>();
    const rows = this.stmt(`SELECT resource, namespace, name, body FROM objects WHERE instr(body, '"ownerReferences"') > 0`).all() as { resource: string; namespace: string; name: string; body: string }[];
    for (const r of rows) indexOwners(owners, `${r.resource}\0${r.namespace}\0${r.name}`, undefined, JSON.parse(r.body) as Obj);
    this.owners = owners;
    return owners;
  }

  create(resource: string, namespace: string, name: string, obj: Obj): Obj {
    return this.write('ADDED', resource, namespace, name, obj, undefined);
  }

  /**
   * Compare-and-swap on the stored revision: `expectedRev` must be the object's current RV.
   * `stored` is the object as read at that revision, when the caller has it (saves parsing it again).
   */
  update(resource: string, namespace: string, name: string, obj: Obj, expectedRev: number, stored?: Obj): Obj {
    return this.write('MODIFIED', resource, namespace, name, obj, expectedRev, stored);
  }

  /** Removes the object; the DELETED event carries `last` with the delete's revision. */
  delete(resource: string, namespace: string, name: string, last: Obj, expectedRev: number): Obj {
    return this.write('DELETED', resource, namespace, name, last, expectedRev);
  }

  private write(type: EventType, resource: string, namespace: string, name: string, obj: Obj, expectedRev: number | undefined, stored?: Obj): Obj {
    const { out, prev } = this.writeTx.immediate(type, resource, namespace, name, obj, expectedRev, stored);
    if (this.owners) indexOwners(this.owners, `${resource}\0${namespace}\0${name}`, prev, type === 'DELETED' ? undefined : out);
    const ev: StoreEvent = { type, resource, namespace, name, rev: this.rev, object: out };
    if (prev) ev.prev = prev;
    for (const l of this.listeners) l(ev);
    return out;
  }

  /** The body of every write, as one transaction function (better-sqlite3 builds its wrapper once). */
  private writeInTx(type: EventType, resource: string, namespace: string, name: string, obj: Obj, expectedRev: number | undefined, stored: Obj | undefined): { out: Obj; prev?: Obj } {
    let prev: Obj | undefined;
    const cur = this.stmt(`SELECT rev FROM objects WHERE resource = ? AND namespace = ? AND name = ?`).get(resource, namespace, name) as { rev: number } | undefined;
    if (type === 'ADDED' && cur) throw new StoreConflict('exists');
    if (type !== 'ADDED') {
      if (!cur) throw new StoreConflict('missing');
      if (cur.rev !== expectedRev) throw new StoreConflict('modified');
      // The caller's copy is the stored object only if it carries the revision that matched.
      prev = stored && stored.metadata.resourceVersion === String(cur.rev) ? stored : this.get(resource, namespace, name);
    }
    const rev = this.rev + 1;
    const out: Obj = { ...obj, metadata: { ...obj.metadata, resourceVersion: String(rev) } };
    const text = JSON.stringify(out);
    texts.set(out, text);
    this.stmt(`INSERT INTO log (rev, resource, namespace, name, type, body, ts) VALUES (?, ?, ?, ?, ?, ?, ?)`).run(rev, resource, namespace, name, type, text, Date.now());
    if (type === 'DELETED') this.stmt(`DELETE FROM objects WHERE resource = ? AND namespace = ? AND name = ?`).run(resource, namespace, name);
    else if (type === 'ADDED') this.stmt(`INSERT INTO objects (resource, namespace, name, rev, body) VALUES (?, ?, ?, ?, ?)`).run(resource, namespace, name, rev, text);
    else this.stmt(`UPDATE objects SET rev = ?, body = ? WHERE resource = ? AND namespace = ? AND name = ?`).run(rev, text, resource, namespace, name);
    this.rev = rev;
    return prev ? { out, prev } : { out };
  }

  /** Changes to `resource` after revision `after`, oldest first. Caller checks compactRev() first. */
  changesSince(resource: string, after: number): StoreEvent[] {
    const rows = this.stmt(`SELECT rev, resource, namespace, name, type, body FROM log WHERE resource = ? AND rev > ? ORDER BY rev`).all(resource, after) as LogRow[];
    return rows.map((r) => ({ type: r.type, resource: r.resource, namespace: r.namespace, name: r.name, rev: r.rev, object: parseStored(r.body) }));
  }

  /**
   * Drops log entries outside the retention window: the newest `minRetain` revisions and everything
   * younger than `minAgeMs` are kept (clients resuming a watch within either get no 410).
   * Returns the new compact revision.
   */
  compact(minRetain: number, minAgeMs = 0, now = Date.now()): number {
    let target = this.rev - minRetain;
    if (minAgeMs > 0) {
      const row = this.stmt(`SELECT MAX(rev) AS rev FROM log WHERE ts < ?`).get(now - minAgeMs) as { rev: number | null };
      target = Math.min(target, row.rev ?? this.compacted);
    }
    if (target <= this.compacted) return this.compacted;
    this.db.transaction(() => {
      this.stmt(`DELETE FROM log WHERE rev <= ?`).run(target);
      this.stmt(`INSERT OR REPLACE INTO meta (k, v) VALUES ('compact_rev', ?)`).run(target);
    }).immediate();
    this.compacted = target;
    this.db.pragma('wal_checkpoint(TRUNCATE)');
    return target;
  }

  close(): void {
    this.listeners.clear();
    this.db.close();
  }
}

function ownerUids(o: Obj | undefined): string[] {
  const refs = o?.metadata.ownerReferences;
  if (!Array.isArray(refs)) return [];
  return refs.map((r) => (r && typeof r === 'object' ? (r as { uid?: unknown }).uid : undefined)).filter((u): u is string => typeof u === 'string');
}

/** Moves `key` in the owner index from the owners of `before` to those of `after`. */
function indexOwners(owners: Map<string, Set<string>>, key: string, before: Obj | undefined, after: Obj | undefined): void {
  for (const uid of ownerUids(before)) {
    const set = owners.get(uid);
    set?.delete(key);
    if (set?.size === 0) owners.delete(uid);
  }
  for (const uid of ownerUids(after)) {
    let set = owners.get(uid);
    if (!set) owners.set(uid, (set = new Set()));
    set.add(key);
  }
}
