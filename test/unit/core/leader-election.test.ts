// Leader election against a fake Lease API with a fake clock: create on 404, expiry judged on
// the local clock from when the record was last seen to change, conditional updates, renew,
// losing leadership after renewDeadline, release on stop, MicroTime with 6 digits.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { KvzError } from '../../../src/core/errors.js';
import { LeaderElector, microTime, type ElectionClock, type LeaseApi, type LeaseSpec, type StoredLease } from '../../../src/core/leader-election.js';
import { silentLogger } from '../../../src/core/logger.js';

class FakeLeases implements LeaseApi {
  lease: StoredLease | undefined;
  private rv = 0;
  down = false;
  async get(): Promise<StoredLease | undefined> {
    if (this.down) throw new KvzError('Unavailable', 'down');
    return this.lease && structuredClone(this.lease);
  }
  async create(_ns: string, _name: string, spec: LeaseSpec): Promise<StoredLease> {
    if (this.down) throw new KvzError('Unavailable', 'down');
    if (this.lease) throw new KvzError('AlreadyExists', 'exists');
    this.lease = { spec: structuredClone(spec), resourceVersion: String(++this.rv) };
    return structuredClone(this.lease);
  }
  async replace(_ns: string, _name: string, spec: LeaseSpec, rv: string | undefined): Promise<StoredLease> {
    if (this.down) throw new KvzError('Unavailable', 'down');
    if (rv !== this.lease?.resourceVersion) throw new KvzError('Conflict', 'modified');
    this.lease = { spec: structuredClone(spec), resourceVersion: String(++this.rv) };
    return structuredClone(this.lease);
  }
}

/** Virtual time: sleeping advances the clock. */
class FakeClock implements ElectionClock {
  t = Date.parse('2026-01-01T00:00:00Z');
  now(): number {
    return this.t;
  }
  async sleep(ms: number): Promise<void> {
    this.t += ms;
    await new Promise((r) => setImmediate(r));
  }
}

function elector(api: LeaseApi, clock: FakeClock, identity: string) {
  return new LeaderElector({ api, clock, identity, namespace: 'kubevz-system', name: 'kubevz-controller', leaseDurationMs: 15_000, renewDeadlineMs: 10_000, retryPeriodMs: 2_000, jitter: 0, log: silentLogger });
}

test('microTime has exactly six fractional digits', () => {
  assert.equal(microTime(Date.parse('2026-11-25T13:00:10.123Z')), '2026-11-25T13:00:10.123000Z');
});

test('the first candidate creates the lease; a second cannot take it until it expires on its own clock', async () => {
  const api = new FakeLeases();
  const clock = new FakeClock();
  const a = elector(api, clock, 'a');
  const b = elector(api, clock, 'b');
  assert.equal(await a.tryAcquireOrRenew(), true);
  assert.equal(api.lease?.spec.holderIdentity, 'a');
  assert.equal(api.lease?.spec.leaseTransitions, 0);
  assert.match(api.lease!.spec.renewTime!, /\.\d{6}Z$/);
  assert.equal(await b.tryAcquireOrRenew(), false);
  // a renews: b sees a changed record and restarts its expiry timer.
  clock.t += 10_000;
  assert.equal(await a.tryAcquireOrRenew(), true);
  assert.equal(await b.tryAcquireOrRenew(), false);
  clock.t += 14_000;
  assert.equal(await b.tryAcquireOrRenew(), false, 'a renewed 14 s ago by b\'s clock: not expired');
  clock.t += 1_001;
  assert.equal(await b.tryAcquireOrRenew(), true);
  assert.equal(api.lease?.spec.holderIdentity, 'b');
  assert.equal(api.lease?.spec.leaseTransitions, 1);
  assert.equal(await a.tryAcquireOrRenew(), false);
  assert.equal(a.isLeader(), false);
});

test('renewing keeps acquireTime and transitions; a stale write loses with a conflict', async () => {
  const api = new FakeLeases();
  const clock = new FakeClock();
  const a = elector(api, clock, 'a');
  await a.tryAcquireOrRenew();
  const acquired = api.lease!.spec.acquireTime;
  clock.t += 2000;
  await a.tryAcquireOrRenew();
  assert.equal(api.lease!.spec.acquireTime, acquired);
  assert.notEqual(api.lease!.spec.renewTime, acquired);
  // Someone writes between our GET and PUT: the PUT carries the old resourceVersion.
  const orig = api.get.bind(api);
  api.get = async () => {
    const l = await orig();
    api.lease = { spec: { ...api.lease!.spec, holderIdentity: 'intruder' }, resourceVersion: '999' };
    return l;
  };
  assert.equal(await a.tryAcquireOrRenew(), false);
});

test('run: leads, loses leadership when it cannot renew within renewDeadline, and says so', async () => {
  const api = new FakeLeases();
  const clock = new FakeClock();
  const a = elector(api, clock, 'a');
  const log: string[] = [];
  const stop = new AbortController();
  const running = a.run({
    onStartedLeading: (signal) => {
      log.push('started');
      signal.addEventListener('abort', () => log.push('leading-signal-aborted'));
    },
    onStoppedLeading: () => void log.push('stopped'),
  }, stop.signal);
  while (!log.includes('started')) await new Promise((r) => setImmediate(r));
  api.down = true;
  const lastRenew = Date.parse(api.lease!.spec.renewTime!);
  await running;
  const startedAt = lastRenew;
  assert.deepEqual(log, ['started', 'leading-signal-aborted', 'stopped']);
  assert.ok(clock.t - startedAt >= 10_000 && clock.t - startedAt < 15_000, `stopped leading after ${clock.t - startedAt} ms, before the lease (15 s) expires for others`);
});

test('run: stopping releases the lease so a successor takes over at once', async () => {
  const api = new FakeLeases();
  const clock = new FakeClock();
  const a = elector(api, clock, 'a');
  const b = elector(api, clock, 'b');
  const stop = new AbortController();
  let leading = false;
  const running = a.run({ onStartedLeading: () => void (leading = true) }, stop.signal);
  while (!leading) await new Promise((r) => setImmediate(r));
  assert.equal(await b.tryAcquireOrRenew(), false);
  stop.abort();
  await running;
  assert.equal(api.lease?.spec.holderIdentity, '');
  assert.equal(await b.tryAcquireOrRenew(), true);
});

test('inconsistent timings are refused with a message that names them', () => {
  assert.throws(() => new LeaderElector({ api: new FakeLeases(), identity: 'x', namespace: 'n', name: 'l', leaseDurationMs: 5000, renewDeadlineMs: 6000, retryPeriodMs: 1000, log: silentLogger }), /leaseDuration \(5000 ms\) > renewDeadline \(6000 ms\)/);
});
