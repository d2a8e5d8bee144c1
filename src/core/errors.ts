// One error base for the project: a stable `code` that callers test (never `instanceof`),
// a message that says what to do, and the underlying `cause`.

export type ErrorCode =
  | 'NotFound'
  | 'AlreadyExists'
  | 'Conflict'
  | 'Invalid'
  | 'CommandFailed'
  | 'HostSetup'
  | 'Unavailable'
  | 'Terminal'
  | 'Internal';

export class KvzError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, options: { cause?: unknown; details?: Record<string, unknown> } = {}) {
    super(message, { cause: options.cause });
    this.name = 'KvzError';
    this.code = code;
    this.details = options.details ?? {};
  }
}

/** An error that retrying cannot fix (bad spec, missing template): the loop records it and does not back off-retry. */
export class TerminalError extends KvzError {
  constructor(message: string, options: { cause?: unknown; details?: Record<string, unknown> } = {}) {
    super('Terminal', message, options);
    this.name = 'TerminalError';
  }
}

export function errorCode(err: unknown): ErrorCode | undefined {
  if (err && typeof err === 'object' && 'code' in err && typeof (err as { code: unknown }).code === 'string') {
    return (err as { code: ErrorCode }).code;
  }
  return undefined;
}

export function isTerminal(err: unknown): boolean {
  return errorCode(err) === 'Terminal';
}

export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
