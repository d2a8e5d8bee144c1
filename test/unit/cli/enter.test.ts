// `kvz enter` on a fake API and FakeRuntime: root's shell and home come from the VE's
// /etc/passwd (read by a process inside the VE), the caller's TERM passes through, and the
// shell's exit code is kvz's. The real pty side is in test/integration/enter.test.ts.

import assert from 'node:assert/strict';
import type { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import type { VirtualEnvironment } from '../../../src/api/types.js';
import { VE_REF, stderrLogger, type CliIO } from '../../../src/cli/context.js';
import { rootLogin } from '../../../src/cli/exec.js';
import { runCli } from '../../../src/cli/main.js';
import type { ExecOptions } from '../../../src/runtime/index.js';
import { refsFromCrds, registryApplyTarget } from '../../../src/sources/kinds.js';
import { FakeApi } from '../../helpers/fake-resource-client.js';
import { FakeRuntime } from '../../helpers/fake-runtime.js';

describe('rootLogin', () => {
  it('takes root\'s shell and home from passwd', () => {
    assert.deepEqual(rootLogin('daemon:x:1:1::/usr/sbin:/usr/sbin/nologin\nroot:x:0:0:root:/root:/bin/bash\n'), { shell: '/bin/bash', home: '/root' });
    assert.deepEqual(rootLogin('root:x:0:0::/home/admin:/usr/bin/zsh'), { shell: '/usr/bin/zsh', home: '/home/admin' });
  });
  it('falls back to /bin/sh and /root when the entry is missing, relative, no-login or odd', () => {
    assert.deepEqual(rootLogin(''), { shell: '/bin/sh', home: '/root' });
    assert.deepEqual(rootLogin('nobody:x:65534:65534::/nonexistent:/bin/false\n'), { shell: '/bin/sh', home: '/root' });
    assert.deepEqual(rootLogin('root:x:0:0:root:/root:/usr/sbin/nologin\n'), { shell: '/bin/sh', home: '/root' });
    assert.deepEqual(rootLogin('root:x:0:0:root:/root:/bin/false\n'), { shell: '/bin/sh', home: '/root' });
    assert.deepEqual(rootLogin('root:x:0:0:root:root:bash\n'), { shell: '/bin/sh', home: '/root' });
    assert.deepEqual(rootLogin('root:x:0:0:root::\n'), { shell: '/bin/sh', home: '/root' });
    assert.deepEqual(rootLogin('root:x:0:0:root:/ro\u001bot:/bin/ba\u0007sh\n'), { shell: '/bin/sh', home: '/root' });
  });
  it('takes the first uid 0 entry when none is named root', () => {
    assert.deepEqual(rootLogin('toor:x:0:0::/var/toor:/bin/ash\nadm:x:0:0::/adm:/bin/ksh\n'), { shell: '/bin/ash', home: '/var/toor' });
  });
});

describe('kvz enter', () => {
  async function setup(o: { passwd?: string; home?: boolean; term?: string; code?: number }) {
    const api = new FakeApi();
    const runtime = new FakeRuntime();
    const calls: { argv: string[]; opts: ExecOptions }[] = [];
    runtime.exec = async (_uid, argv, opts) => {
      calls.push({ argv, opts });
      if (argv[0] === 'cat') {
        if (o.passwd === undefined) return 1;
        (opts.stdout as Writable).write(o.passwd);
        return 0;
      }
      if (argv[0] === 'test') return o.home === false ? 1 : 0;
      return o.code ?? 0;
    };
    const io: CliIO = {
      stdout: () => undefined,
      stderr: () => undefined,
      env: o.term === undefined ? {} : { TERM: o.term },
      stdinIsTTY: true,
      readStdin: () => '',
      now: () => new Date('2024-01-01T12:00:00Z'),
      hostname: () => 'node-a',
      log: stderrLogger(() => undefined),
      connect: () => ({ kubeconfigPath: '/fake/kubeconfig', server: 'https://fake:6443', target: registryApplyTarget(refsFromCrds(), (ref) => api.client(ref), 'https://fake:6443'), ves: api.client<VirtualEnvironment>(VE_REF) }),
      runtime: async () => runtime,
      sleep: async () => undefined,
    };
    const c = api.client<VirtualEnvironment>(VE_REF);
    await c.create({ apiVersion: 'kubevz.io/v1alpha1', kind: 'VirtualEnvironment', metadata: { name: 'web', namespace: 'default' }, spec: { template: 'busybox' } });
    const ve = await c.patchStatus('web', 'default', { phase: 'Running', nodeName: 'node-a' });
    await runtime.ensureTemplate('busybox');
    await runtime.ensureRunning({ uid: ve.metadata.uid!, name: 'default/web', hostname: 'web', template: 'busybox', addresses: [], limits: {} });
    return { calls, run: () => runCli(['enter', 'web'], io) };
  }

  it('runs root\'s login shell with HOME, SHELL, the caller\'s TERM, in the home directory, and returns its exit code', async () => {
    const s = await setup({ passwd: 'root:x:0:0:root:/var/root:/bin/bash\n', term: 'screen-256color', code: 3 });
    assert.equal(await s.run(), 3);
    assert.deepEqual(s.calls.map((c) => c.argv), [['cat', '/etc/passwd'], ['test', '-d', '/var/root'], ['/bin/bash', '-l']]);
    const shell = s.calls.at(-1)!.opts;
    assert.equal(shell.tty, true);
    assert.equal(shell.cwd, '/var/root');
    assert.deepEqual(shell.env, ['TERM=screen-256color', 'HOME=/var/root', 'SHELL=/bin/bash', 'USER=root', 'LOGNAME=root']);
    // The reads are quiet: no terminal, no stdin of the caller's.
    assert.equal(s.calls[0]!.opts.tty, false);
    assert.equal(s.calls[0]!.opts.stdin, 'ignore');
  });

  it('falls back to /bin/sh, /root and TERM=xterm; no cwd when the home directory is missing', async () => {
    const s = await setup({ home: false });
    assert.equal(await s.run(), 0);
    const last = s.calls.at(-1)!;
    assert.deepEqual(last.argv, ['/bin/sh', '-l']);
    assert.deepEqual(last.opts.env, ['TERM=xterm', 'HOME=/root', 'SHELL=/bin/sh', 'USER=root', 'LOGNAME=root']);
    assert.equal(last.opts.cwd, undefined);
  });
});
