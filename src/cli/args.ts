// A small argument parser for kvz commands: `--flag value`, `--flag=value`, `-o yaml`, `-oyaml`,
// `-o=yaml`, combined short booleans (`-it`), `--flag=false` for booleans, repeatable flags, and
// `--` after which everything is passed through untouched. Mistakes are UsageErrors (exit 2).

export interface FlagSpec {
  name: string;
  short?: string;
  type: 'string' | 'boolean';
  /** Repeatable: the value is a list (`-f a.yaml -f b.yaml`). */
  multiple?: boolean;
}

export type FlagValue = string | boolean | string[];

export interface ParsedArgs {
  flags: Record<string, FlagValue | undefined>;
  positionals: string[];
  /** Arguments after `--`; undefined when there was no `--`. */
  rest?: string[];
}

/** A mistake on the command line: the message says what is wrong; exit code 2. */
export class UsageError extends Error {
  readonly code = 'Usage';
  constructor(
    message: string,
    readonly command?: string,
  ) {
    super(message);
    this.name = 'UsageError';
  }
}

export function isUsageError(err: unknown): err is UsageError {
  return (err as { code?: unknown })?.code === 'Usage';
}

function parseBool(flag: string, value: string): boolean {
  if (/^(true|1|yes)$/i.test(value)) return true;
  if (/^(false|0|no)$/i.test(value)) return false;
  throw new UsageError(`invalid value "${value}" for ${flag}: expected true or false`);
}

export function parseArgs(argv: string[], specs: FlagSpec[], command?: string): ParsedArgs {
  const byName = new Map(specs.map((s) => [s.name, s]));
  const byShort = new Map(specs.filter((s) => s.short).map((s) => [s.short as string, s]));
  const out: ParsedArgs = { flags: {}, positionals: [] };
  const set = (spec: FlagSpec, value: string | boolean) => {
    if (spec.multiple) {
      const prev = out.flags[spec.name];
      out.flags[spec.name] = [...(Array.isArray(prev) ? prev : []), String(value)];
    } else out.flags[spec.name] = value;
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === '--') {
      out.rest = argv.slice(i + 1);
      break;
    }
    if (arg.startsWith('--')) {
      const eq = arg.indexOf('=');
      const name = eq < 0 ? arg.slice(2) : arg.slice(2, eq);
      const spec = byName.get(name);
      if (!spec) throw new UsageError(`unknown flag: --${name}`, command);
      if (spec.type === 'boolean') {
        set(spec, eq < 0 ? true : parseBool(`--${name}`, arg.slice(eq + 1)));
      } else if (eq >= 0) {
        set(spec, arg.slice(eq + 1));
      } else {
        const next = argv[++i];
        if (next === undefined) throw new UsageError(`flag needs a value: --${name}`, command);
        set(spec, next);
      }
      continue;
    }
    if (arg.startsWith('-') && arg.length > 1) {
      // -o yaml, -oyaml, -o=yaml, -A, -it
      for (let j = 1; j < arg.length; j++) {
        const ch = arg[j] as string;
        const spec = byShort.get(ch);
        if (!spec) throw new UsageError(`unknown flag: -${ch}${arg.length > 2 ? ` in ${arg}` : ''}`, command);
        if (spec.type === 'boolean') {
          if (arg[j + 1] === '=') {
            set(spec, parseBool(`-${ch}`, arg.slice(j + 2)));
            break;
          }
          set(spec, true);
          continue;
        }
        const inline = arg.slice(j + 1);
        if (inline) set(spec, inline.startsWith('=') ? inline.slice(1) : inline);
        else {
          const next = argv[++i];
          if (next === undefined) throw new UsageError(`flag needs a value: -${ch}`, command);
          set(spec, next);
        }
        break;
      }
      continue;
    }
    out.positionals.push(arg);
  }
  return out;
}

export function stringFlag(p: ParsedArgs, name: string): string | undefined {
  const v = p.flags[name];
  return typeof v === 'string' ? v : undefined;
}

export function boolFlag(p: ParsedArgs, name: string, dflt = false): boolean {
  const v = p.flags[name];
  return typeof v === 'boolean' ? v : dflt;
}

export function listFlag(p: ParsedArgs, name: string): string[] {
  const v = p.flags[name];
  return Array.isArray(v) ? v : typeof v === 'string' ? [v] : [];
}

/** `500ms`, `30s`, `5m`, `1h`, `1m30s`, or a plain number of seconds. */
export function parseDuration(value: string, flag: string): number {
  if (/^\d+(\.\d+)?$/.test(value)) return Number(value) * 1000;
  const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  let total = 0;
  let rest = value;
  while (rest) {
    const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)/.exec(rest);
    if (!m) throw new UsageError(`invalid duration "${value}" for ${flag}: use e.g. 30s, 5m, 1h`);
    total += Number(m[1]) * (units[m[2] as string] ?? 0);
    rest = rest.slice(m[0].length);
  }
  return total;
}

/** Flags every command that talks to the API accepts. */
export const CONNECTION_FLAGS: FlagSpec[] = [
  { name: 'kubeconfig', type: 'string' },
  { name: 'state-dir', type: 'string' },
  { name: 'help', short: 'h', type: 'boolean' },
];
