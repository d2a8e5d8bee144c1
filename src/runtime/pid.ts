// Host processes the runtime started or records (VE inits, lxcfs), checked by PID only.

import { readFileSync } from 'node:fs';

/** Whether a host pid is gone, or a zombie nobody has reaped yet (it no longer runs). */
export function pidGone(pid: number): boolean {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return true;
  }
  const state = stat.lastIndexOf(')') + 2;
  return stat.slice(state, state + 1) === 'Z';
}
