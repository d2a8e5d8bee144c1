// `kvz migrate`, `kvz suspend`/`resume` and `kvz get vem` on FakeApi: the migration is driven
// through its phases by a pretend controller and agents between the CLI's waits, and the command
// prints each phase, the outcome, and sets the exit code.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { transitionPatch } from '../../../src/api/migration-phases.js';
import type { MigrationPhase, VEMigration, VirtualEnvironment } from '../../../src/api/types.js';
import { VEM_REF } from '../../../src/cli/context.js';
import { cliHarness, type CliStep, type FakeClient } from '../../helpers/cli-harness.js';

const harness = cliHarness;

async function aRunningVE(ves: FakeClient, name = 'web1'): Promise<void> {
  await ves.create({ apiVersion: 'kubevz.io/v1alpha1', kind: 'VirtualEnvironment', metadata: { name, namespace: 'default' }, spec: { template: 'busybox' } });
  await ves.patchStatus(name, 'default', { phase: 'Running', nodeName: 'a' });
}

/** Moves the (single) migration one phase along `path` per call, as the controller and agents would. */
function phaseDriver(path: { phase: MigrationPhase; status?: Record<string, unknown> }[]): CliStep {
  let i = 0;
  return async ({ migrations }) => {
    const [m] = (await migrations.list({})) as VEMigration[];
    if (!m || i >= path.length) return;
    const step = path[i++]!;
    await migrations.jsonPatchStatus(m.metadata.name, 'default', transitionPatch(m, step.phase, { status: step.status, message: `now ${step.phase}`, now: new Date(Date.parse(m.metadata.creationTimestamp!) + i * 1500) }));
  };
}

describe('kvz migrate', () => {
  it('creates the VEMigration from the flags, prints every phase with its time, and ends with downtime, method and bytes (exit 0)', async () => {
    const h = harness(
      phaseDriver([
        { phase: 'Pending', status: { startTime: '2026-01-01T12:00:00Z' } },
        { phase: 'Scheduling' },
        { phase: 'PreparingTarget', status: { sourceNode: 'a', targetNode: 'b', timings: { preflight: 4 } } },
        { phase: 'TargetReady', status: { timings: { prepareTarget: 900 } } },
        { phase: 'Checkpointing' },
        { phase: 'Transferring', status: { timings: { checkpoint: 210 } } },
        { phase: 'Restoring', status: { timings: { transfer: 120 } } },
        { phase: 'Succeeded', status: { downtimeMs: 512, method: 'stop-and-copy', bytesTransferred: 3 * 1048576, timings: { restore: 180, total: 6000 } } },
      ]),
    );
    await aRunningVE(h.ves);
    const code = await h.run('migrate', 'web1', '--to', 'b', '--max-downtime', '2000', '--timeout', '120');
    assert.equal(code, 0, h.err.join(''));
    const [m] = (await h.migrations.list({})) as VEMigration[];
    assert.deepEqual(m!.spec, { ve: 'web1', targetNode: 'b', mode: 'live', maxDowntimeMs: 2000, timeoutSeconds: 120 });
    assert.match(m!.metadata.name, /^web1-to-b-[0-9a-f]{6}$/);
    const text = h.out.join('');
    const phases = [...text.matchAll(/^\[\s*([\d.]+)s\] (\w+)/gm)].map((x) => x[2]);
    assert.deepEqual(phases, ['Pending', 'Scheduling', 'PreparingTarget', 'TargetReady', 'Checkpointing', 'Transferring', 'Restoring', 'Succeeded']);
    assert.match(text, /\[\s+3\.0s\] Scheduling/);
    assert.match(text, /migrated from a to b: downtime 512 ms, method stop-and-copy, 3\.0 MiB transferred/);
    assert.match(text, /stage timings: preflight 4 ms, prepareTarget 900 ms, checkpoint 210 ms, transfer 120 ms, restore 180 ms, total 6000 ms/);
  });

  it('a failed migration exits 1 with reason, message and the CRIU log tail', async () => {
    const h = harness(
      phaseDriver([
        { phase: 'Pending' },
        { phase: 'Scheduling' },
        { phase: 'PreparingTarget', status: { sourceNode: 'a', targetNode: 'b' } },
        { phase: 'TargetReady' },
        { phase: 'Checkpointing' },
        { phase: 'Failed', status: { reason: 'CheckpointFailed', message: 'criu dump failed', criuLog: 'line1\nError (criu/sk-inet.c:1): unsupported socket\n' } },
      ]),
    );
    await aRunningVE(h.ves);
    assert.equal(await h.run('migrate', 'web1', '--to', 'b'), 1);
    const e = h.err.join('');
    assert.match(e, /failed \(CheckpointFailed\): criu dump failed/);
    assert.match(e, /CRIU log \(tail\):\n {4}line1\n {4}Error \(criu\/sk-inet\.c:1\): unsupported socket/);
    assert.match(e, /stays on node a/);
    assert.match(h.out.join(''), /Checkpointing/);
  });

  it('--offline --dry-run --no-wait -o json creates and prints the object without following', async () => {
    const h = harness();
    await aRunningVE(h.ves);
    assert.equal(await h.run('migrate', 'web1', '--offline', '--dry-run', '--no-wait', '-o', 'json'), 0, h.err.join(''));
    const printed = JSON.parse(h.out.join(''));
    assert.deepEqual(printed.spec, { ve: 'web1', mode: 'offline', dryRun: true });
    assert.equal(printed.kind, 'VEMigration');
  });

  it('a dry run that passes says so; -o yaml prints the final object', async () => {
    const h = harness(phaseDriver([{ phase: 'Pending' }, { phase: 'Scheduling' }, { phase: 'Succeeded', status: { reason: 'DryRun', message: 'dry run: all pre-flight checks passed (x)' } }]));
    await aRunningVE(h.ves);
    assert.equal(await h.run('migrate', 'web1', '--to', 'b', '--dry-run'), 0, h.err.join(''));
    assert.match(h.out.join(''), /dry run passed: dry run: all pre-flight checks passed/);
  });

  it('refuses a missing VE and bad flags', async () => {
    const h = harness();
    assert.equal(await h.run('migrate', 'nope', '--to', 'b'), 1);
    assert.match(h.err.join(''), /virtualenvironment "nope" not found in namespace "default"/);
    assert.equal(await h.run('migrate', 'web1', '--max-downtime', 'soon'), 2);
    assert.equal(await h.run('migrate'), 2);
    assert.equal(h.api.objects(VEM_REF).length, 0);
  });

  it('gives up following when nothing moves, naming what to watch', async () => {
    const h = harness();
    await aRunningVE(h.ves);
    assert.equal(await h.run('migrate', 'web1', '--to', 'b', '--timeout', '5'), 1);
    assert.match(h.err.join(''), /is still new after 35s \(is the controller running\?\).*kubectl get vem/);
  });
});

