// What the agent does when a VE that should run is not running: restart a crashed init with
// back-off (spec.restartPolicy), and after a host reboot start only the VEs with spec.onBoot
// (OpenVZ's ONBOOT). The decisions are pure functions of the VE, the host state and a clock;
// the back-off counters live in memory (an agent restart starts them afresh, which only makes
// the next restart come sooner).
//
// Semantics, written down:
// * A crash is an init that exited on its own: runc still has the container, state `stopped`.
//   A VE the agent stopped has no container (`absent`), so it is never mistaken for a crash.
// * Always and OnFailure restart with back-off 1s, 2s, 4s, … capped at 5 min; a VE that ran
//   10 min before it died starts again at 1s. The init's exit status is not observable (runc
//   runs detached and the host's init reaps it), so OnFailure cannot tell a clean `poweroff`
//   inside the VE from a crash and behaves like Always.
// * While a crashed VE waits out its back-off it is phase Pending, Ready=False with reason
//   CrashLoopBackOff. The first exit is restarted after 1s and is reported as converging
//   (Reconciling=True): a single `reboot` inside the VE is no failure. From the second exit in a
//   row (the init died again less than 10 min after the agent restarted it) the VE is in a crash
//   loop and reported as failing — Stalled=True, reason CrashLoopBackOff, what kstatus calls
//   Failed and Argo CD Degraded, as both do for a Pod in CrashLoopBackOff — with a message that
//   gives the count and when the next restart is due. The agent keeps restarting it; once the
//   restarted init runs, the status is Running/Ready again (like a Pod between crashes).
// * Never leaves the VE Stopped (Ready=False, reason Exited) until its spec changes
//   (metadata.generation moves past the one the Exited condition recorded).
// * After a host reboot (the boot id differs from the one recorded in the state dir), a VE
//   that existed on this node with onBoot: false is not started: Stopped with reason
//   NotStartedAfterReboot until its spec changes. onBoot: true (the default) VEs start as usual.
//   Without a reboot (an agent restart), running VEs are adopted and nothing is held.

import { readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Condition, VEPhase } from '../api/types.js';

export interface Clock {
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };

export interface BackoffSchedule {
  initialMs: number;
  maxMs: number;
  /** A VE that ran this long before its init died starts the schedule again. */
  resetAfterMs: number;
}

export const DEFAULT_BACKOFF: BackoffSchedule = { initialMs: 1_000, maxMs: 300_000, resetAfterMs: 600_000 };

/** From this many exits in a row a VE is in a crash loop: Stalled, not merely restarting. */
export const CRASH_LOOP_AFTER_FAILURES = 2;

interface BackoffEntry {
  failures: number;
  /** Init PID of the last start the agent saw, and when. */
  pid?: number;
  startedAt?: number;
  /** Whether the exit of that start has been counted. */
  counted: boolean;
  restartAt: number;
}

/** Per-VE crash back-off: one failure counted per exited init, delays doubling up to the cap. */
export class RestartBackoff {
  private readonly entries = new Map<string, BackoffEntry>();

  constructor(private readonly clock: Clock = systemClock, readonly schedule: BackoffSchedule = DEFAULT_BACKOFF) {}

  /** The delay after the n-th failure in a row (n ≥ 1). */
  delayFor(failures: number): number {
    return Math.min(this.schedule.maxMs, this.schedule.initialMs * 2 ** Math.max(0, failures - 1));
  }

  /** The VE runs with this init PID; a new PID is a new start. */
  running(key: string, pid: number | undefined): void {
    const e = this.entries.get(key) ?? { failures: 0, counted: true, restartAt: 0 };
    if (pid === undefined || e.pid !== pid) {
      e.pid = pid;
      e.startedAt = this.clock.now();
      e.counted = false;
    }
    this.entries.set(key, e);
  }

  /**
   * The VE's init has exited. Counts the failure once per start and returns how long to wait
   * before starting it again (0 = now) and which restart that will be.
   */
  exited(key: string): { waitMs: number; failures: number; counted: boolean; restartAt: number } {
    const now = this.clock.now();
    const e = this.entries.get(key) ?? { failures: 0, counted: false, restartAt: 0 };
    let counted = false;
    if (!e.counted) {
      if (e.startedAt !== undefined && now - e.startedAt >= this.schedule.resetAfterMs) e.failures = 0;
      e.failures += 1;
      e.counted = true;
      e.restartAt = now + this.delayFor(e.failures);
      counted = true;
    }
    this.entries.set(key, e);
    return { waitMs: Math.max(0, e.restartAt - now), failures: e.failures, counted, restartAt: e.restartAt };
  }

  forget(key: string): void {
    this.entries.delete(key);
  }
}

/** Where the agent records the boot id it last ran under. */
export const BOOT_ID_FILE = 'boot_id';
export const HOST_BOOT_ID = '/proc/sys/kernel/random/boot_id';

/**
 * Compares the host's boot id with the one recorded in the state dir and records the current
 * one. No record (a fresh state dir) is not a reboot.
 */
