// Per-VE host id ranges for user namespaces: the VE's ids 0..65535 map to a block of host ids
// that no other VE (of this agent, or any live user namespace on the host) uses. The range is
// recorded in the VE's state dir (ves/<uid>/userns.json), so it survives agent restarts and is
// freed with the VE's directory; a range carried in the config (migration) is kept if free.

import { createHash } from 'node:crypto';
import { readdir, readFile, readlink, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { KvzError } from '../core/errors.js';
import { containerId } from './names.js';
import type { IdRange } from './types.js';

/** Ids per VE: a full 16-bit uid space, what distributions expect (nobody = 65534). */
export const ID_RANGE_SIZE = 65_536;
/** Host ids below this stay free for login users and their /etc/subuid ranges. */
export const FIRST_HOST_ID = 1 << 20;
const LAST_HOST_ID = 2 ** 32 - 2; // (uid_t)-1 is invalid
const SLOTS = Math.floor((LAST_HOST_ID - FIRST_HOST_ID) / ID_RANGE_SIZE);
const RECORD = 'userns.json';

export function rangesOverlap(a: IdRange, b: IdRange): boolean {
  return a.hostId < b.hostId + b.size && b.hostId < a.hostId + a.size;
}

/** Non-identity ranges of a /proc/PID/uid_map text as seen from the host ("inside outside count"). */
export function parseIdMap(text: string): IdRange[] {
  const out: IdRange[] = [];
  for (const line of text.split('\n')) {
    const [inside, outside, count] = line.trim().split(/\s+/).map(Number);
    if (inside === undefined || outside === undefined || count === undefined || Number.isNaN(count)) continue;
    if (inside === 0 && outside === 0 && count >= 4294967295) continue; // the initial namespace
    out.push({ hostId: outside, size: count });
  }
  return out;
}

/**
 * Host ranges of every live user namespace (any tool, any agent): /proc/PID/uid_map. The user
 * namespace of the container `exceptContainer` (any process of it found by its cgroup, and every
 * process in that namespace, such as a `runc exec` not yet in the cgroup) is left out: the same
 * VE running under another agent of this host is the source of its own incoming migration, whose
 * range it keeps.
 */
export async function liveHostRanges(procRoot = '/proc', exceptContainer?: string): Promise<IdRange[]> {
  const pids = (await readdir(procRoot).catch(() => [] as string[])).filter((d) => /^\d+$/.test(d));
  const procs = (
    await Promise.all(
      pids.map(async (pid) => {
        const dir = join(procRoot, pid);
        const ranges = parseIdMap(await readFile(join(dir, 'uid_map'), 'utf8').catch(() => ''));
        // A zombie holds no namespace anyone can use: a VE's init killed by a dump lingers until
        // the host's PID 1 reaps it, and its range must be free for the VE's restore.
        if (!ranges.length || (await isZombie(dir))) return undefined;
        const userns = await readlink(join(dir, 'ns', 'user')).catch(() => '');
        const own = exceptContainer !== undefined && (await inContainer(dir, exceptContainer));
        const comm = (await readFile(join(dir, 'comm'), 'utf8').catch(() => '')).trim();
        return { ranges, userns, own, pid, comm };
      }),
    )
  ).filter((p) => p !== undefined);
  const ownNs = new Set(procs.filter((p) => p.own && p.userns).map((p) => p.userns));
  const seen = new Set<string>();
  const out: (IdRange & { heldBy?: string })[] = [];
  for (const p of procs) {
    if (p.own || ownNs.has(p.userns)) continue;
    for (const r of p.ranges) {
      const key = `${r.hostId}:${r.size}`;
      if (!seen.has(key)) {
        seen.add(key);
        out.push({ ...r, heldBy: `pid ${p.pid} (${p.comm})` });
      }
    }
  }
  return out;
}

/** Whether the process's cgroup (any hierarchy) is the container's own: …/<id>. */
async function inContainer(procDir: string, id: string): Promise<boolean> {
  const text = await readFile(join(procDir, 'cgroup'), 'utf8').catch(() => '');
  return text.split('\n').some((l) => l.endsWith(`/${id}`));
}

async function isZombie(procDir: string): Promise<boolean> {
  const stat = await readFile(join(procDir, 'stat'), 'utf8').catch(() => '');
  return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) === 'Z';
}

/** The VE's first slot to try: a hash of its uid, so agents sharing a host rarely probe the same slots. */
export function preferredSlot(uid: string): number {
  return createHash('sha256').update(`kubevz-userns:${uid}`).digest().readUInt32BE(0) % SLOTS;
}

export function slotRange(slot: number): IdRange {
  return { hostId: FIRST_HOST_ID + slot * ID_RANGE_SIZE, size: ID_RANGE_SIZE };
}

