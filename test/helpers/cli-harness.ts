// The `kvz` CLI on FakeApi: its output and errors collected, a fake clock that `sleep` advances
// (the FakeApi's timestamps follow it), and `onSleep` standing in for the controller and the
// node agents between the CLI's polls.

import type { VEMigration, VirtualEnvironment } from '../../src/api/types.js';
import { VE_REF, VEM_REF, stderrLogger, type CliIO, type Connection } from '../../src/cli/context.js';
import { runCli } from '../../src/cli/main.js';
import { refsFromCrds, registryApplyTarget } from '../../src/sources/kinds.js';
import { FakeApi } from './fake-resource-client.js';

export type FakeClient = ReturnType<FakeApi['client']>;
export type CliStep = (clients: { api: FakeApi; ves: FakeClient; migrations: FakeClient }) => Promise<void>;

export function cliHarness(onSleep?: CliStep) {
  let t = Date.parse('2026-01-01T12:00:00Z');
  const api = new FakeApi({ now: () => new Date(t) });
  const ves = api.client<VirtualEnvironment>(VE_REF);
  const migrations = api.client<VEMigration>(VEM_REF);
  const out: string[] = [];
  const err: string[] = [];
  const connection: Connection = { kubeconfigPath: '/fake', server: 'https://fake', target: registryApplyTarget(refsFromCrds(), (ref) => api.client(ref), 'https://fake'), ves, migrations };
  const io: CliIO = {
    stdout: (s) => void out.push(s), stderr: (s) => void err.push(s), env: {}, stdinIsTTY: false, readStdin: () => '',
    now: () => new Date(t), hostname: () => 'h', log: stderrLogger((s) => void err.push(s)), connect: () => connection,
    runtime: async () => { throw new Error('no runtime'); },
    sleep: async (ms) => {
      t += ms;
      await onSleep?.({ api, ves: ves as never, migrations: migrations as never });
    },
  };
  return { api, ves, migrations, out, err, run: (...argv: string[]) => runCli(argv, io), advance: (ms: number) => (t += ms) };
}
