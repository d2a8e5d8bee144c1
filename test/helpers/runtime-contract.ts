// Contract tests every VERuntime must pass: the real one (integration, as root) and the fake
// used by unit tests. Each call gets a fresh runtime and a config to run.

import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import type { VEConfig, VERuntime } from '../../src/runtime/index.js';

export interface ContractSubject {
  runtime: VERuntime;
  config: VEConfig;
  cleanup?: () => Promise<void>;
}

export function runtimeContract(name: string, make: () => Promise<ContractSubject | undefined>): void {
  let subject: ContractSubject | undefined;
  after(async () => {
    if (!subject) return;
    await subject.runtime.destroy(subject.config.uid, { timeoutMs: 5000 }).catch(() => {});
    await subject.cleanup?.();
  });

  test(`${name}: lifecycle follows the contract`, async (t) => {
    subject = await make();
    if (!subject) return t.skip('runtime not available');
    const { runtime, config } = subject;
    const stop = { timeoutMs: 5000 };

    assert.equal((await runtime.inspect(config.uid)).state, 'absent');
    await runtime.ensureTemplate(config.template);
    assert.equal((await runtime.ensureTemplate(config.template)).result, 'unchanged');

    assert.notEqual(await runtime.ensureRunning(config), 'unchanged');
    assert.equal(await runtime.ensureRunning(config), 'unchanged', 'a second ensureRunning changes nothing');
    const running = await runtime.inspect(config.uid);
    assert.equal(running.state, 'running');
    assert.ok(running.pid && running.pid > 0);
    assert.deepEqual(running.config?.addresses, config.addresses);
    assert.ok((await runtime.list()).some((v) => v.uid === config.uid));
    const disk = await runtime.diskUsage(config.uid);
    assert.ok(disk && disk.sizeBytes >= (config.disk?.sizeBytes ?? 1) && disk.inodes > 0, 'a running VE has its own disk');
    for (const [name, f] of Object.entries(await runtime.nodeFeatures())) {
      assert.equal(typeof f.available, 'boolean', `feature ${name}`);
      assert.ok(f.reason.length > 0, `feature ${name} says why`);
    }

    const limits = { ...config.limits, pids: (config.limits.pids ?? 100) + 7 };
    assert.equal(await runtime.updateLimits(config.uid, limits), 'updated');
    assert.equal((await runtime.readLimits(config.uid)).pids, limits.pids);
    assert.equal((await runtime.inspect(config.uid)).pid, running.pid, 'a live limit change keeps init');
    const usage = await runtime.readUsage(config.uid, running.pid);
    assert.ok(usage.processes.held >= 1, 'a running VE has at least its init');
    assert.ok(usage.memory.held > 0, 'a running VE uses memory');
    assert.equal(usage.processes.limit, limits.pids, 'usage carries the pids limit');

    assert.equal(await runtime.exec(config.uid, ['true'], { tty: false }), 0);
    assert.notEqual(await runtime.exec(config.uid, ['false'], { tty: false }), 0);

    assert.notEqual(await runtime.ensureStopped(config.uid, stop), 'unchanged');
    assert.equal(await runtime.ensureStopped(config.uid, stop), 'unchanged');
    assert.equal((await runtime.inspect(config.uid)).state === 'running', false);

    assert.notEqual(await runtime.ensureRunning(config), 'unchanged', 'a stopped VE starts again');
    assert.equal((await runtime.inspect(config.uid)).state, 'running');

    assert.equal(await runtime.destroy(config.uid, stop), 'deleted');
    assert.equal(await runtime.destroy(config.uid, stop), 'unchanged');
    assert.equal((await runtime.inspect(config.uid)).state, 'absent');
    assert.ok(!(await runtime.list()).some((v) => v.uid === config.uid));
    assert.equal(await runtime.diskUsage(config.uid), undefined, 'destroy removes the disk');
  });

  test(`${name}: suspend and resume follow the contract`, async (t) => {
    subject ??= await make();
    if (!subject) return t.skip('runtime not available');
    const { runtime } = subject;
    const stop = { timeoutMs: 5000 };
    const feature = (await runtime.nodeFeatures()).checkpoint;
    assert.ok(feature, 'nodeFeatures() reports checkpoint');
    if (!feature.available) return t.skip(`checkpoint unavailable: ${feature.reason}`);
    await runtime.ensureTemplate(subject.config.template);

    // A VE with a user namespace (the default) suspends and resumes like a privileged one.
    const userns = { ...subject.config, security: undefined };
    await runtime.ensureRunning(userns);
    assert.equal(await runtime.suspend(userns.uid), 'updated');
    assert.equal((await runtime.inspect(userns.uid)).state, 'suspended');
    assert.equal(await runtime.resume(userns), 'updated');
    assert.equal((await runtime.inspect(userns.uid)).state, 'running');
    assert.equal(await runtime.exec(userns.uid, ['true'], { tty: false }), 0);
    assert.equal(await runtime.destroy(userns.uid, stop), 'deleted');

    const config = { ...subject.config, security: { userNamespace: false } };
    await runtime.ensureRunning(config);
    assert.equal(await runtime.suspend(config.uid), 'updated');
    const suspended = await runtime.inspect(config.uid);
    assert.equal(suspended.state, 'suspended');
    assert.equal(suspended.pid, undefined, 'a suspended VE has no init');
    assert.equal((await runtime.list()).find((v) => v.uid === config.uid)?.state, 'suspended');
    assert.equal(await runtime.suspend(config.uid), 'unchanged');
    assert.notEqual(await runtime.exec(config.uid, ['true'], { tty: false }).catch(() => -1), 0, 'nothing runs in a suspended VE');

    assert.equal(await runtime.resume(config), 'updated');
    const resumed = await runtime.inspect(config.uid);
    assert.equal(resumed.state, 'running');
    assert.deepEqual(resumed.addresses, config.addresses, 'the resumed VE has its addresses');
    assert.equal(await runtime.resume(config), 'unchanged');
    assert.equal(await runtime.exec(config.uid, ['true'], { tty: false }), 0);

    // Running is asked of a suspended VE: it resumes (never a cold boot over its checkpoint).
    assert.equal(await runtime.suspend(config.uid), 'updated');
    assert.notEqual(await runtime.ensureRunning(config), 'unchanged');
    assert.equal((await runtime.inspect(config.uid)).state, 'running');
    assert.equal(await runtime.ensureRunning(config), 'unchanged');

    // Stopping a suspended VE discards its checkpoint.
    assert.equal(await runtime.suspend(config.uid), 'updated');
    assert.equal(await runtime.ensureStopped(config.uid, stop), 'updated');
    const stopped = await runtime.inspect(config.uid);
    assert.ok(stopped.state !== 'suspended' && stopped.state !== 'running', `state ${stopped.state}`);
    assert.equal(await runtime.ensureStopped(config.uid, stop), 'unchanged');
    await assert.rejects(runtime.resume(config), { code: 'NotFound' });

    assert.equal(await runtime.destroy(config.uid, stop), 'deleted');
    assert.equal((await runtime.inspect(config.uid)).state, 'absent', 'destroy removes the checkpoint too');
  });
}