/** First free range from the VE's preferred slot on (pure: the allocator's decision). */
export function pickRange(uid: string, taken: IdRange[]): IdRange {
  const start = preferredSlot(uid);
  for (let i = 0; i < SLOTS; i++) {
    const r = slotRange((start + i) % SLOTS);
    if (!taken.some((t) => rangesOverlap(t, r))) return r;
  }
  throw new KvzError('Unavailable', 'no free host id range for a user namespace is left on this node');
}

export function validRange(r: IdRange): boolean {
  return Number.isInteger(r.hostId) && Number.isInteger(r.size) && r.hostId > 0 && r.size > 0 && r.hostId + r.size - 1 <= LAST_HOST_ID;
}

export interface UsernsAllocatorOptions {
  /** ves/ of the agent's state dir: one directory per VE uid. */
  vesDir: string;
  /** Live user-namespace ranges on the host but the VE's own (default: /proc/PID/uid_map); injectable for tests. */
  liveRanges?: (uid: string) => Promise<IdRange[]>;
}

/**
 * Allocates and records ranges. Allocation is serialised inside the process (one agent per
 * state dir); other agents on the host are seen through their VEs' live uid_maps.
 */
export class UsernsAllocator {
  private tail: Promise<unknown> = Promise.resolve();
  constructor(private readonly opts: UsernsAllocatorOptions) {}

  /** The VE's recorded range, if it has one. */
  async recorded(uid: string): Promise<IdRange | undefined> {
    try {
      const r = JSON.parse(await readFile(join(this.opts.vesDir, uid, RECORD), 'utf8')) as IdRange;
      return validRange(r) ? r : undefined;
    } catch {
      return undefined;
    }
  }

  /**
   * The VE's range: its record; else `want` (a kept range) if free; else a new free one. The VE's
   * directory must exist. Returns whether it was newly allocated.
   */
  ensure(uid: string, want?: IdRange): Promise<{ range: IdRange; allocated: boolean }> {
    const next = this.tail.catch(() => undefined).then(() => this.doEnsure(uid, want));
    this.tail = next;
    return next;
  }

  private async doEnsure(uid: string, want?: IdRange): Promise<{ range: IdRange; allocated: boolean }> {
    const have = await this.recorded(uid);
    if (have) {
      if (want && (want.hostId !== have.hostId || want.size !== have.size)) {
        throw new KvzError('Conflict', `VE ${uid} has host id range ${fmt(have)} on this node, not the asked ${fmt(want)}; ids are fixed for the VE's lifetime (its files are owned by them)`);
      }
      return { range: have, allocated: false };
    }
    const recorded = (await this.recordedOthers(uid)).map((o) => o.range);
    const live = () => (this.opts.liveRanges ?? ((u: string) => liveHostRanges('/proc', containerId(u))))(uid);
    let taken = [...recorded, ...(await live())];
    let range: IdRange;
    if (want) {
      if (!validRange(want)) throw new KvzError('Invalid', `host id range ${fmt(want)} is not a valid range`);
      // A process seen in the range may be a passing one (a helper's throw-away user namespace, a
      // process exiting): a kept range is looked at again a few times before it is refused.
      for (let i = 0; i < 5 && !recorded.some((t) => rangesOverlap(t, want)) && taken.some((t) => rangesOverlap(t, want)); i++) {
        await new Promise((r) => setTimeout(r, 100));
        taken = [...recorded, ...(await live())];
      }
      const clash = taken.find((t) => rangesOverlap(t, want));
      if (clash) {
        const by = (clash as { heldBy?: string }).heldBy;
        throw new KvzError('Conflict', `host id range ${fmt(want)} asked for VE ${uid} overlaps ${fmt(clash)}, already in use on this node${by ? ` by ${by}` : ''}; free it or drop spec.security.uidRange to get a new range (the VE's files then need their owners shifted)`);
      }
      range = want;
    } else {
      range = pickRange(uid, taken);
    }
    const file = join(this.opts.vesDir, uid, RECORD);
    await writeFile(`${file}.tmp`, `${JSON.stringify(range)}\n`);
    await rename(`${file}.tmp`, file);
    return { range, allocated: true };
  }

  /** Ranges recorded by the other VEs in this state dir (running or not). */
  async recordedOthers(uid?: string): Promise<{ uid: string; range: IdRange }[]> {
    const dirs = await readdir(this.opts.vesDir).catch(() => [] as string[]);
    const out: { uid: string; range: IdRange }[] = [];
    for (const d of dirs) {
      if (d === uid) continue;
      const r = await this.recorded(d);
      if (r) out.push({ uid: d, range: r });
    }
    return out;
  }
}

export function fmt(r: IdRange): string {
  return `${r.hostId}-${r.hostId + r.size - 1}`;
}
