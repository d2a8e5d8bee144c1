// The source agent's part of a migration (ADR 004). On TargetReady it moves the VE:
//
//   live:    pre-copy the disk while the VE runs → Checkpointing (freeze: downtime starts) → CRIU
//            dump → release the disk → Transferring (disk delta + images) → Restoring (guarded:
//            from here the controller can no longer fail it) → target restores → Succeeded.
//   offline: Checkpointing (stop the VE) → Transferring (disk) → Restoring → Succeeded; the
//            target's VE reconciler boots it from the moved disk once the controller rebinds it.
//
// Any failure before the target runs the VE rolls back: the target is told to drop its copy,
// the VE runs here again (restored from the dump when there was one), and the migration becomes
// Failed with the reason — written only after the VE runs again, so the controller's clean-up
// (annotation removal) never wakes the VE reconciler on a VE that is still being restored.
//
// Once the restore was asked for, only the target's answer decides: when that answer is lost
// (the target agent died, the network was cut), the source asks whether the VE runs there —
// again and again while the target cannot be reached, since guessing could run it twice — unless
// the target's VENode is deleted, the operator's word that the node is gone.
//
// A marker file (<stateDir>/migrations/<ns>_<name>.json) outlives an agent crash; recover()
// finishes or rolls back what a previous agent left.

