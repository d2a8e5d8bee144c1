// End to end: `kvz up --git file://…` on a local repository (offline). A VE declared in the
// repository comes up Ready; a new commit is applied; a commit with an invalid manifest is
// reported with its commit and file and changes nothing; removing the file prunes the VE.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { makeRepo, type TestRepo } from '../helpers/git-repo.js';
import { startKvzUp, waitFor, type Stack } from '../helpers/kvz-up.js';
import { inCI, missingPrereqs } from '../helpers/prereq.js';

const missing = missingPrereqs({ root: true, binaries: ['kubectl', 'runc', 'ip', 'git'] });
if (missing.length && inCI) throw new Error(`e2e prerequisites missing under CI: ${missing.join(', ')}`);

function veYaml(name: string, address: string, units = 500): string {
  return `apiVersion: kubevz.io/v1alpha1
kind: VirtualEnvironment
metadata:
  name: ${name}
spec:
  template: busybox
  hostname: ${name}
  resources:
    memory: {limit: 64Mi}
    cpu: {units: ${units}}
  network:
    addresses: [${address}]
`;
}

describe('kvz up --git', { skip: missing.length ? `needs ${missing.join(', ')}` : false }, () => {
  let stack: Stack | undefined;
  let repo: TestRepo | undefined;
  const name = `git-${process.pid.toString(36)}`;
  // The subnet is fixed before start, so the first commit can carry the VE's address.
  const net = 100 + Math.floor(Math.random() * 150);
  const addr = `10.213.${net}.41/24`;
  let first = '';

  const getVE = async (): Promise<any | undefined> => {
    const r = await stack!.kubectl(['get', 've', name, '-o', 'json'], { allowFail: true });
    return r.code === 0 ? JSON.parse(r.stdout) : undefined;
  };
  const logs = () => stack!.logs.join('');

  before(async () => {
    repo = makeRepo();
    first = repo.commit({ 'ves/web.yaml': veYaml(name, addr), 'README.md': 'kubevz e2e\n' }, 'a VE');
    stack = await startKvzUp({ net, extraArgs: ['--git', repo.url, '--branch', 'main', '--path', 'ves', '--interval', '1s'] });
  });
  after(async () => {
    if (stack) {
      await stack.kubectl(['delete', 've', name, '--ignore-not-found', '--timeout=60s'], { allowFail: true });
      await stack.stop();
    }
    repo?.remove();
  });

  test('the VE of the first commit comes up Ready; the banner and the log name the commit', async () => {
    assert.match(logs(), new RegExp(`git: +file://.* branch main path ves: commit ${first.slice(0, 12)}`));
    // The log is written asynchronously (pino); the banner synchronously.
    await waitFor('the applied commit logged', async () => logs().includes(`applied commit ${first.slice(0, 12)}`), 10_000);
    const ready = await stack!.kubectl(['wait', '--for=condition=Ready', `ve/${name}`, '--timeout=120s'], { allowFail: true });
    assert.equal(ready.code, 0, `not Ready: ${ready.stderr}\n${JSON.stringify((await getVE())?.status?.conditions)}`);
    const ve = await getVE();
    assert.equal(ve.metadata.annotations['kubevz.io/source-file'], 'ves/web.yaml');
    assert.ok((ve.metadata.managedFields ?? []).length === 0 || ve.metadata.managedFields.some((m: { manager: string }) => m.manager.startsWith('kubevz-git:')));
  });

  test('a new commit is applied', async () => {
    const c2 = repo!.commit({ 'ves/web.yaml': veYaml(name, addr, 700) }, 'more cpu');
    await waitFor('cpu units 700', async () => (await getVE())?.spec.resources.cpu.units === 700, 30_000);
    await waitFor('the commit logged', async () => logs().includes(`applied commit ${c2.slice(0, 12)}`));
  });

  test('a commit with an invalid manifest is reported with commit and file, and changes nothing', async () => {
    const before = await getVE();
    const bad = repo!.commit(
      {
        'ves/web.yaml': veYaml(name, addr, 900),
        'ves/bad.yaml': `apiVersion: kubevz.io/v1alpha1\nkind: VirtualEnvironment\nmetadata:\n  name: ${name}-bad\nspec:\n  template: busybox\n  powerState: Sideways\n`,
      },
      'a bad manifest',
    );
    await waitFor('the bad commit reported', async () => {
      const line = stack!.logs.join('').split('\n').find((l) => l.includes(`commit ${bad.slice(0, 12)} rejected`));
      return !!line && line.includes('ves/bad.yaml') && line.includes('spec.powerState');
    }, 30_000);
    await new Promise((r) => setTimeout(r, 2500)); // two more polls: still nothing applied
    const after = await getVE();
    assert.equal(after.spec.resources.cpu.units, 700, 'the valid edit in the same commit is not applied');
    assert.equal(after.metadata.generation, before.metadata.generation, 'spec unchanged');
    const badVE = await stack!.kubectl(['get', 've', `${name}-bad`], { allowFail: true });
    assert.notEqual(badVE.code, 0, 'the invalid VE was not created');
  });

  test('removing the file in a commit prunes the VE', async () => {
    const c4 = repo!.commit({ 'ves/web.yaml': null, 'ves/bad.yaml': null }, 'remove the VE');
    await waitFor('the VE pruned', async () => (await getVE()) === undefined, 90_000);
    await waitFor('the commit logged', async () => logs().includes(`applied commit ${c4.slice(0, 12)}`), 10_000);
  });
});
