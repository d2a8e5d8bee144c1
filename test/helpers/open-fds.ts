// What this process holds open, for tests of code that keeps files open on purpose.

import { readdirSync, readlinkSync } from 'node:fs';

/** Paths this process has descriptors open on, under directory `dir`. */
export function heldUnder(dir: string): string[] {
  return readdirSync('/proc/self/fd')
    .map((fd) => {
      try {
        return readlinkSync(`/proc/self/fd/${fd}`);
      } catch {
        return '';
      }
    })
    .filter((l) => l.startsWith(`${dir}/`));
}