import { createReadStream } from 'node:fs';
import { readFile, readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import type { KubeObject, MigrationPhase, VEMigration, VENode, VirtualEnvironment } from '../api/types.js';
import { errorCode, errorMessage, KvzError } from '../core/errors.js';
import type { EventRecorder } from '../core/events.js';
import type { Logger } from '../core/logger.js';
import type { ResourceClient } from '../core/resource-client.js';
import { migrationScratchDir, removeMigrationDir, type CheckpointResult, type VEConfig, type VERuntime } from '../runtime/index.js';
import { blockDigests, changedBlocks, changedSubBlocks, type HeldBlocks } from '../runtime/disk-sync.js';
import { MigrationChannelClient, readToken, type ImageFile } from './migration-channel.js';
import { BLOCK_SIZE, SUB_BLOCK_SIZE } from './migration-frames.js';
import { advance, isMigrationGone, readMarkers, removeMarker, writeMarker, type SourceMarker } from './migration-status.js';

export interface MigrationSourceOptions {
  nodeName: string;
  migrations: ResourceClient<VEMigration>;
  secrets: ResourceClient<KubeObject>;
  ves: ResourceClient<VirtualEnvironment>;
  /** The cluster's VENodes: a deleted target node ends the wait for its answer (see targetRuns). */
  nodes?: ResourceClient<VENode>;
  runtime: VERuntime;
  stateDir: string;
  /** Builds the VE's config when the host has no record of it (should not happen for a running VE). */
  configFor: (ve: VirtualEnvironment) => VEConfig;
  stopTimeoutMs: number;
  events?: EventRecorder;
  log: Logger;
  /** Called with the VE's key when this agent stops holding it (flow or recovery done). */
  onReleased?: (veKey: string) => void;
}

/** Phases the source may fail a migration from (all but the terminal ones). */
const ACTIVE: readonly MigrationPhase[] = ['Pending', 'Scheduling', 'PreparingTarget', 'TargetReady', 'Checkpointing', 'Transferring', 'Restoring'];

/** What a target says of the VE after a restore was asked for; `node-gone`: its VENode was deleted (the operator's word). */
type TargetAnswer = 'running' | 'absent' | 'node-gone';

/** How long one question to the target may take (it may wait for a restore in progress). */
const STATE_TIMEOUT_MS = 15_000;

class Failure extends KvzError {
  constructor(readonly reason: string, message: string, readonly criuLog?: string) {
    super('Internal', message);
  }
}

interface Flow {
  abort: AbortController;
  /** Set once Restoring is written: the controller's abort no longer applies. */
  committed: boolean;
  done: Promise<void>;
}

export class MigrationSource {
  private readonly flows = new Map<string, Flow>();
  /** VE uids this agent is moving or rolling back (the VE reconciler leaves them alone). */
  private readonly busy = new Set<string>();
  /** Aborted when the agent stops: a flow waiting for the target's answer leaves it to the marker. */
  private readonly stopping = new AbortController();

  constructor(private readonly o: MigrationSourceOptions) {}

  holds(veUid: string): boolean {
    return this.busy.has(veUid);
  }

  /** Starts the move when the migration is TargetReady with this node as source; aborts it when it fails or goes. */
  onMigration(key: string, mig: VEMigration | undefined): void {
    const flow = this.flows.get(key);
    if (flow && !flow.committed && (!mig || mig.metadata.deletionTimestamp || mig.status?.phase === 'Failed')) {
      flow.abort.abort(new Failure('Aborted', mig?.status?.phase === 'Failed' ? `the migration was failed: ${mig.status.message ?? mig.status.reason ?? ''}` : 'the migration was deleted'));
      return;
    }
    if (!mig || flow || mig.status?.sourceNode !== this.o.nodeName || mig.status.phase !== 'TargetReady' || mig.metadata.deletionTimestamp) return;
    const abort = new AbortController();
    const f: Flow = { abort, committed: false, done: Promise.resolve() };
    this.flows.set(key, f);
    f.done = this.run(mig, f)
      .catch((err: unknown) => this.o.log.error({ migration: key, err: errorMessage(err) }, 'migration source flow failed unexpectedly'))
      .finally(() => this.flows.delete(key));
  }

  /** Waits for flows in progress (tests, agent stop). */
  async settle(): Promise<void> {
    await Promise.all([...this.flows.values()].map((f) => f.done));
  }

  async stop(): Promise<void> {
    // A stopping agent does not abort a move mid-way: the marker lets the next agent finish or roll back.
    this.stopping.abort();
    await this.settle();
  }

  private async run(mig: VEMigration, flow: Flow): Promise<void> {
    const { namespace, name } = mig.metadata;
    const key = `${namespace}/${name}`;
    const log = this.o.log.child({ migration: key, role: 'source' });
    const veUid = mig.status!.veUid!;
    const mode = mig.spec.mode ?? 'live';
    const signal = flow.abort.signal;
    const startedAt = mig.status?.startTime ? Date.parse(mig.status.startTime) : Date.now();
    const deadline = startedAt + (mig.spec.timeoutSeconds ?? 600) * 1000;
    const timer = setTimeout(() => flow.abort.abort(new Failure('Timeout', `the migration passed spec.timeoutSeconds (${mig.spec.timeoutSeconds ?? 600}s)`)), Math.max(0, deadline - Date.now()));
    timer.unref();
    this.busy.add(veUid);
    const check = () => {
      if (signal.aborted) throw signal.reason instanceof Error ? signal.reason : new Failure('Aborted', 'the migration was aborted');
    };
    const host = await this.o.runtime.inspect(veUid);
    const ve = await this.o.ves.get(mig.spec.ve, namespace);
    const config = host.config ?? (ve ? this.o.configFor(ve) : undefined);
    const marker: SourceMarker = { namespace, name, migrationUid: mig.metadata.uid, veUid, mode, config };
    let client: MigrationChannelClient | undefined;
    let bytes = 0;
    const timings: Record<string, number> = {};
    try {
      if (!config || !ve) throw new Failure('VENotFound', `VE ${namespace}/${mig.spec.ve} is not on node ${this.o.nodeName}`);
      if (host.state !== 'running' && mode === 'live') throw new Failure('VENotRunning', `VE ${namespace}/${mig.spec.ve} is ${host.state} on node ${this.o.nodeName}; a live migration needs it running (use mode: offline)`);
      await writeMarker(this.o.stateDir, marker);
      const transfer = mig.status?.transfer;
      const token = mig.status?.credentialSecret ? await readToken(this.o.secrets, mig.status.credentialSecret, namespace) : undefined;
      if (!transfer?.address || !transfer.port) throw new Failure('NoTransferEndpoint', 'the target did not publish status.transfer');
      if (!token) throw new Failure('NoCredential', `the migration's credential Secret ${mig.status?.credentialSecret ?? '(none)'} has no ${'token'}`);
      client = new MigrationChannelClient(transfer.address, transfer.port, namespace, name, token, signal);
      const disk = this.o.runtime.migration.diskImagePath(veUid);
      // What the target's image holds, block by block, kept current as we send.
      const remote: HeldBlocks = { digests: (await client.digests()).digests, subs: new Map() };

      if (mode === 'live') {
        const t = Date.now();
        await this.o.runtime.migration.syncDisk?.(veUid, signal);
        bytes += await this.sendDelta(client, disk, remote, await this.changed(disk, remote));
        timings.diskPrecopy = Date.now() - t;
        check();
      }
      await advance(this.o.migrations, namespace, name, ['TargetReady'], 'Checkpointing', { message: mode === 'live' ? 'freezing and dumping the VE' : 'stopping the VE' });
      check();
      // The downtime runs from the freeze (CRIU's, as the VE's action script saw it; else from here).
      let t0 = Date.now();
      let frozenDisk: CheckpointResult['disk'];
      let earlyDigest: Promise<number[]> | undefined;
      if (mode === 'live') {
        marker.imageDir = join(migrationScratchDir(this.o.stateDir), 'outgoing', mig.metadata.uid ?? name, 'images');
        await rm(marker.imageDir, { recursive: true, force: true });
        marker.dumped = true; // before the dump: a crash in it must look for images, not cold-boot blindly
        await writeMarker(this.o.stateDir, marker);
        try {
          const cp = await this.o.runtime.migration.checkpoint(veUid, {
            imageDir: marker.imageDir,
            freezeDisk: true,
            // The last delta's digest starts once the disk is frozen, while CRIU and runc end the dump.
            onDiskFrozen: (extents) => {
              const t = Date.now();
              earlyDigest = this.changed(disk, remote, extents).then((want) => {
                Object.assign(timings, { diskRelease: 0, diskDeltaDigest: Date.now() - t, diskDeltaBlocks: want.length });
                return want;
              });
              earlyDigest.catch(() => undefined); // awaited below, unless the dump failed
            },
            signal,
          });
          frozenDisk = cp.disk;
          timings.checkpoint = cp.ms;
          if (cp.frozenAt !== undefined && cp.frozenAt >= t0) t0 = cp.frozenAt;
          timings.dumpAfterFreeze = Date.now() - t0;
        } catch (err) {
          const d = (err as KvzError).details ?? {};
          const still = (await this.o.runtime.inspect(veUid)).state === 'running';
          if (still) marker.dumped = false; // the dump failed and the VE kept running: nothing to restore
          throw new Failure('CheckpointFailed', `checkpoint of the VE failed: ${errorMessage(err)}`, typeof d.criuLog === 'string' ? d.criuLog : typeof d.log === 'string' ? d.log : undefined);
        }
      } else {
        await this.o.runtime.ensureStopped(veUid, { timeoutMs: this.o.stopTimeoutMs, signal });
      }
      // The phase write, the images and the disk's final delta go side by side: each is short, but
      // in a row they were most of the transfer. A live VE's disk is frozen rather than unmounted
      // (consistent in one command; a rollback just thaws it); the last delta tells the target to
      // mount it at once, and the images arriving tell it to wire the netns, while the rest streams.
      const rt = this.o.runtime.migration;
      const live = mode === 'live';
      const tx = Date.now();
      // The final delta's digest (begun during the dump when its action script froze the disk) goes
      // first: it is work on this agent's one thread; the images are read beside it, and sent with
      // the delta and the phase writes once it is done.
      const digested = earlyDigest ?? (async () => {
        let t = Date.now();
        // Frozen by the dump itself (its last step) when the VE's action script could; else here.
        const extents = frozenDisk ? frozenDisk.extents : live && rt.freezeDisk ? await rt.freezeDisk(veUid, signal) : (await rt.releaseDisk(veUid), undefined);
        timings.diskRelease = Date.now() - t;
        t = Date.now();
        const want = await this.changed(disk, remote, extents);
        timings.diskDeltaDigest = Date.now() - t;
        timings.diskDeltaBlocks = want.length;
        return want;
      })();
      const [, imageBytes, diskBytes] = await allOrFirstError([
        // Both phase writes go while the data streams (the target takes data in Restoring too, and
        // restores only on the request that follows a complete, verified transfer). Restoring is the
        // point of no return for the controller: a conflict means it failed or aborted the migration.
        // A transfer failing after it still rolls back (as a failed restore does); the marker says so.
        digested.then(async () => {
          await advance(this.o.migrations, namespace, name, ['Checkpointing'], 'Transferring', { message: 'sending the disk delta and the checkpoint' });
          await advance(this.o.migrations, namespace, name, ['Transferring'], 'Restoring', { message: mode === 'live' ? 'restoring on the target' : 'handing the VE over to the target' });
        }),
        // Read while the digest runs (the thread pool's work beside this thread's hashing).
        Promise.all([digested, marker.imageDir ? imageFiles(marker.imageDir) : undefined]).then(async ([, files]) => {
          if (!files) return 0;
          const t = Date.now();
          const n = await client!.putCheckpoint(files);
          timings.images = Date.now() - t;
          return n;
        }),
        digested.then(async (want) => {
          const t = Date.now();
          const n = await this.sendDelta(client!, disk, remote, want, live);
          timings.diskDelta = Date.now() - t;
          return n;
        }),
      ]);
      bytes += imageBytes + diskBytes;
      timings.transfer = Date.now() - tx;
      check();
      flow.committed = true;
      clearTimeout(timer);
      const tr = Date.now();
      if (mode === 'live') {
        const committed = new MigrationChannelClient(transfer.address, transfer.port, namespace, name, token);
        try {
          await committed.restore();
        } catch (err) {
          // The answer may be lost while the restore worked: ask before rolling back (one copy only).
          const there = await this.targetRuns(marker, mig.status?.targetNode ?? '', log);
          if (there === undefined) {
            log.warn('the agent stops while the target\'s answer is awaited; the next agent settles the migration from its marker');
            return;
          }
          if (there === 'node-gone') throw new Failure('TargetNodeGone', `node ${mig.status?.targetNode} did not answer after the restore and its VENode was deleted: the VE runs here again`);
          if (there === 'absent') {
            const d = (err as KvzError).details ?? {};
            throw new Failure(typeof d.reason === 'string' ? d.reason : 'RestoreFailed', `restore on node ${mig.status?.targetNode} failed: ${errorMessage(err)}`, typeof d.criuLog === 'string' ? d.criuLog : undefined);
          }
        }
        timings.restore = Date.now() - tr;
      }
      const downtimeMs = Date.now() - t0;
      timings.total = Date.now() - startedAt;
      await advance(this.o.migrations, namespace, name, ['Restoring'], 'Succeeded', {
        message: `the VE runs on node ${mig.status?.targetNode}`,
        status: { timings, downtimeMs, bytesTransferred: bytes, method: mode === 'live' ? 'stop-and-copy' : 'offline' },
      });
      log.info({ downtimeMs, bytes, timings }, 'migration succeeded');
      await this.finish(marker, true);
    } catch (err) {
      const failure = err instanceof Failure ? err : isMigrationGone(err) ? new Failure('Aborted', errorMessage(err)) : new Failure(errorCode(err) === 'Unavailable' ? 'TransferFailed' : 'SourceError', errorMessage(err));
      log.warn({ reason: failure.reason, err: failure.message }, 'migration failed; rolling back on the source');
      await this.rollback(marker, failure, client);
    } finally {
      clearTimeout(timer);
      this.busy.delete(veUid);
      this.o.onReleased?.(`${namespace}/${mig.spec.ve}`);
    }
  }

  /** The blocks whose digest differs from what the target holds. `extents`: the image's data ranges, when known. */
  private async changed(disk: string, remote: HeldBlocks, extents?: Array<[number, number]>): Promise<number[]> {
    return changedBlocks(await blockDigests(disk, BLOCK_SIZE, extents), remote.digests);
  }

  /**
   * Sends blocks `want` (what changed); returns the bytes sent. `final`: the image is at rest and
   * this is its last delta (sent even when empty), after which the target may mount it.
   */
  private async sendDelta(client: MigrationChannelClient, disk: string, remote: HeldBlocks, want: number[], final = false): Promise<number> {
    if (!want.length && !final) return 0;
    return client.putBlocks(changedSubBlocks(disk, want, remote, BLOCK_SIZE, SUB_BLOCK_SIZE), { final, unit: SUB_BLOCK_SIZE });
  }

  /** The VE runs here again; the target drops its copy; the migration says Failed (unless it already ended). */
  private async rollback(marker: SourceMarker, failure: Failure, client?: MigrationChannelClient): Promise<void> {
    const { namespace, name } = marker;
    const key = `${namespace}/${name}`;
    if (client) await client.abortUnsigned().catch(() => undefined);
    else await this.abortTarget(marker).catch(() => undefined);
    await this.runLocally(marker);
    try {
      await advance(this.o.migrations, namespace, name, ACTIVE, 'Failed', { message: failure.message, status: { reason: failure.reason, message: failure.message, ...(failure.criuLog ? { criuLog: failure.criuLog } : {}) } });
    } catch (err) {
      if (!isMigrationGone(err)) throw err;
    }
    const ve = (await this.o.ves.list({ namespace }).catch(() => [])).find((v) => v.metadata.uid === marker.veUid);
    if (ve) this.o.events?.event(ve, 'Warning', 'MigrationRolledBack', `migration ${key} failed (${failure.reason}): ${failure.message}; the VE runs on node ${this.o.nodeName} again`);
    await this.finish(marker);
  }

  /** Brings the VE back up here: from the dump when there was one, else a normal start. */
  private async runLocally(marker: SourceMarker): Promise<void> {
    const host = await this.o.runtime.inspect(marker.veUid);
    if (host.state === 'running') return;
    // A disk frozen after the dump must be writable again before anything runs on it.
    await this.o.runtime.migration.thawDisk?.(marker.veUid);
    const config = marker.config ?? host.config;
    if (!config) throw new KvzError('Internal', `cannot bring VE ${marker.veUid} back: no record of its config`);
    if (marker.dumped && marker.imageDir) {
      try {
        await this.o.runtime.migration.restore(config, marker.imageDir);
        this.o.log.info({ uid: marker.veUid }, 'restored the VE on the source from its checkpoint');
        return;
      } catch (err) {
        // Never lose the VE: a cold boot from its (still local) disk beats no VE at all.
        this.o.log.error({ uid: marker.veUid, err: errorMessage(err) }, 'restoring the VE from its checkpoint failed; booting it afresh');
      }
    }
    await this.o.runtime.ensureRunning(config);
  }

  /**
   * Whether the target runs the VE, asked until it answers (its answer is final: it waits for a
   * restore in progress and starts none after it). Undefined when this agent stops first.
   */
  private async targetRuns(marker: SourceMarker, targetNode: string, log: Logger): Promise<TargetAnswer | undefined> {
    const stop = this.stopping.signal;
    for (let wait = 250, asked = 1; !stop.aborted; wait = Math.min(wait * 2, 5_000), asked++) {
      const there = await this.askTarget(marker, targetNode);
      if (there !== undefined) return there;
      if (asked === 1 || asked % 10 === 0) log.warn({ targetNode, asked }, `node ${targetNode} does not answer whether it runs the VE; asking again (the VE stays down rather than risk two copies; delete VENode ${targetNode} if that node is gone for good)`);
      await delay(wait, undefined, { signal: stop }).catch(() => undefined); // cut short by stop()
    }
    return undefined;
  }

  /** One question to the target: does it run the VE? Undefined when it cannot say. */
  private async askTarget(marker: SourceMarker, targetNode: string): Promise<TargetAnswer | undefined> {
    // Bounded: a request into a cut network would otherwise hang on TCP retries for many minutes.
    const answer = await this.clientFor(marker, AbortSignal.timeout(STATE_TIMEOUT_MS)).then((c) => c?.state()).catch(() => undefined);
    if (answer) return answer.running ? 'running' : 'absent';
    if (this.o.nodes && targetNode && (await this.o.nodes.get(targetNode).catch(() => null)) === undefined) return 'node-gone';
    return undefined;
  }

  private async abortTarget(marker: SourceMarker): Promise<void> {
    const c = await this.clientFor(marker);
    await c?.abortUnsigned();
  }

  private async clientFor(marker: SourceMarker, signal?: AbortSignal): Promise<MigrationChannelClient | undefined> {
    const mig = await this.o.migrations.get(marker.name, marker.namespace);
    const t = mig?.status?.transfer;
    if (!mig || !t?.address || !t.port || !mig.status?.credentialSecret) return undefined;
    const token = await readToken(this.o.secrets, mig.status.credentialSecret, marker.namespace);
    return token ? new MigrationChannelClient(t.address, t.port, marker.namespace, marker.name, token, signal) : undefined;
  }

  /**
   * Ends this node's part. After a success the VE's copy here is inert: its disk is thawed (a
   * frozen filesystem must not be unmounted) and released, as a plain dump would have left it.
   */
  private async finish(marker: SourceMarker, succeeded = false): Promise<void> {
    if (succeeded) {
      const rt = this.o.runtime.migration;
      try {
        await rt.thawDisk?.(marker.veUid);
        if ((await this.o.runtime.inspect(marker.veUid)).state !== 'running') await rt.releaseDisk(marker.veUid);
      } catch (err) {
        this.o.log.warn({ uid: marker.veUid, err: errorMessage(err) }, 'could not release the migrated VE\'s disk on the source; its clean-up will retry');
      }
    }
    if (marker.imageDir) await removeMigrationDir(this.o.stateDir, join(marker.imageDir, '..'));
    await removeMarker(this.o.stateDir, marker.namespace, marker.name);
  }

  /**
   * After an agent restart: a marker means a move was in progress. Succeeded → done; Restoring →
   * ask the target whether it runs the VE (yes: Succeeded, no: roll back; unreachable: try again
   * later, since guessing could run the VE twice); anything else → roll back.
   * Resolves to the number of markers left for a later try.
   */
  async recover(): Promise<number> {
    let left = 0;
    for (const marker of await readMarkers(this.o.stateDir)) {
      const key = `${marker.namespace}/${marker.name}`;
      if (this.flows.has(key)) continue;
      this.busy.add(marker.veUid);
      try {
        let mig = await this.o.migrations.get(marker.name, marker.namespace);
        if (mig && marker.migrationUid && mig.metadata.uid !== marker.migrationUid) mig = undefined;
        const phase = mig?.status?.phase;
        if (phase === 'Succeeded') {
          await this.finish(marker, true);
          continue;
        }
        if (phase === 'Restoring') {
          const there = await this.askTarget(marker, mig?.status?.targetNode ?? '');
          if (there === undefined) {
            left++;
            this.o.log.warn({ migration: key }, 'cannot reach the migration target to learn whether it runs the VE; will ask again');
            continue;
          }
          if (there === 'running') {
            await advance(this.o.migrations, marker.namespace, marker.name, ['Restoring'], 'Succeeded', { message: `the VE runs on node ${mig?.status?.targetNode} (completed after the source agent restarted)`, status: { method: marker.mode === 'live' ? 'stop-and-copy' : 'offline' } });
            await this.finish(marker, true);
            continue;
          }
        }
        await this.rollback(marker, new Failure('SourceAgentRestarted', `the source agent on node ${this.o.nodeName} restarted during the migration (phase ${phase ?? 'unknown'}); rolled back`));
      } catch (err) {
        left++;
        this.o.log.warn({ migration: key, err: errorMessage(err) }, 'could not recover an interrupted migration; will try again');
      } finally {
        this.busy.delete(marker.veUid);
      }
    }
    return left;
  }
}

/** Waits for all; the first rejection (in order) wins, but only after none is left running. */
async function allOrFirstError<T extends readonly unknown[]>(ps: { [K in keyof T]: Promise<T[K]> }): Promise<T> {
  const settled = await Promise.allSettled(ps);
  const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
  return settled.map((r) => (r as PromiseFulfilledResult<unknown>).value) as unknown as T;
}

/**
 * The dump's files, looked at side by side; small ones (most of a dump) are read into memory at
 * once, so sending them costs no per-file open/read/close round in the downtime. Large ones stream.
 */
async function imageFiles(dir: string): Promise<ImageFile[]> {
  return Promise.all((await readdir(dir)).sort().map(async (name): Promise<ImageFile> => {
    const p = join(dir, name);
    const st = await stat(p);
    if (!st.isFile()) throw new KvzError('Internal', `unexpected non-file ${p} in the checkpoint images`);
    // 1 MiB reads: a 256 MiB pages image in 64 KiB ones was 4,096 thread-pool round trips in the downtime.
    if (st.size > SMALL_IMAGE_FILE) return { name, size: st.size, open: () => createReadStream(p, { highWaterMark: 1 << 20 }) };
    const data = await readFile(p);
    return { name, size: data.length, open: async function* () { yield data; } };
  }));
}

/** Image files up to this size are read whole before sending. */
const SMALL_IMAGE_FILE = 1 << 20;
