// ExpeditedRcu against a stand-in knob file: on while anyone holds it, put back after the last,
// the operator's own setting left alone, dead holders and a dead lock owner not counted.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { silentLogger } from '../../../src/core/logger.js';
import { ExpeditedRcu } from '../../../src/runtime/rcu-expedite.js';

const root = mkdtempSync(join(tmpdir(), 'kvz-rcu-'));
after(() => rmSync(root, { recursive: true, force: true }));

function setup(name: string, knobValue: string | undefined): { dir: string; knob: string; rcu: ExpeditedRcu; value: () => string } {
  const holders = join(root, name, 'holders');
  const knob = join(root, name, 'knob');
  mkdirSync(join(root, name), { recursive: true });
  if (knobValue !== undefined) writeFileSync(knob, knobValue);
  return { dir: join(holders, 'boot-1'), knob, rcu: new ExpeditedRcu(silentLogger, holders, knob, 'boot-1'), value: () => readFileSync(knob, 'utf8').trim() };
}

/** A pid that no longer runs. */
function deadPid(): number {
  return spawnSync('/bin/true').pid!;
}

test('on while held, the node\'s value put back after; overlapping holders keep it on until the last', async () => {
  const { rcu, value, dir } = setup('overlap', '0\n');
  let releaseA!: () => void;
  const a = rcu.during(() => new Promise<void>((r) => (releaseA = r)));
  while (!releaseA) await new Promise((r) => setTimeout(r, 1));
  assert.equal(value(), '1');
  const seen = await rcu.during(async () => value());
  assert.equal(seen, '1');
  assert.equal(value(), '1', 'A still holds it');
  releaseA();
  await a;
  assert.equal(value(), '0', 'the last holder put back the node\'s value');
  assert.deepEqual(readdirSync(dir), [], 'no holder, lock or saved value left');
});

test('the operator\'s own setting is never touched; a failing fn still releases', async () => {
  const op = setup('operator', '1\n');
  assert.equal(await op.rcu.during(async () => 7), 7);
  assert.equal(op.value(), '1');
  assert.deepEqual(readdirSync(op.dir), []);

  const f = setup('fails', '0\n');
  await assert.rejects(f.rcu.during(async () => {
    assert.equal(f.value(), '1');
    throw new Error('restore failed');
  }), /restore failed/);
  assert.equal(f.value(), '0');
});

test('a holder that died does not keep it on; a dead lock owner is broken; no knob: fn runs anyway', async () => {
  const { rcu, value, dir } = setup('dead', '1\n');
  // A kubevz process died holding it: the knob is on with our saved value, a holder file of a dead pid.
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'original'), '0\n');
  writeFileSync(join(dir, `${deadPid()}.1`), '');
  writeFileSync(join(dir, 'lock'), String(deadPid()));
  assert.equal(await rcu.during(async () => value()), '1');
  assert.equal(value(), '0', 'healed: back to the saved value');
  assert.deepEqual(readdirSync(dir), []);

  // An agent's start settles what a dead holder left, without holding it itself.
  const left = setup('settle', '1\n');
  mkdirSync(left.dir, { recursive: true });
  writeFileSync(join(left.dir, 'original'), '0\n');
  writeFileSync(join(left.dir, `${deadPid()}.1`), '');
  await left.rcu.settle();
  assert.equal(left.value(), '0');
  assert.deepEqual(readdirSync(left.dir), []);
  const operators = setup('settle-operator', '1\n');
  await operators.rcu.settle();
  assert.equal(operators.value(), '1', 'nothing saved: the operator\'s value stays');

  // An earlier boot's holders (where /run is on disk): their pids may name other processes now.
  const reboot = setup('reboot', '0\n');
  const earlier = join(reboot.dir, '..', 'boot-0');
  mkdirSync(earlier, { recursive: true });
  writeFileSync(join(earlier, `${process.pid}.1`), '');
  writeFileSync(join(earlier, 'original'), '0\n');
  assert.equal(await reboot.rcu.during(async () => reboot.value()), '1');
  assert.equal(reboot.value(), '0', 'put back: the earlier boot\'s holder (a live pid now) does not count');
  assert.ok(!existsSync(earlier), 'the earlier boot\'s holders are gone');

  const none = setup('absent', undefined);
  assert.equal(await none.rcu.during(async () => 'ran'), 'ran');
  assert.ok(!existsSync(none.knob));
});
