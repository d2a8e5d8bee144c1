// Undo stack for multi-step host operations (after Incus' shared/revert): each step that
// changed the host pushes its undo; on failure `fail()` runs them newest first. On success
// call `success()` so nothing is undone.

import type { Logger } from './logger.js';

type Undo = () => Promise<void> | void;

export class Revert {
  private undos: { what: string; undo: Undo }[] = [];
  private done = false;

  constructor(private readonly log?: Logger) {}

  add(what: string, undo: Undo): void {
    this.undos.push({ what, undo });
  }

  success(): void {
    this.done = true;
    this.undos = [];
  }

  /** Runs every undo in reverse order; an undo that fails is logged and the rest still run. */
  async fail(): Promise<void> {
    if (this.done) return;
    this.done = true;
    const undos = this.undos.reverse();
    this.undos = [];
    for (const { what, undo } of undos) {
      try {
        await undo();
      } catch (err) {
        this.log?.warn({ err, step: what }, 'revert step failed');
      }
    }
  }

  /** Runs `fn` with a fresh Revert; reverts if it throws. */
  static async run<T>(log: Logger | undefined, fn: (r: Revert) => Promise<T>): Promise<T> {
    const r = new Revert(log);
    try {
      const out = await fn(r);
      r.success();
      return out;
    } catch (err) {
      await r.fail();
      throw err;
    }
  }
}
