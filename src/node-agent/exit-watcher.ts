// Notices when a VE's init dies (killed by hand, crashed) without polling runc: it checks the
// recorded init PIDs with signal 0, which costs no process spawn, and reports the VE's key so
// the reconciler brings it back to its declared state.

import { readFileSync } from 'node:fs';

export interface WatchedInit {
  key: string;
  pid: number;
}

export class ExitWatcher {
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly inits: () => WatchedInit[],
    private readonly onExit: (key: string) => void,
    private readonly intervalMs = 1000,
  ) {}

  start(): void {
    this.timer = setInterval(() => this.check(), this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  check(): void {
    for (const { key, pid } of this.inits()) {
      if (!alive(pid)) this.onExit(key);
    }
  }
}

/** A PID that is gone or a zombie (dead, not yet reaped by the host's init) counts as exited. */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}
