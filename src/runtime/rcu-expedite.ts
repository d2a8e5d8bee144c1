// Expedited RCU grace periods while a VE stands frozen (ADR 004, "RCU grace periods").
//
// Much of what a dump and a restore wait for is the kernel's RCU: a filesystem freeze takes three
// percpu write locks, each waiting out a grace period (fsfreeze of the VE's disk: 40-75 ms on this
// kernel, ~3.5 ms expedited), and mount, umount and namespace work in CRIU's and runc's restore do
// the same (`runc restore` ~120 ms → ~55 ms). The kernel's /sys/kernel/rcu_expedited makes every
// grace period an expedited one (IPIs to the CPUs instead of waiting for them to pass a quiescent
// state), node-wide. kubevz turns it on only while a VE is frozen, and puts back what it found when
// the last holder — of any kubevz process on the node — is done: holders are files named by pid
// under one directory per boot (where /run is on disk, a reboot must not leave holders whose pids
// now name other processes), changed under a lock file; a holder whose process died does not count,
// and an agent's start puts back what one that died holding it left (settle).
// A knob already on (the operator's) is never touched. Nothing here may fail a dump or restore:
// when the knob cannot be used, the work just runs at the normal speed.

import { readFileSync } from 'node:fs';
import { mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../core/logger.js';
import { pidGone } from './pid.js';

export const RCU_EXPEDITED_KNOB = '/sys/kernel/rcu_expedited';

/** How long a holder waits for the lock before it runs without expediting. */
const LOCK_WAIT_MS = 500;

export class ExpeditedRcu {
  private seq = 0;
  /** Whether this process made this boot's directory and removed earlier boots'. */
  private swept = false;
  /** This boot's directory of holders. */
  private readonly dir: string;

  /** `root`: shared by every kubevz process of the node; `bootId`: this boot's (the kernel's). */
  constructor(private readonly log: Logger, private readonly root = '/run/kubevz/rcu-expedited', private readonly knob = RCU_EXPEDITED_KNOB, bootId = hostBootId()) {
    this.dir = join(root, bootId);
  }

  /** Runs `fn` with grace periods expedited node-wide. */
  async during<T>(fn: () => Promise<T>): Promise<T> {
    const holder = await this.enter().catch((err: Error) => {
      this.log.debug({ err: err.message }, 'running without expedited RCU');
      return undefined;
    });
    try {
      return await fn();
    } finally {
      if (holder) await this.leave(holder).catch(this.putBackFailed);
    }
  }

  /**
   * Puts back the node's value when a kubevz process died holding it and no one holds it now (an
   * agent's start): otherwise it would stay on until the next dump or restore on the node.
   */
  async settle(): Promise<void> {
    await this.sweep().then(() => this.locked(() => this.putBackIfLast())).catch(this.putBackFailed);
  }

  private readonly putBackFailed = (err: Error) => this.log.warn({ err: err.message, knob: this.knob }, 'could not put back the node\'s RCU setting');

  private async enter(): Promise<string | undefined> {
    await this.sweep();
    return this.locked(async () => {
      const on = (await readFile(this.knob, 'utf8')).trim() !== '0';
      const original = join(this.dir, ORIGINAL);
      const ours = await readFile(original, 'utf8').then(() => true, () => false);
      // On without us: the operator's setting, left alone.
      if (on && !ours && !(await this.liveHolders()).length) return undefined;
      const holder = join(this.dir, `${process.pid}.${++this.seq}`);
      await writeFile(holder, '');
      if (!on) {
        if (!ours) await writeFile(original, '0\n');
        await writeFile(this.knob, '1');
      }
      return holder;
    });
  }

  private async leave(holder: string): Promise<void> {
    await this.locked(async () => {
      await rm(holder, { force: true });
      await this.putBackIfLast();
    });
  }

  /** Under the lock: with no live holder left, the saved value goes back to the knob. */
  private async putBackIfLast(): Promise<void> {
    if ((await this.liveHolders()).length) return;
    const original = join(this.dir, ORIGINAL);
    const value = await readFile(original, 'utf8').catch(() => undefined);
    if (value === undefined) return;
    await writeFile(this.knob, value.trim());
    await rm(original, { force: true });
  }

  /** Makes this boot's directory and removes earlier boots' (their holders are all gone, and the kernel started with its own value); once per process. */
  private async sweep(): Promise<void> {
    if (this.swept) return;
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    for (const name of await readdir(this.root)) if (join(this.root, name) !== this.dir) await rm(join(this.root, name), { recursive: true, force: true });
    this.swept = true;
  }

  /** Holders whose process still runs; the others' files go. */
  private async liveHolders(): Promise<string[]> {
    const live: string[] = [];
    for (const name of await readdir(this.dir)) {
      const m = /^(\d+)\.\d+$/.exec(name);
      if (!m) continue;
      if (pidGone(Number(m[1]))) await rm(join(this.dir, name), { force: true });
      else live.push(name);
    }
    return live;
  }

  /** Runs `fn` holding the directory's lock file (its content: the holder's pid; a dead holder's lock is broken). */
  private async locked<T>(fn: () => Promise<T>): Promise<T | undefined> {
    const lock = join(this.dir, LOCK);
    const end = Date.now() + LOCK_WAIT_MS;
    for (;;) {
      try {
        await writeFile(lock, String(process.pid), { flag: 'wx' });
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        const owner = Number(await readFile(lock, 'utf8').catch(() => ''));
        if (owner > 0 && owner !== process.pid && pidGone(owner)) await rm(lock, { force: true });
        else if (Date.now() > end) throw new Error(`${lock} stays taken (pid ${owner || 'unknown'})`);
        else await new Promise((r) => setTimeout(r, 1));
      }
    }
    try {
      return await fn();
    } finally {
      await rm(lock, { force: true });
    }
  }
}

const ORIGINAL = 'original';
const LOCK = 'lock';

function hostBootId(): string {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return 'unknown-boot';
  }
}
