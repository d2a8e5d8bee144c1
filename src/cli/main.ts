// kvz's dispatcher: picks the command, runs it, and turns failures into one `error: ...` line
// on stderr and an exit code (0 ok, 1 error, 2 usage).

import { errorCode, errorMessage } from '../core/errors.js';
import { isUsageError } from './args.js';
import type { CliIO } from './context.js';
import { OVERVIEW, USAGE, isCommand, type CommandName } from './help.js';
import { versionText } from './version.js';

type Runner = (argv: string[], io: CliIO) => Promise<number>;

// Commands load on demand, so `kvz version` and `kvz help` do not pay for client-node.
const RUNNERS: Record<Exclude<CommandName, 'up' | 'help' | 'version'>, Runner> = {
  apply: async (a, io) => (await import('./apply.js')).runApply(a, io),
  get: async (a, io) => (await import('./get.js')).runGet(a, io),
  delete: async (a, io) => (await import('./delete.js')).runDelete(a, io),
  exec: async (a, io) => (await import('./exec.js')).runExec(a, io),
  enter: async (a, io) => (await import('./exec.js')).runEnter(a, io),
  create: async (a, io) => (await import('./verbs.js')).runCreate(a, io),
  start: async (a, io) => (await import('./verbs.js')).runStart(a, io),
  stop: async (a, io) => (await import('./verbs.js')).runStop(a, io),
  restart: async (a, io) => (await import('./verbs.js')).runRestart(a, io),
  suspend: async (a, io) => (await import('./verbs.js')).runSuspend(a, io),
  resume: async (a, io) => (await import('./verbs.js')).runResume(a, io),
  migrate: async (a, io) => (await import('./migrate.js')).runMigrate(a, io),
  destroy: async (a, io) => (await import('./verbs.js')).runDestroy(a, io),
  status: async (a, io) => (await import('./verbs.js')).runStatus(a, io),
  list: async (a, io) => (await import('./verbs.js')).runList(a, io),
  clone: async (a, io) => (await import('./clone.js')).runClone(a, io),
  template: async (a, io) => (await import('./template.js')).runTemplate(a, io),
  set: async (a, io) => (await import('./set.js')).runSet(a, io),
  beancounters: async (a, io) => (await import('./beancounters.js')).runBeancounters(a, io),
  top: async (a, io) => (await import('./top.js')).runTop(a, io),
  // Long-running processes: they build their own logger and watch signals.
  controller: async (a) => (await import('./controller.js')).runController(a),
  'node-agent': async (a) => (await import('./controller.js')).runNodeAgent(a),
};

type Terminal = Pick<CliIO, 'stdout' | 'stderr'>;

export async function runCli(argv: string[], given?: CliIO): Promise<number> {
  const term: Terminal = given ?? { stdout: (s) => void process.stdout.write(s), stderr: (s) => void process.stderr.write(s) };
  const [cmd, ...rest] = hoistGlobalFlags(argv);
  if (cmd === undefined) {
    term.stderr(OVERVIEW);
    return 2;
  }
  if (cmd === 'help' || cmd === '--help' || cmd === '-h') return help(rest[0], term);
  if (cmd === 'version' || cmd === '--version') {
    term.stdout(versionText());
    return 0;
  }
  if (!isCommand(cmd)) {
    term.stderr(`error: unknown command "${cmd}"\n\n${OVERVIEW}`);
    return 2;
  }
  if (cmd === 'up') {
    // Loaded on demand: `up` pulls in the API server, controller and agent.
    const { runUp } = await import('./up.js');
    return runUp(rest);
  }
  // `--` ends kvz's own flags (exec passes what follows to the command).
  const own = rest.includes('--') ? rest.slice(0, rest.indexOf('--')) : rest;
  if (own.includes('--help') || own.includes('-h')) {
    term.stdout(USAGE[cmd]);
    return 0;
  }
  const io = given ?? (await import('./context.js')).processIO();
  // Remember which kubeconfig the command used, so a connection error can name it.
  let kubeconfigPath: string | undefined;
  const tracked: CliIO = {
    ...io,
    connect: (opts) => {
      const conn = io.connect(opts);
      kubeconfigPath = conn.kubeconfigPath;
      return conn;
    },
  };
  try {
    return await RUNNERS[cmd as keyof typeof RUNNERS](rest, tracked);
  } catch (err) {
    if (isUsageError(err)) {
      io.stderr(`error: ${err.message}\nRun 'kvz help ${err.command ?? cmd}' for usage.\n`);
      return 2;
    }
    const where = errorCode(err) === 'Unavailable' && kubeconfigPath ? ` (kubeconfig: ${kubeconfigPath})` : '';
    io.stderr(`error: ${describeError(err)}${where}\n`);
    return 1;
  }
}

/** Connection flags may come before the command (`kvz --kubeconfig F get ve`, as with kubectl). */
function hoistGlobalFlags(argv: string[]): string[] {
  const lead: string[] = [];
  let i = 0;
  while (i < argv.length && /^--(kubeconfig|state-dir)(=|$)/.test(argv[i]!)) {
    const takesValue = !argv[i]!.includes('=');
    lead.push(...argv.slice(i, i + (takesValue ? 2 : 1)));
    i += takesValue ? 2 : 1;
  }
  if (lead.length === 0 || i >= argv.length) return argv;
  return [argv[i]!, ...lead, ...argv.slice(i + 1)];
}

async function help(topic: string | undefined, io: Terminal): Promise<number> {
  if (topic === undefined) {
    io.stdout(OVERVIEW);
    return 0;
  }
  if (!isCommand(topic)) {
    io.stderr(`error: unknown command "${topic}"\n\n${OVERVIEW}`);
    return 2;
  }
  io.stdout(USAGE[topic]);
  return 0;
}

/** One line that says what went wrong and, where we know, what to do. */
export function describeError(err: unknown): string {
  const msg = errorMessage(err);
  if (errorCode(err) === 'Internal' && err instanceof Error && err.cause) {
    return `${msg} (${errorMessage(err.cause)})`;
  }
  return msg;
}
