// The one loop that turns reconcile outcomes into queue actions and log lines: success
// forgets the backoff (and honours requeueAfterMs), an error is logged once and retried with
// backoff, a TerminalError is logged and not retried.

import { errorMessage, isTerminal } from './errors.js';
import type { Logger } from './logger.js';
import type { Reconciler } from './reconcile.js';
import { WorkQueue } from './work-queue.js';

export interface ControllerLoopOptions {
  reconciler: Reconciler;
  queue?: WorkQueue;
  workers?: number;
  log: Logger;
}

export class ControllerLoop {
  readonly queue: WorkQueue;
  private readonly abort = new AbortController();
  private running: Promise<void>[] = [];

  constructor(private readonly opts: ControllerLoopOptions) {
    this.queue = opts.queue ?? new WorkQueue();
  }

  start(): void {
    const n = this.opts.workers ?? 2;
    for (let i = 0; i < n; i++) this.running.push(this.worker());
  }

  async stop(): Promise<void> {
    this.abort.abort();
    this.queue.shutdown();
    await Promise.allSettled(this.running);
  }

  private async worker(): Promise<void> {
    const { reconciler, log } = this.opts;
    for (;;) {
      const key = await this.queue.get();
      if (key === undefined) return;
      try {
        const res = await reconciler.reconcile(key, this.abort.signal);
        this.queue.forget(key);
        if (res?.requeueAfterMs !== undefined) this.queue.addAfter(key, res.requeueAfterMs);
      } catch (err) {
        if (this.abort.signal.aborted) {
          // shutting down: the next start reconciles again from the level
        } else if (isTerminal(err)) {
          log.error({ controller: reconciler.name, key, err: errorMessage(err) }, 'reconcile failed; not retrying until the object changes');
          this.queue.forget(key);
        } else {
          const delay = this.queue.addRateLimited(key);
          log.warn({ controller: reconciler.name, key, err: errorMessage(err), retryInMs: delay }, 'reconcile failed; will retry');
        }
      } finally {
        this.queue.done(key);
      }
    }
  }
}
