// `kvz set` on FakeApi: each flag edits its spec.resources field, bad values are refused with a
// message naming the flag before anything is written, `-o json|yaml` prints the object, and
// --wait ends on the conditions that report the fields set (ResourcesApplied, DiskResized).

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { API_VERSION, type Condition, type VirtualEnvironment } from '../../../src/api/types.js';
import { cliHarness, type FakeClient } from '../../helpers/cli-harness.js';

type Ves = FakeClient;

async function harness(onSleep?: (ves: Ves) => Promise<void>) {
  const { ves, out, err, run } = cliHarness(onSleep && (({ ves: v }) => onSleep(v)));
  await ves.create({ apiVersion: API_VERSION, kind: 'VirtualEnvironment', metadata: { name: 'web1', namespace: 'default' }, spec: { template: 'busybox', resources: { memory: { limit: '256Mi' }, disk: { space: '2Gi' }, processes: 100 } } });
  return { ves, out, err, run, get: async () => (await ves.get('web1', 'default'))! };
}

const cond = (type: string, status: Condition['status'], reason: string, message: string, gen: number): Condition => ({ type, status, reason, message, observedGeneration: gen, lastTransitionTime: '2026-01-01T12:00:00Z' });

/** A pretend agent: running, with the given conditions for the current generation. */
function agent(conditions: (gen: number) => Condition[], pending: { field: string; reason: string }[] = []) {
  return async (ves: any) => {
    const ve = (await ves.get('web1', 'default')) as VirtualEnvironment;
    const gen = ve.metadata.generation ?? 1;
    await ves.patchStatus('web1', 'default', { phase: 'Running', observedGeneration: gen, pendingResources: pending, conditions: conditions(gen) });
  };
}

