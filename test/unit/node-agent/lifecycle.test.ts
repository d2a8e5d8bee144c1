// Crash back-off schedule on a fake clock, the start decisions (restartPolicy, onBoot after a
// reboot) and boot-id based reboot detection.

import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { decideStart, detectReboot, RestartBackoff, type StartInput } from '../../../src/node-agent/lifecycle.js';

function fakeClock(start = 1_000_000): { now(): number; advance(ms: number): void } {
  let t = start;
  return { now: () => t, advance: (ms) => { t += ms; } };
}

test('back-off doubles from 1s to the 5 min cap, counts one failure per init, and resets after 10 min running', () => {
  const clock = fakeClock();
  const b = new RestartBackoff(clock);
  const waits: number[] = [];
  for (let i = 0; i < 11; i++) {
    b.running('ns/ve', 100 + i);
    const r = b.exited('ns/ve');
    waits.push(r.waitMs);
    assert.deepEqual(b.exited('ns/ve').failures, r.failures, 'asking again does not count again');
    clock.advance(r.waitMs);
    assert.equal(b.exited('ns/ve').waitMs, 0, 'due once the delay has passed');
  }
  assert.deepEqual(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300].map((s) => s * 1000));
  b.running('ns/ve', 500);
  clock.advance(600_000);
  assert.equal(b.exited('ns/ve').waitMs, 1000, 'a VE that ran 10 min starts the schedule again');
});

const base: StartInput = {
  key: 'ns/ve', generation: 3, phase: 'Running', hostState: 'stopped', known: true, onBoot: true, restartPolicy: 'Always', firstLookAfterReboot: false,
};

test('a crashed init is held back with reason CrashLoopBackOff; a stopped-by-agent VE (absent) starts at once', () => {
  const clock = fakeClock();
  const b = new RestartBackoff(clock);
  const hold = decideStart(base, b);
  assert.equal(hold?.reason, 'CrashLoopBackOff');
  assert.equal(hold?.requeueAfterMs, 1000);
  assert.deepEqual(hold?.newCrash, { failures: 1 });
  assert.equal(decideStart(base, b)?.newCrash, undefined, 'one event per crash');
  clock.advance(1000);
  assert.equal(decideStart(base, b), undefined);
  assert.equal(decideStart({ ...base, hostState: 'absent' }, new RestartBackoff(clock)), undefined);
  assert.equal(decideStart({ ...base, restartPolicy: 'OnFailure' }, new RestartBackoff(clock))?.reason, 'CrashLoopBackOff');
});

test('the first exit only restarts; from the second in a row the hold is a crash loop (stalled) with count and due time', () => {
  const clock = fakeClock(Date.parse('2026-01-01T00:00:00Z'));
  const b = new RestartBackoff(clock);
  const first = decideStart(base, b);
  assert.equal(first?.stalled, undefined, 'one exit is no crash loop');
  assert.equal(first?.message, "the VE's init exited 1 time in a row; next restart at 2026-01-01T00:00:01Z (back-off 1s)");
  clock.advance(1000);
  assert.equal(decideStart(base, b), undefined, 'restarted');
  b.running('ns/ve', 201);
  clock.advance(30_000);
  const second = decideStart(base, b);
  assert.equal(second?.reason, 'CrashLoopBackOff');
  assert.equal(second?.stalled, true);
  assert.equal(second?.message, "the VE's init exited 2 times in a row, restarted 1 time; next restart at 2026-01-01T00:00:33Z (back-off 2s)");
  clock.advance(500);
  assert.equal(decideStart(base, b)?.message, second?.message, 'the same text on every look during one back-off');
  clock.advance(1500);
  assert.equal(decideStart(base, b), undefined);
  // Ran 10 min before dying: the count starts again, and so does the leniency.
  b.running('ns/ve', 202);
  clock.advance(600_000);
  const fresh = decideStart(base, b);
  assert.equal(fresh?.stalled, undefined);
  assert.match(fresh!.message, /exited 1 time in a row/);
});

test('restartPolicy Never: Stopped with reason Exited until the spec changes', () => {
  const b = new RestartBackoff(fakeClock());
  const hold = decideStart({ ...base, restartPolicy: 'Never' }, b);
  assert.equal(hold?.reason, 'Exited');
  assert.equal(hold?.phase, 'Stopped');
  const ready = { type: 'Ready', status: 'False' as const, reason: 'Exited', message: '', lastTransitionTime: '', observedGeneration: 3 };
  assert.equal(decideStart({ ...base, restartPolicy: 'Never', ready }, b)?.reason, 'Exited');
  assert.equal(decideStart({ ...base, restartPolicy: 'Never', ready, generation: 4 }, b), undefined, 'touched spec starts it');
});

test('after a reboot: onBoot false keeps a known VE Stopped until its spec changes; onBoot true and new VEs start at once', () => {
  const b = new RestartBackoff(fakeClock());
  const rebooted = { ...base, firstLookAfterReboot: true };
  const held = decideStart({ ...rebooted, onBoot: false }, b);
  assert.equal(held?.reason, 'NotStartedAfterReboot');
  const ready = { type: 'Ready', status: 'False' as const, reason: 'NotStartedAfterReboot', message: '', lastTransitionTime: '', observedGeneration: 3 };
  assert.equal(decideStart({ ...base, onBoot: false, ready }, b)?.reason, 'NotStartedAfterReboot', 'still held on later looks');
  assert.equal(decideStart({ ...base, onBoot: false, ready, generation: 4, hostState: 'absent' }, b), undefined);
  assert.equal(decideStart(rebooted, b), undefined, 'onBoot true: started, not counted as a crash');
  assert.equal(decideStart({ ...rebooted, onBoot: false, known: false, phase: undefined, hostState: 'absent' }, b), undefined, 'a VE new to this node starts');
});

test('reboot detection compares the host boot id with the recorded one', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'kvz-boot-'));
  try {
    const bootIdPath = join(dir, 'host-boot-id');
    writeFileSync(bootIdPath, 'aaaa\n');
    assert.equal((await detectReboot({ stateDir: dir, bootIdPath })).rebooted, false, 'a fresh state dir is no reboot');
    assert.equal(readFileSync(join(dir, 'boot_id'), 'utf8').trim(), 'aaaa');
    assert.equal((await detectReboot({ stateDir: dir, bootIdPath })).rebooted, false, 'an agent restart is no reboot');
    writeFileSync(bootIdPath, 'bbbb\n');
    const r = await detectReboot({ stateDir: dir, bootIdPath });
    assert.deepEqual(r, { rebooted: true, bootId: 'bbbb', previous: 'aaaa' });
    assert.equal((await detectReboot({ stateDir: dir, bootIdPath })).rebooted, false);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
