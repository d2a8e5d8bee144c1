import assert from 'node:assert/strict';
import { test } from 'node:test';
import { WorkQueue, type Clock } from '../../../src/core/work-queue.js';
import { ControllerLoop } from '../../../src/core/controller-loop.js';
import { TerminalError } from '../../../src/core/errors.js';
import { silentLogger } from '../../../src/core/logger.js';

class FakeClock implements Clock {
  t = 0;
  timers: { at: number; fn: () => void; cancelled: boolean }[] = [];
  now() {
    return this.t;
  }
  setTimeout(fn: () => void, ms: number) {
    const timer = { at: this.t + ms, fn, cancelled: false };
    this.timers.push(timer);
    return { cancel: () => (timer.cancelled = true) };
  }
  advance(ms: number) {
    this.t += ms;
    for (const timer of this.timers.filter((x) => !x.cancelled && x.at <= this.t)) {
      timer.cancelled = true;
      timer.fn();
    }
  }
}

test('a key is queued once and re-queued if added while processing', async () => {
  const q = new WorkQueue(new FakeClock());
  q.add('a');
  q.add('a');
  q.add('b');
  assert.equal(q.length, 2);
  const k = await q.get();
  assert.equal(k, 'a');
  q.add('a'); // while processing: deferred, not handed to another worker
  assert.equal(await q.get(), 'b');
  assert.equal(q.length, 0);
  q.done('a');
  assert.equal(q.length, 1);
  assert.equal(await q.get(), 'a');
});

test('backoff doubles per failure and forget resets it', () => {
  const clock = new FakeClock();
  const q = new WorkQueue(clock, { baseMs: 100, maxMs: 1000 });
  assert.equal(q.addRateLimited('k'), 100);
  assert.equal(q.addRateLimited('k'), 200);
  assert.equal(q.addRateLimited('k'), 400);
  assert.equal(q.addRateLimited('k'), 800);
  assert.equal(q.addRateLimited('k'), 1000);
  q.forget('k');
  assert.equal(q.addRateLimited('k'), 100);
});

test('addAfter fires after the delay, and an earlier timer wins', async () => {
  const clock = new FakeClock();
  const q = new WorkQueue(clock);
  q.addAfter('k', 500);
  q.addAfter('k', 100);
  clock.advance(99);
  assert.equal(q.length, 0);
  clock.advance(1);
  assert.equal(q.length, 1);
  clock.advance(1000);
  assert.equal(q.length, 1, 'the superseded timer was cancelled');
});

test('the loop retries errors, stops on terminal errors and honours requeueAfterMs', async () => {
  const seen: string[] = [];
  let failures = 2;
  const loop = new ControllerLoop({
    log: silentLogger,
    workers: 1,
    queue: new WorkQueue(undefined, { baseMs: 5, maxMs: 10 }),
    reconciler: {
      name: 'test',
      async reconcile(key) {
        seen.push(key);
        if (key === 'flaky' && failures-- > 0) throw new Error('transient');
        if (key === 'bad') throw new TerminalError('bad spec');
        return {};
      },
    },
  });
  loop.start();
  loop.queue.add('flaky');
  loop.queue.add('bad');
  await new Promise((r) => setTimeout(r, 200));
  await loop.stop();
  assert.equal(seen.filter((k) => k === 'flaky').length, 3, 'two failures then success');
  assert.equal(seen.filter((k) => k === 'bad').length, 1, 'terminal errors are not retried');
});
