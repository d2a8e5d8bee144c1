// The Event recorder against a fake EventsApi: client-go's naming, aggregation of repeats into
// count/lastTimestamp, per-object rate limiting, and that failures never reach the caller.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { KvzError } from '../../../src/core/errors.js';
import { KubeEventRecorder, type CoreEvent, type EventsApi } from '../../../src/core/events.js';
import { silentLogger } from '../../../src/core/logger.js';

class FakeEvents implements EventsApi {
  readonly stored = new Map<string, CoreEvent>();
  failCreates = false;
  async create(namespace: string, ev: CoreEvent): Promise<void> {
    if (this.failCreates) throw new KvzError('Unavailable', 'server down');
    this.stored.set(`${namespace}/${ev.metadata.name}`, structuredClone(ev));
  }
  async patch(namespace: string, name: string, patch: Partial<CoreEvent>): Promise<void> {
    const ev = this.stored.get(`${namespace}/${name}`);
    if (!ev) throw new KvzError('NotFound', `event ${name} not found`);
    Object.assign(ev, patch);
  }
}

const ve = { apiVersion: 'kubevz.io/v1alpha1', kind: 'VirtualEnvironment', metadata: { name: 'web1', namespace: 'ns1', uid: 'u-1' } };

function setup() {
  const api = new FakeEvents();
  let now = Date.parse('2026-01-01T12:00:00.250Z');
  const rec = new KubeEventRecorder({ api, component: 'kubevz-node-agent', host: 'n1', log: silentLogger, now: () => new Date(now), burst: 3, refillMs: 10_000 });
  return { api, rec, advance: (ms: number) => (now += ms) };
}

test('an event is a core/v1 Event named <object>.<hex nanos> with the object reference and source', async () => {
  const { api, rec } = setup();
  rec.event(ve, 'Normal', 'Started', 'started the VE');
  await rec.flush();
  const [ev] = [...api.stored.values()];
  assert.ok(ev);
  assert.match(ev.metadata.name, /^web1\.[0-9a-f]+$/);
  assert.equal(BigInt(`0x${ev.metadata.name.split('.')[1]}`), BigInt(Date.parse('2026-01-01T12:00:00.250Z')) * 1_000_000n);
  assert.equal(ev.metadata.namespace, 'ns1');
  assert.deepEqual(ev.involvedObject, { apiVersion: 'kubevz.io/v1alpha1', kind: 'VirtualEnvironment', name: 'web1', namespace: 'ns1', uid: 'u-1' });
  assert.deepEqual(ev.source, { component: 'kubevz-node-agent', host: 'n1' });
  assert.equal(ev.firstTimestamp, '2026-01-01T12:00:00Z');
  assert.equal(ev.count, 1);
});

test('a repeat is aggregated: same Event, count and lastTimestamp bumped', async () => {
  const { api, rec, advance } = setup();
  rec.event(ve, 'Warning', 'Failed', 'boom');
  advance(5000);
  rec.event(ve, 'Warning', 'Failed', 'boom');
  rec.event(ve, 'Warning', 'Failed', 'other');
  await rec.flush();
  assert.equal(api.stored.size, 2);
  const boom = [...api.stored.values()].find((e) => e.message === 'boom')!;
  assert.equal(boom.count, 2);
  assert.equal(boom.firstTimestamp, '2026-01-01T12:00:00Z');
  assert.equal(boom.lastTimestamp, '2026-01-01T12:00:05Z');
});

test('an aggregated Event pruned meanwhile is created again', async () => {
  const { api, rec } = setup();
  rec.event(ve, 'Normal', 'Started', 'x');
  await rec.flush();
  api.stored.clear();
  rec.event(ve, 'Normal', 'Started', 'x');
  await rec.flush();
  assert.equal([...api.stored.values()][0]?.count, 1);
});

test('rate limit: a burst per object, then one more per refill period; other objects unaffected', async () => {
  const { api, rec, advance } = setup();
  for (let i = 0; i < 10; i++) rec.event(ve, 'Normal', 'Flap', `n${i}`);
  rec.event({ ...ve, metadata: { ...ve.metadata, name: 'web2', uid: 'u-2' } }, 'Normal', 'Flap', 'x');
  await rec.flush();
  assert.equal([...api.stored.values()].filter((e) => e.involvedObject.name === 'web1').length, 3);
  assert.equal([...api.stored.values()].filter((e) => e.involvedObject.name === 'web2').length, 1);
  advance(10_000);
  rec.event(ve, 'Normal', 'Flap', 'later');
  rec.event(ve, 'Normal', 'Flap', 'later2');
  await rec.flush();
  assert.equal([...api.stored.values()].filter((e) => e.involvedObject.name === 'web1').length, 4);
});

test('best effort: a failing API never throws to the caller', async () => {
  const { api, rec } = setup();
  api.failCreates = true;
  assert.doesNotThrow(() => rec.event(ve, 'Normal', 'Started', 'x'));
  await rec.flush();
  api.failCreates = false;
  rec.event(ve, 'Normal', 'Started', 'y');
  await rec.flush();
  assert.equal(api.stored.size, 1);
});

test('events of cluster-scoped objects go to the default namespace', async () => {
  const { api, rec } = setup();
  rec.event({ apiVersion: 'kubevz.io/v1alpha1', kind: 'VENode', metadata: { name: 'n1', uid: 'u-n' } }, 'Warning', 'NodeNotReady', 'silent');
  await rec.flush();
  assert.equal([...api.stored.values()][0]?.metadata.namespace, 'default');
});
