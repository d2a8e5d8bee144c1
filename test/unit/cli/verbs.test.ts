// The vzctl-style verbs on FakeApi: each is an edit of the declared state; waiting ends on the
// status a node agent would write (simulated here), and says why when it times out.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { RESTART_REQUESTED_ANNOTATION, RESTARTED_ANNOTATION, type VirtualEnvironment } from '../../../src/api/types.js';
import { cliHarness } from '../../helpers/cli-harness.js';

const harness = cliHarness;

/** A pretend agent: writes the status the real one would for the declared power state. */
async function agentStep(ves: any): Promise<void> {
  for (const ve of (await ves.list({})) as VirtualEnvironment[]) {
    const want = ve.spec.powerState ?? 'Running';
    const restart = ve.metadata.annotations?.[RESTART_REQUESTED_ANNOTATION];
    if (restart && restart !== ve.metadata.annotations?.[RESTARTED_ANNOTATION]) await ves.mergePatch(ve.metadata.name, ve.metadata.namespace, { metadata: { annotations: { [RESTARTED_ANNOTATION]: restart } } });
    const running = want === 'Running';
    await ves.patchStatus(ve.metadata.name, ve.metadata.namespace, {
      phase: running ? 'Running' : 'Stopped', nodeName: 'n1', addresses: ['10.0.0.5'], observedGeneration: ve.metadata.generation,
      initPid: running ? 100 + (restart ? 1 : 0) : null,
      conditions: [{ type: 'Ready', status: running ? 'True' : 'False', reason: running ? 'Running' : 'Stopped', message: '', lastTransitionTime: '2026-01-01T12:00:00Z', observedGeneration: ve.metadata.generation }],
    });
  }
}

describe('kvz verbs', () => {
  it('create declares the spec from the flags and waits until Ready', async () => {
    const h = harness(({ ves }) => agentStep(ves));
    const code = await h.run('create', 'web1', '--template', 'busybox', '--memory', '256Mi', '--cpus', '1.5', '--disk', '2Gi', '--ip', '10.0.0.5/24', '--node-selector', 'zone=a', '--processes', '64');
    assert.equal(code, 0, h.err.join(''));
    const ve = (await h.ves.get('web1', 'default'))!;
    assert.deepEqual(ve.spec.resources, { memory: { limit: '256Mi' }, cpu: { limit: '150%' }, disk: { space: '2Gi' }, processes: 64 });
    assert.deepEqual(ve.spec.network?.addresses, ['10.0.0.5/24']);
    assert.deepEqual(ve.spec.nodeSelector, { zone: 'a' });
    assert.match(h.out.join(''), /virtualenvironment "web1" is running on node n1 at 10\.0\.0\.5/);
  });

  it('create rejects bad flags with what to write instead (exit 2)', async () => {
    const h = harness();
    assert.equal(await h.run('create', 'x', '--template', 'busybox', '--ip', '10.0.0.5'), 2);
    assert.match(h.err.join(''), /expected an IPv4 address with prefix length, e\.g\. 10\.213\.0\.10\/24/);
    assert.equal(await h.run('create', 'x', '--memory', '1Gi'), 2);
    assert.match(h.err.join(''), /create needs --template/);
    assert.equal(await h.run('create', 'x', '--template', 'busybox', '--memory', 'lots'), 2);
    assert.match(h.err.join(''), /--memory.*512Mi/);
  });

  it('stop and start edit spec.powerState; restart sets a new restart request and waits for it to be acted on', async () => {
    const h = harness(({ ves }) => agentStep(ves));
    assert.equal(await h.run('create', 'a', '--template', 'busybox'), 0);
    assert.equal(await h.run('stop', 'a'), 0, h.err.join(''));
    assert.equal((await h.ves.get('a', 'default'))!.spec.powerState, 'Stopped');
    assert.match(h.out.join(''), /"a" is stopped/);
    assert.equal(await h.run('start', 'a', '-o', 'json'), 0);
    const started = JSON.parse(h.out.at(-1)!);
    assert.equal(started.status.phase, 'Running');
    assert.equal(await h.run('restart', 'a', '-o', 'yaml'), 0, h.err.join(''));
    const restarted = parseYaml(h.out.at(-1)!);
    assert.ok(restarted.metadata.annotations[RESTART_REQUESTED_ANNOTATION]);
    assert.equal(restarted.metadata.annotations[RESTARTED_ANNOTATION], restarted.metadata.annotations[RESTART_REQUESTED_ANNOTATION]);
  });

  it('waiting times out with the reason from the conditions', async () => {
    const h = harness(async ({ ves }) => {
      await ves.patchStatus('p', 'default', { phase: 'Pending', observedGeneration: 1, conditions: [{ type: 'Scheduled', status: 'False', reason: 'Unschedulable', message: '0/1 nodes available: 1 insufficient memory', lastTransitionTime: '2026-01-01T12:00:00Z' }] });
    });
    assert.equal(await h.run('create', 'p', '--template', 'busybox', '--timeout', '2s'), 1);
    assert.match(h.err.join(''), /timed out after 2s waiting for virtualenvironment "p" to be Ready: not scheduled: 0\/1 nodes available: 1 insufficient memory/);
  });

  it('list is a vzlist-like table; status shows conditions; destroy waits until gone', async () => {
    const h = harness(({ ves }) => agentStep(ves));
    await h.run('create', 'b', '--template', 'busybox', '--hostname', 'bee');
    await h.run('create', 'a', '--template', 'busybox', '--stopped');
    h.out.length = 0;
    assert.equal(await h.run('list'), 0);
    const lines = h.out.join('').trim().split('\n');
    assert.match(lines[0]!, /^NAME\s+NPROC\s+STATUS\s+IP_ADDR\s+HOSTNAME\s+NODE$/);
    assert.match(lines[1]!, /^a\s+-\s+stopped\s+10\.0\.0\.5\s+a\s+n1$/);
    assert.match(lines[2]!, /^b\s+-\s+running\s+10\.0\.0\.5\s+bee\s+n1$/);
    h.out.length = 0;
    assert.equal(await h.run('status', 'b'), 0);
    assert.match(h.out.join(''), /Status:\s+running/);
    assert.match(h.out.join(''), /Ready\s+True\s+Running/);
    assert.equal(await h.run('list', '-o', 'json'), 0);
    assert.equal(JSON.parse(h.out.at(-1)!).items.length, 2);
    assert.equal(await h.run('destroy', 'a'), 0);
    assert.equal(await h.ves.get('a', 'default'), undefined);
    assert.equal(await h.run('destroy', 'a'), 1);
    assert.match(h.err.join(''), /virtualenvironment "a" not found in namespace "default"/);
  });
});
