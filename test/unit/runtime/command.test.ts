import { test } from 'node:test';
import assert from 'node:assert/strict';
import { run } from '../../../src/runtime/command.js';
import { KvzError } from '../../../src/core/errors.js';

test('stdout and stderr come back without their final newline; input reaches stdin', async () => {
  const r = await run('sh', ['-c', 'cat; echo err >&2'], { input: 'one\ntwo\n' });
  assert.deepEqual(r, { stdout: 'one\ntwo', stderr: 'err', exitCode: 0 });
});

test('a failing command is a CommandFailed naming it, its exit code and stderr', async () => {
  await assert.rejects(run('sh', ['-c', 'echo no such thing >&2; exit 3']), (err: KvzError) => {
    assert.equal(err.code, 'CommandFailed');
    assert.match(err.message, /^sh -c .* failed \(exit 3\): no such thing$/);
    assert.equal(err.details?.exitCode, 3);
    return true;
  });
});

test('allowFailure and okCodes return the result of a non-zero exit', async () => {
  assert.equal((await run('sh', ['-c', 'exit 4'], { allowFailure: true })).exitCode, 4);
  assert.equal((await run('sh', ['-c', 'echo x; exit 1'], { okCodes: [1] })).stdout, 'x');
});

test('env adds to the environment', async () => {
  assert.equal((await run('sh', ['-c', 'echo "$KVZ_T:${PATH:+path}"'], { env: { KVZ_T: 'v' } })).stdout, 'v:path');
});

test('a command that cannot start fails with exit -1 and the reason', async () => {
  await assert.rejects(run('/nonexistent/kvz-cmd', []), (err: KvzError) => err.code === 'CommandFailed' && /ENOENT/.test(err.message) && err.details?.exitCode === -1);
  const r = await run('/nonexistent/kvz-cmd', [], { allowFailure: true });
  assert.equal(r.exitCode, -1);
  assert.match(r.stderr, /ENOENT/);
});

test('a timeout ends the command and says so', async () => {
  const t0 = Date.now();
  await assert.rejects(run('sleep', ['30'], { timeoutMs: 100 }), (err: KvzError) => err.code === 'CommandFailed' && /timed out after 100 ms/.test(err.message));
  assert.ok(Date.now() - t0 < 10_000, 'the sleep was ended, not waited for');
});

test('an abort ends the command as Unavailable; an aborted signal starts nothing', async () => {
  const ac = new AbortController();
  const p = run('sleep', ['30'], { signal: ac.signal });
  setTimeout(() => ac.abort(new Error('stop')), 50);
  await assert.rejects(p, (err: KvzError) => err.code === 'Unavailable' && /sleep was cancelled/.test(err.message));
  await assert.rejects(run('sleep', ['30'], { signal: ac.signal }), /stop/);
});
