// Lists answered from the stored JSON text (Registry.listRaw, and the HTTP JSON list built on it)
// say byte for byte what serialising the parsed objects says: whole lists, pages (limit/continue),
// label and field selectors, one namespace or all (with namespaces that are prefixes of others,
// where "ns/name" string order and the store's namespace-then-name order differ). Also: the store
// opens databases created with the earlier schema and keeps their revisions monotonic, and a
// too-large request body is a 413 that leaves the connection usable.

import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { ListOptions, ListPage, Registry } from '../../../src/apiserver/registry.js';
import type { ResourceDef } from '../../../src/apiserver/resources.js';
import { Store } from '../../../src/apiserver/store.js';
import { aVE, call, openTestRegistry, startTestServer, type TestRegistry, type TestServer } from './helpers.js';

const V = 'v1alpha1';
const text = (items: string[]) => `[${items.join(',')}]`;

/** Registry.listRaw collected into a page, checking the sink's call order on the way. */
function rawPage(reg: Registry, def: ResourceDef, ns: string | undefined, opts: ListOptions): ListPage<string> {
  const calls: string[] = [];
  const page: ListPage<string> = { items: [], rev: -1 };
  reg.listRaw(def, ns, opts, {
    start(rev, continueToken) {
      calls.push('start');
      page.rev = rev;
      if (continueToken !== undefined) page.continueToken = continueToken;
    },
    item(json) {
      calls.push('item');
      page.items.push(json.toString());
    },
    end() {
      calls.push('end');
    },
  });
  assert.deepEqual(calls, ['start', ...page.items.map(() => 'item'), 'end']);
  return page;
}

describe('raw lists', () => {
  let fx: TestRegistry;
  before(() => {
    fx = openTestRegistry('kvz-list-raw-');
    // "a" < "a-b" as namespaces, but "a-b/…" < "a/…" as strings: paging must follow the former.
    for (const [ns, name, tier] of [
      ['a', 'n1', 'x'],
      ['a', 'n2', 'y'],
      ['a', 'n3', 'x'],
      ['a-b', 'n1', 'x'],
      ['a-b', 'n2', undefined],
      ['b', 'n2', 'x'],
      ['b', 'zz', 'y'],
    ] as const) {
      fx.reg.create(fx.ve, V, ns, { ...aVE(name, { hostname: `h-${ns}` }), metadata: { name, ...(tier ? { labels: { tier } } : {}) } });
    }
    // An update, so stored bodies carry managedFields of two writes and a later resourceVersion.
    fx.reg.patch(fx.ve, V, 'a', 'n2', 'merge', { metadata: { labels: { extra: 'ü-ñ' } } }, { manager: 'other' });
  });
  after(() => fx.close());

  /** All pages of a list, following continue tokens. */
  function pages<T>(list: (o: ListOptions) => ListPage<T>, opts: ListOptions): ListPage<T>[] {
    const out: ListPage<T>[] = [];
    let token: string | undefined;
    do {
      const p = list({ ...opts, ...(token ? { continueToken: token } : {}) });
      out.push(p);
      token = p.continueToken;
      assert.ok(out.length < 20, 'paging does not end');
    } while (token);
    return out;
  }

  const cases: ListOptions[] = [
    {},
    { limit: 1 },
    { limit: 2 },
    { limit: 100 },
    { labelSelector: 'tier=x' },
    { labelSelector: 'tier=x', limit: 1 },
    { labelSelector: '!tier' },
    { fieldSelector: 'metadata.name=n2' },
    { fieldSelector: 'metadata.name=n2', limit: 1 },
    { fieldSelector: 'metadata.namespace=a-b' },
  ];

  for (const ns of [undefined, 'a', 'a-b']) {
    for (const opts of cases) {
      it(`namespace ${ns ?? '(all)'}, ${JSON.stringify(opts)}: same bytes and tokens as the parsed list`, () => {
        const parsed = pages((o) => fx.reg.list(fx.ve, ns, o), opts);
        const raw = pages((o) => rawPage(fx.reg, fx.ve, ns, o), opts);
        assert.equal(raw.length, parsed.length);
        raw.forEach((p, i) => {
          const q = parsed[i] as ListPage<unknown>;
          assert.equal(text(p.items), JSON.stringify(q.items));
          assert.equal(p.continueToken, q.continueToken);
          assert.equal(p.rev, q.rev);
          if (opts.limit) assert.ok(p.items.length <= opts.limit);
        });
        // Pages together are the unpaged list, in namespace-then-name order.
        const { limit: _l, ...whole } = opts;
        const all = parsed.flatMap((p) => p.items).map((o) => `${String(o.metadata.namespace)}/${String(o.metadata.name)}`);
        assert.deepEqual(all, fx.reg.list(fx.ve, ns, whole).items.map((o) => `${String(o.metadata.namespace)}/${String(o.metadata.name)}`));
        const sorted = [...all].sort((x, y) => {
          const [xn = '', xm = ''] = x.split('/');
          const [yn = '', ym = ''] = y.split('/');
          return xn === yn ? (xm < ym ? -1 : xm > ym ? 1 : 0) : xn < yn ? -1 : 1;
        });
        assert.deepEqual(all, sorted);
      });
    }
  }

  it('the all-namespaces order is namespace first: a, a-b, b', () => {
    const names = fx.reg.list(fx.ve, undefined).items.map((o) => `${String(o.metadata.namespace)}/${String(o.metadata.name)}`);
    assert.deepEqual(names, ['a/n1', 'a/n2', 'a/n3', 'a-b/n1', 'a-b/n2', 'b/n2', 'b/zz']);
  });

  it('a malformed continue token is a 400', () => {
    for (const token of ['%%%', Buffer.from('{"rv":1}').toString('base64url'), Buffer.from('{"rv":1,"after":"noslash"}').toString('base64url')]) {
      assert.throws(() => rawPage(fx.reg, fx.ve, 'a', { continueToken: token }), (e: { code?: number }) => e.code === 400);
      assert.throws(() => fx.reg.list(fx.ve, 'a', { continueToken: token }), (e: { code?: number }) => e.code === 400);
    }
  });
});