describe('kvz set', () => {
  it('each flag edits its spec.resources field; the others are kept', async () => {
    const h = await harness();
    const code = await h.run(
      'set', 'web1', '--memory', '1Gi', '--swap', '512Mi', '--guarantee', '128Mi', '--cpu-units', '2000', '--cpu-limit', '50%', '--cpus', '2', '--cpuset', '0-1',
      '--processes', '300', '--open-files', '4096', '--disk', '20Gi', '--inodes', '500000', '--io-weight', '300', '--read-bps', '10Mi', '--write-bps', '5242880',
      '--read-iops', '400', '--write-iops', '200',
    );
    assert.equal(code, 0, h.err.join(''));
    const ve = await h.get();
    assert.deepEqual(ve.spec.resources, {
      memory: { limit: '1Gi', swap: '512Mi', guarantee: '128Mi' },
      cpu: { units: 2000, limit: '50%', cpus: 2, cpuset: '0-1' },
      processes: 300,
      openFiles: 4096,
      disk: { space: '20Gi', inodes: 500000, ioWeight: 300, readBps: '10Mi', writeBps: 5242880, readIops: 400, writeIops: 200 },
    });
    assert.equal(ve.metadata.generation, 2);
    assert.match(h.out.join(''), /web1 resources set \(generation 2\)/);
  });

  it('--disk and --inodes alone edit only spec.resources.disk.space / .inodes', async () => {
    const h = await harness();
    assert.equal(await h.run('set', 'web1', '--disk', '4Gi'), 0, h.err.join(''));
    assert.deepEqual((await h.get()).spec.resources, { memory: { limit: '256Mi' }, disk: { space: '4Gi' }, processes: 100 });
    assert.equal(await h.run('set', 'web1', '--inodes', '250000'), 0, h.err.join(''));
    assert.deepEqual((await h.get()).spec.resources?.disk, { space: '4Gi', inodes: 250000 });
  });

  it('"none" removes a limit, but never the disk size', async () => {
    const h = await harness();
    assert.equal(await h.run('set', 'web1', '--memory', 'none', '--processes', 'unlimited'), 0, h.err.join(''));
    assert.deepEqual((await h.get()).spec.resources, { memory: {}, disk: { space: '2Gi' } });
    assert.equal(await h.run('set', 'web1', '--disk', 'none'), 2);
    assert.match(h.err.join(''), /--disk: a VE's disk always has a size and never shrinks; give a size such as 20Gi/);
    assert.deepEqual((await h.get()).spec.resources?.disk, { space: '2Gi' });
  });

  it('a bad value is refused with a message naming the flag, and nothing is written', async () => {
    const cases: [string[], RegExp][] = [
      [['--disk', 'huge'], /--disk.*invalid value "huge".*512Mi/],
      [['--disk', '-1Gi'], /--disk.*invalid value "-1Gi"/],
      [['--inodes', '1e6'], /--inodes: invalid value "1e6": expected a whole number/],
      [['--inodes', '-5'], /--inodes: invalid value "-5"/],
      [['--memory', '1GB'], /--memory: invalid value "1GB": expected a quantity such as 512Mi/],
      [['--read-bps', 'fast'], /--read-bps.*invalid value "fast"/],
      [['--write-iops', '1.5'], /--write-iops: invalid value "1.5": expected a whole number/],
      [['--cpu-limit', 'half'], /--cpu-limit.*invalid value "half"/],
      [['--cpuset', '0-'], /--cpuset: invalid value "0-"/],
      // A good flag next to a bad one is not written either.
      [['--memory', '1Gi', '--processes', 'many'], /--processes: invalid value "many"/],
      [['--disk', '8Gi', '-o', 'table'], /unknown output format "table": use json or yaml/],
      [['--disk', '8Gi', '--wait', '--timeout', 'soon'], /invalid duration "soon" for --timeout/],
      [['--disk'], /flag needs a value: --disk/],
    ];
    for (const [flags, message] of cases) {
      const h = await harness();
      const before = await h.get();
      assert.equal(await h.run('set', 'web1', ...flags), 2, flags.join(' '));
      assert.match(h.err.join(''), message, flags.join(' '));
      const after = await h.get();
      assert.equal(after.metadata.resourceVersion, before.metadata.resourceVersion, `${flags.join(' ')}: nothing written`);
      assert.deepEqual(after.spec, before.spec);
    }
  });

  it('-o json and -o yaml print the updated object instead of prose', async () => {
    const h = await harness();
    assert.equal(await h.run('set', 'web1', '--disk', '8Gi', '-o', 'json'), 0, h.err.join(''));
    assert.equal(h.out.length, 1, 'only the object');
    const json = JSON.parse(h.out[0]!) as VirtualEnvironment;
    assert.equal(json.spec.resources?.disk?.space, '8Gi');
    assert.equal(json.metadata.generation, 2);
    assert.equal(await h.run('set', 'web1', '--memory', '2Gi', '-oyaml'), 0, h.err.join(''));
    const yaml = parseYaml(h.out[1]!) as VirtualEnvironment;
    assert.equal(yaml.spec.resources?.memory?.limit, '2Gi');
    assert.equal(yaml.kind, 'VirtualEnvironment');
  });

  it('--wait on --disk ends on DiskResized: a pending grow until restart is exit 0, a refused shrink exit 1', async () => {
    const grow = await harness(agent((g) => [cond('ResourcesApplied', 'True', 'Applied', '', g), cond('DiskResized', 'False', 'RestartRequired', 'the disk grows at the next start', g)], [{ field: 'spec.resources.disk.space', reason: 'RestartRequired: the disk is 2Gi; it grows to 8Gi at the next start' }]));
    assert.equal(await grow.run('set', 'web1', '--disk', '8Gi', '--wait'), 0, grow.err.join(''));
    assert.match(grow.out.join(''), /pending spec\.resources\.disk\.space: RestartRequired/);

    const shrink = await harness(agent((g) => [cond('ResourcesApplied', 'True', 'Applied', '', g), cond('DiskResized', 'False', 'ShrinkRefused', 'spec.resources.disk.space: ShrinkRefused: disks never shrink', g)]));
    assert.equal(await shrink.run('set', 'web1', '--disk', '1Gi', '--wait', '-o', 'json'), 1);
    assert.match(shrink.err.join(''), /error: not applied: spec\.resources\.disk\.space: ShrinkRefused/);
    assert.equal((JSON.parse(shrink.out.join('')) as VirtualEnvironment).status?.conditions?.find((c) => c.type === 'DiskResized')?.reason, 'ShrinkRefused', '-o json prints the final object');

    // A cgroup limit alone does not wait for DiskResized (which this agent never writes).
    const mem = await harness(agent((g) => [cond('ResourcesApplied', 'True', 'Applied', '', g)]));
    assert.equal(await mem.run('set', 'web1', '--memory', '1Gi', '--wait'), 0, mem.err.join(''));
    assert.match(mem.out.join(''), /applied live/);
  });

  it('--wait times out naming the conditions it waited for', async () => {
    const h = await harness(agent((g) => [cond('ResourcesApplied', 'True', 'Applied', '', g)]));
    assert.notEqual(await h.run('set', 'web1', '--disk', '8Gi', '--wait', '--timeout', '2s'), 0);
    assert.match(h.err.join(''), /timed out after 2s .*status\.conditions DiskResized/);
  });
});