describe('kvz suspend / resume / get vem', () => {
  it('suspend sets powerState Suspended and waits for phase Suspended; resume waits for Running', async () => {
    const h = harness(async ({ ves }) => {
      for (const ve of (await ves.list({})) as VirtualEnvironment[]) {
        const want = ve.spec.powerState ?? 'Running';
        const ready = want === 'Running';
        await ves.patchStatus(ve.metadata.name, 'default', {
          phase: want, nodeName: 'a', observedGeneration: ve.metadata.generation,
          conditions: [{ type: 'Ready', status: ready ? 'True' : 'False', reason: want, message: '', lastTransitionTime: '2026-01-01T12:00:00Z' }],
        });
      }
    });
    await aRunningVE(h.ves);
    assert.equal(await h.run('suspend', 'web1'), 0, h.err.join(''));
    assert.equal(((await h.ves.get('web1', 'default')) as VirtualEnvironment).spec.powerState, 'Suspended');
    assert.match(h.out.join(''), /"web1" suspending\n.*"web1" is suspended on node a/s);
    assert.equal(await h.run('resume', 'web1', '-o', 'json'), 0, h.err.join(''));
    assert.equal(JSON.parse(h.out.at(-1)!).status.phase, 'Running');
  });

  it('get vem lists migrations as a table', async () => {
    const h = harness();
    await h.migrations.create({ apiVersion: 'kubevz.io/v1alpha1', kind: 'VEMigration', metadata: { name: 'm1', namespace: 'default' }, spec: { ve: 'web1', targetNode: 'b', mode: 'live' } });
    const m = (await h.migrations.get('m1', 'default')) as VEMigration;
    await h.migrations.jsonPatchStatus('m1', 'default', [{ op: 'add', path: '/status', value: { phase: 'Succeeded', sourceNode: 'a', targetNode: 'b', downtimeMs: 300 } }]);
    assert.ok(m);
    assert.equal(await h.run('get', 'vem'), 0, h.err.join(''));
    assert.match(h.out.join(''), /^NAME\s+VE\s+MODE\s+SOURCE\s+TARGET\s+PHASE\s+DOWNTIME\s+AGE\nm1\s+web1\s+live\s+a\s+b\s+Succeeded\s+300ms/);
    assert.equal(await h.run('delete', 'vem', 'm1'), 2, 'delete knows only VEs');
  });
});