describe('raw lists over HTTPS', () => {
  let s: TestServer;
  const path = (ns: string) => `/apis/kubevz.io/${V}/namespaces/${ns}/virtualenvironments`;
  before(async () => {
    s = await startTestServer();
    for (const ns of ['p', 'p-q']) {
      for (const n of ['c', 'a', 'b']) {
        const r = await call(s, path(ns), { method: 'POST', body: { ...aVE(n), metadata: { name: n, labels: { ns, odd: n === 'b' ? 'no' : 'yes' } } } });
        assert.equal(r.status, 201, r.text);
      }
    }
  });
  after(async () => {
    await s.dispose();
  });

  it('answers are what JSON.stringify of the parsed answer gives, pages included', async () => {
    const seen: string[] = [];
    let token = '';
    do {
      const r = await call(s, `/apis/kubevz.io/${V}/virtualenvironments?limit=2&labelSelector=odd%3Dyes${token ? `&continue=${token}` : ''}`);
      assert.equal(r.status, 200);
      const body = r.json();
      assert.equal(r.text, JSON.stringify(body));
      assert.deepEqual(Object.keys(body), ['apiVersion', 'kind', 'metadata', 'items']);
      assert.equal(body.kind, 'VirtualEnvironmentList');
      assert.equal(body.apiVersion, `kubevz.io/${V}`);
      for (const o of body.items) seen.push(`${o.metadata.namespace}/${o.metadata.name}`);
      token = body.metadata.continue;
    } while (token);
    assert.deepEqual(seen, ['p/a', 'p/c', 'p-q/a', 'p-q/c']);
  });

  it('an object answer (create, get) is the same text as its list item', async () => {
    const created = await call(s, path('p'), { method: 'POST', body: aVE('d') });
    assert.equal(created.status, 201);
    assert.equal(created.text, JSON.stringify(created.json()));
    const got = await call(s, `${path('p')}/d`);
    assert.equal(got.text, created.text);
    const list = await call(s, `${path('p')}?fieldSelector=metadata.name%3Dd`);
    assert.equal(JSON.stringify(list.json().items[0]), created.text);
    assert.ok(list.text.includes(created.text));
  });

  it('a list larger than one written piece (64 KiB) arrives whole and in order', async () => {
    const names = Array.from({ length: 150 }, (_, i) => `m${String(i).padStart(3, '0')}`);
    for (const n of names) assert.equal((await call(s, path('many'), { method: 'POST', body: { ...aVE(n), metadata: { name: n, annotations: { pad: 'p'.repeat(400) } } } })).status, 201);
    const r = await call(s, path('many'));
    assert.ok(Buffer.byteLength(r.text) > 2 * 64 * 1024, `only ${Buffer.byteLength(r.text)} bytes`);
    assert.equal(r.text, JSON.stringify(r.json()));
    assert.deepEqual(r.json().items.map((o: { metadata: { name: string } }) => o.metadata.name), names);
    const page = await call(s, `${path('many')}?limit=100`);
    assert.equal(page.json().items.length, 100);
    assert.equal(page.text, JSON.stringify(page.json()));
    const rest = await call(s, `${path('many')}?limit=100&continue=${page.json().metadata.continue}`);
    assert.deepEqual(rest.json().items.map((o: { metadata: { name: string } }) => o.metadata.name), names.slice(100));
    assert.equal(rest.json().metadata.continue, '');
  });

  it('an empty list has items []', async () => {
    const r = await call(s, path('nothing-here'));
    assert.equal(r.status, 200);
    assert.deepEqual(r.json().items, []);
    assert.equal(r.text, JSON.stringify(r.json()));
  });

  it('a body over 3 MiB is 413, and the server answers the next request', async () => {
    const big = { ...aVE('big'), spec: { template: 'busybox', hostname: 'x'.repeat(3 * 1024 * 1024 + 10) } };
    const r = await call(s, path('p'), { method: 'POST', body: big });
    assert.equal(r.status, 413);
    assert.equal(r.json().reason, 'RequestEntityTooLarge');
    assert.equal((await call(s, '/version')).status, 200);
  });
});