export async function detectReboot(o: { stateDir: string; bootIdPath?: string }): Promise<{ rebooted: boolean; bootId: string; previous?: string }> {
  const bootId = (await readFile(o.bootIdPath ?? HOST_BOOT_ID, 'utf8')).trim();
  const file = join(o.stateDir, BOOT_ID_FILE);
  const previous = (await readFile(file, 'utf8').catch(() => '')).trim() || undefined;
  if (previous !== bootId) {
    await writeFile(`${file}.tmp`, `${bootId}\n`);
    await rename(`${file}.tmp`, file);
  }
  return { rebooted: previous !== undefined && previous !== bootId, bootId, ...(previous ? { previous } : {}) };
}

export type RestartPolicy = 'Always' | 'OnFailure' | 'Never';

export interface StartInput {
  key: string;
  generation: number;
  /** The VE's Ready condition as last written. */
  ready?: Condition;
  /** status.phase as last written. */
  phase?: VEPhase;
  /** The runc container's state: 'stopped' = init exited on its own. */
  hostState: string;
  /** Whether the node has a record of this VE (it existed here before). */
  known: boolean;
  onBoot: boolean;
  restartPolicy: RestartPolicy;
  /** The host rebooted since the agent last ran, and this is the agent's first look at the VE. */
  firstLookAfterReboot: boolean;
}

export interface Hold {
  phase: VEPhase;
  reason: 'CrashLoopBackOff' | 'Exited' | 'NotStartedAfterReboot';
  message: string;
  /** Look again after this long (back-off); undefined = wait for a spec change. */
  requeueAfterMs?: number;
  /** A failure counted just now (for one Event per crash). */
  newCrash?: { failures: number };
  /** The VE is failing (a crash loop), not converging: reported as Stalled=True. */
  stalled?: boolean;
}

function exited(touchedMsg: string): Hold {
  return { phase: 'Stopped', reason: 'Exited', message: `the VE's init exited and spec.restartPolicy is Never; ${touchedMsg}` };
}

function heldAt(ready: Condition | undefined, reason: string, generation: number): boolean {
  return ready?.reason === reason && (ready.observedGeneration ?? 0) >= generation;
}

/** Whether a VE that should run but does not may be started now; a Hold says why not. */
export function decideStart(i: StartInput, backoff: RestartBackoff): Hold | undefined {
  if (i.hostState === 'running' || i.hostState === 'paused') return undefined;
  const touchedMsg = 'change its spec (e.g. `kvz start`) to start it';
  if (heldAt(i.ready, 'NotStartedAfterReboot', i.generation)) {
    return { phase: 'Stopped', reason: 'NotStartedAfterReboot', message: `the host rebooted and spec.onBoot is false; ${touchedMsg}` };
  }
  if (i.firstLookAfterReboot && !i.onBoot && (i.known || i.phase === 'Running')) {
    return { phase: 'Stopped', reason: 'NotStartedAfterReboot', message: `the host rebooted and spec.onBoot is false; ${touchedMsg}` };
  }
  // A container left `stopped` by the reboot itself is no crash: start at once.
  if (i.hostState !== 'stopped' || i.firstLookAfterReboot) return undefined;
  const reason = i.ready?.reason;
  if (i.restartPolicy === 'Never') {
    // Exited recorded at an older generation = the spec was touched since: start again.
    if (reason === 'Exited') return (i.ready?.observedGeneration ?? 0) < i.generation ? undefined : exited(touchedMsg);
    return i.phase === 'Running' ? exited(touchedMsg) : undefined;
  }
  // Only a VE that was running (or already backing off) crashed; one the agent stopped did not.
  if (i.phase !== 'Running' && reason !== 'CrashLoopBackOff') return undefined;
  const b = backoff.exited(i.key);
  if (b.waitMs <= 0) return undefined;
  return {
    phase: 'Pending',
    reason: 'CrashLoopBackOff',
    message: crashMessage(b.failures, b.restartAt, backoff.delayFor(b.failures)),
    requeueAfterMs: b.waitMs,
    ...(b.counted ? { newCrash: { failures: b.failures } } : {}),
    ...(b.failures >= CRASH_LOOP_AFTER_FAILURES ? { stalled: true } : {}),
  };
}

/**
 * Says how often the init died and when the next restart is due. The due time is absolute (and
 * the delay is the schedule's, not the time left), so every look during one back-off gives the
 * same text and the status is not rewritten for nothing.
 */
function crashMessage(failures: number, restartAtMs: number, delayMs: number): string {
  const times = (n: number) => `${n} time${n === 1 ? '' : 's'}`;
  const due = new Date(Math.ceil(restartAtMs / 1000) * 1000).toISOString().replace('.000Z', 'Z');
  const restarted = failures > 1 ? `, restarted ${times(failures - 1)}` : '';
  return `the VE's init exited ${times(failures)} in a row${restarted}; next restart at ${due} (back-off ${Math.ceil(delayMs / 1000)}s)`;
}