describe('store schema', () => {
  it('opens a database created with AUTOINCREMENT and the log index, and continues its revisions', () => {
    const dir = mkdtempSync(join(tmpdir(), 'kvz-store-old-'));
    try {
      const path = join(dir, 'db.sqlite');
      const db = new Database(path);
      db.pragma('journal_mode = WAL');
      db.exec(`
        CREATE TABLE objects (resource TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL, rev INTEGER NOT NULL, body TEXT NOT NULL, PRIMARY KEY (resource, namespace, name));
        CREATE TABLE log (rev INTEGER PRIMARY KEY AUTOINCREMENT, resource TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
          type TEXT NOT NULL CHECK (type IN ('ADDED','MODIFIED','DELETED')), body TEXT NOT NULL, ts INTEGER NOT NULL);
        CREATE INDEX log_resource_rev ON log (resource, rev);
        CREATE TABLE meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL);`);
      const R = 'kubevz.io/virtualenvironments';
      for (let rev = 1; rev <= 6; rev++) {
        const body = JSON.stringify({ metadata: { name: `o${rev}`, namespace: 'default', resourceVersion: String(rev) } });
        db.prepare(`INSERT INTO log (resource, namespace, name, type, body, ts) VALUES (?, 'default', ?, 'ADDED', ?, 0)`).run(R, `o${rev}`, body);
        db.prepare(`INSERT INTO objects VALUES (?, 'default', ?, ?, ?)`).run(R, `o${rev}`, rev, body);
      }
      // Compacted up to 4, and the newest log rows lost to a compaction of everything: only
      // sqlite_sequence still knows 6 was handed out.
      db.exec(`DELETE FROM log WHERE rev > 4; INSERT INTO meta VALUES ('compact_rev', 3); DELETE FROM log WHERE rev <= 3`);
      db.close();

      let store = new Store(path);
      assert.equal(store.currentRev(), 6);
      assert.equal(store.compactRev(), 3);
      assert.equal(store.create(R, 'default', 'n', { metadata: { name: 'n', namespace: 'default' } }).metadata.resourceVersion, '7');
      assert.deepEqual(store.changesSince(R, 3).map((e) => e.rev), [4, 7]);
      assert.deepEqual(store.list(R, 'default').items.map((o) => o.metadata.name), ['n', 'o1', 'o2', 'o3', 'o4', 'o5', 'o6']);
      store.close();
      const check = new Database(path);
      assert.deepEqual(check.prepare(`SELECT count(*) AS n FROM sqlite_master WHERE name = 'log_resource_rev'`).get(), { n: 0 });
      check.close();
      store = new Store(path);
      assert.equal(store.currentRev(), 7);
      store.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a new database keeps revisions monotonic when compaction removed every log row', () => {
    const dir = mkdtempSync(join(tmpdir(), 'kvz-store-new-'));
    try {
      const path = join(dir, 'db.sqlite');
      let store = new Store(path);
      const R = 'kubevz.io/virtualenvironments';
      for (let i = 0; i < 5; i++) store.create(R, 'default', `c${i}`, { metadata: { name: `c${i}` } });
      store.delete(R, 'default', 'c4', { metadata: { name: 'c4' } }, 5);
      assert.equal(store.compact(0), 6);
      store.close();
      store = new Store(path);
      assert.equal(store.currentRev(), 6);
      assert.equal(store.create(R, 'default', 'd', { metadata: { name: 'd' } }).metadata.resourceVersion, '7');
      assert.deepEqual([...store.scan(R, { namespace: 'default' })].map((t) => JSON.parse(t).metadata.name), ['c0', 'c1', 'c2', 'c3', 'd']);
      assert.deepEqual([...store.scan(R, { namespace: 'default', after: { namespace: 'default', name: 'c3' } })].map((t) => JSON.parse(t).metadata.name), ['d']);
      assert.deepEqual([...store.scanBytes(R, { after: { namespace: 'default', name: 'c1' } })].map((b) => JSON.parse(b.toString()).metadata.name), ['c2', 'c3', 'd']);
      store.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
