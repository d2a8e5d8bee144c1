// The migration side of the host runtime (VEMigrationRuntime): CRIU dump and restore of a VE
// through runc, the VE's disk image as a file to copy, and an incoming VE's place on a target
// node. Lifecycle steps (root fs, network, bundle) are the HostRuntime's own bring-up, so a
// restore sets up exactly what a boot does and undoes it the same way on failure.

import { existsSync } from 'node:fs';
import { mkdir, readdir, rm, writeFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { KvzError } from '../core/errors.js';
import {
  announceAddresses,
  checkpointError,
  criuErrorLine,
  criuLogTail,
  dirBytes,
  prepareImageDir,
  shareImagesWithVE,
  checkpointableBundle,
  NetnsHandoff,
  NetworkUnlock,
  DumpMarks,
  CgroupfsLayout,
  CarriedTmpfs,
  thawVE,
} from './checkpoint.js';
import { CNI_IFNAME } from './cni.js';
import { parseFilefrag } from './disk-sync.js';
import { run } from './command.js';
import { DEFAULT_DISK_BYTES, createEmptyImage, diskPaths, isImageMounted, readDiskRecord, recoverDiskRecord, unmountImage } from './disk-image.js';
import { detachLoops } from './loop.js';
import { containerId, macAddress } from './names.js';
import { netnsPath } from './netns.js';
import { restoreNetnsState, saveNetnsState } from './netns-state.js';
import { rootfsPaths, unmountRootfs } from './rootfs.js';
import { stopwatch, type StepTimings } from './stopwatch.js';
import type { HostRuntime } from './runtime.js';
import type { CheckpointOptions, CheckpointResult, VEConfig, VEMigrationRuntime } from './types.js';

export class VEMigration implements VEMigrationRuntime {
  constructor(private readonly rt: HostRuntime) {}

  checkpoint(uid: string, opts: CheckpointOptions): Promise<CheckpointResult> {
    return this.rt.withVE(uid, async () => {
      const st = await this.rt.runc.state(containerId(uid), opts.signal);
      if (st?.status !== 'running') {
        throw new KvzError('Conflict', `VE ${uid} is not running (runc state ${st?.status ?? 'absent'}); only a running VE can be checkpointed`);
      }
      return this.dump(uid, opts, uid, st.pid);
    });
  }

  /** The dump itself; the caller holds the VE's lock and knows it runs (its init: `pid`). */
  async dump(uid: string, opts: CheckpointOptions, name = uid, pid?: number): Promise<CheckpointResult> {
    const id = containerId(uid);
    await checkpointableBundle(join(this.rt.bundleDir(uid), 'config.json'), name);
    await prepareImageDir(opts.imageDir);
    if (pid) await CgroupfsLayout.save(pid, opts.imageDir);
    const tmpfs = await CarriedTmpfs.read(this.rt.veDir(uid));
    await tmpfs.save(opts.imageDir);
    const work = this.rt.criuWorkDir(uid, 'dump');
    await rm(work, { recursive: true, force: true });
    await mkdir(work, { recursive: true, mode: 0o700 });
    // The VE's own firewall, routes and addresses: its netns is not in the images.
    const names = await this.rt.netNames(uid);
    if (names) await saveNetnsState(netnsPath(names.netns), opts.imageDir, await this.rt.cniResult(uid), opts.signal);
    // Off the LAN at the freeze: CRIU closes the dumped sockets silently, but a client's packet
    // arriving after the dump would meet no socket and get a RST, ending the connection that the
    // restore is about to bring back. Dropped packets are just retransmitted. The action script
    // takes the link down when CRIU has frozen the VE (DumpMarks); a VE booted before it could is
    // taken off here, before CRIU starts. A VE left running goes off too (the link is CRIU's
    // network lock, see criuConfigText) and comes back after the dump.
    const marks = new DumpMarks(this.rt.handoffDir(uid), this.rt.veDir(uid));
    const link = await this.rt.markHostLinkDown(uid);
    const freeze = opts.freezeDisk && !opts.leaveRunning ? diskPaths(this.rt.veDir(uid)) : undefined;
    if (tmpfs.mounts.length && !pid) throw new KvzError('Internal', `the dump of VE ${name} needs its init's pid to archive its tmpfs mounts`);
    // The script freezes the VE itself unless it is to run on (CRIU would leave it frozen).
    const freezer = opts.leaveRunning ? undefined : this.rt.freezer(uid);
    const armed = await marks.arm({ link, disk: freeze, tmpfs: tmpfs.mounts.length ? tmpfs.request(pid!, opts.imageDir) : undefined, freezer });
    if (!armed && link) await this.rt.setHostLink(uid, false, opts.signal);
    const t0 = performance.now();
    let frozenAt: number | undefined;
    let disk: CheckpointResult['disk'];
    const early = freeze && opts.onDiskFrozen ? marks.watchDisk((filefrag) => opts.onDiskFrozen!(parseFilefrag(filefrag))) : undefined;
    try {
      await this.rt.whileFrozen(() => this.rt.runc.checkpoint(id, { imagePath: opts.imageDir, workPath: work, leaveRunning: opts.leaveRunning, signal: opts.signal })).finally(() => early?.stop());
      frozenAt = await marks.finish();
      const frozen = await marks.frozenDisk();
      if (frozen) disk = { extents: frozen.filefrag !== undefined ? parseFilefrag(frozen.filefrag) : undefined };
      if (opts.leaveRunning) await this.rt.setHostLink(uid, true, opts.signal);
    } catch (err) {
      await marks.finish();
      // A dump that failed after its post-dump left the disk frozen; nothing may run on it so.
      if (await marks.frozenDisk()) await this.thawDisk(uid).catch(() => undefined);
      // CRIU puts back the freezer state it found: frozen, when the script froze the VE.
      if (freezer && marks.freezesVE) await thawVE(freezer).catch((e: Error) => this.rt.veLogger(uid, name).error({ err: e.message }, 'could not thaw the VE after its failed dump; `runc resume` it'));
      await this.rt.setHostLink(uid, true).catch(() => undefined);
      const tmpfsError = await marks.tmpfsError();
      const tail = `${await criuLogTail(join(work, 'dump.log'))}${tmpfsError ? `\narchiving the VE's tmpfs mounts: ${tmpfsError}` : ''}`;
      // Partial images must not look like a checkpoint to anyone.
      for (const f of await readdir(opts.imageDir).catch(() => [])) await rm(join(opts.imageDir, f), { recursive: true, force: true });
      const running = (await this.rt.runc.state(id).catch(() => undefined))?.status === 'running';
      throw checkpointError(
        `checkpoint of VE ${name} failed: ${criuErrorLine(tail) ?? (err as Error).message}${running ? '; the VE keeps running' : ''} (CRIU log: ${join(work, 'dump.log')})`,
        { criuLog: tail, stderr: (err as KvzError).details?.stderr },
        'CommandFailed',
        err,
      );
    }
    const ms = Math.round(performance.now() - t0);
    if (!opts.leaveRunning) {
      // runc removes the container after a dump; make sure (a stopped leftover blocks a restore).
      // Its state dir tells without a runc run, which would sit on a migration's downtime.
      if (existsSync(join(this.rt.runc.root, id)) && (await this.rt.runc.state(id))) await this.rt.deleteStopped(id);
    }
    const bytes = await dirBytes(opts.imageDir);
    await rm(work, { recursive: true, force: true });
    this.rt.veLogger(uid, name).info({ imageDir: opts.imageDir, bytes, ms, leaveRunning: opts.leaveRunning ?? false }, 'VE checkpointed');
    return { imageDir: opts.imageDir, bytes, ms, frozenAt, ...(disk ? { disk } : {}) };
  }

  restore(config: VEConfig, imageDir: string, signal?: AbortSignal): Promise<{ ms: number }> {
    return this.rt.withVE(config.uid, async () => {
      const id = containerId(config.uid);
      // No state dir, no container: a migration target's or a suspended VE's usual case, told without a runc run.
      const st = existsSync(join(this.rt.runc.root, id)) ? await this.rt.runc.state(id, signal) : undefined;
      if (st && st.status !== 'stopped') {
        throw new KvzError('Conflict', `VE ${config.name} already has a container here (state ${st.status}); it cannot be restored over it`);
      }
      if (!existsSync(imageDir)) throw new KvzError('NotFound', `checkpoint images ${imageDir} do not exist`);
      if (st) await this.rt.deleteStopped(id, signal);
      const t0 = performance.now();
      const applied = await this.rt.appliedConfig(config.uid);
      await this.rt.bringUp(config, applied, { kind: 'restore', imageDir }, signal);
      return { ms: Math.round(performance.now() - t0) };
    });
  }

  /**
   * `runc restore` from the written bundle, then the addresses announced; inside bringUp's Revert.
   * A VE with a user namespace gets its netns wired by `userns.wire` while CRIU restores it (NetnsHandoff).
   */
  async runRestore(config: VEConfig, imageDir: string, signal?: AbortSignal, userns?: { hostGid: number; wire: (pid: number) => Promise<void> }): Promise<StepTimings> {
    const { uid } = config;
    // Where a restore's time goes, for the 'VE restored' log line: CRIU up to the netns handoff, the
    // wiring, CRIU after it, and the release.
    const { timings, lap } = stopwatch();
    const work = this.rt.criuWorkDir(uid, 'restore');
    const log = this.rt.veLogger(uid, config.name);
    await rm(work, { recursive: true, force: true });
    await mkdir(work, { recursive: true, mode: 0o700 });
    const handoff = userns ? new NetnsHandoff(this.rt.handoffDir(uid)) : undefined;
    const unlock = new NetworkUnlock(this.rt.handoffDir(uid));
    // The VE's own firewall rules, addresses and routes are back before its link opens at CRIU's
    // network-unlock: in the netns that exists already, or in CRIU's new one at the handoff.
    const putBackState = async () => {
      const names = await this.rt.netNames(uid);
      if (names) await restoreNetnsState(netnsPath(names.netns), imageDir, log, signal);
    };
    if (userns) await shareImagesWithVE(imageDir, userns.hostGid);
    await Promise.all([this.rt.cgroupfsLayout(uid).rebuild(imageDir), this.mountIncomingTmpfs(uid, imageDir, signal)]);
    await Promise.all([handoff?.reset(), userns ? undefined : putBackState(), this.rt.linkToOpen(uid).then((open) => unlock.arm(open))]);
    let linkOpened = false;
    try {
      const restoring = this.rt.whileFrozen(() => this.rt.runc.restore(containerId(uid), this.rt.bundleDir(uid), { imagePath: imageDir, workPath: work, signal }));
      const wire = userns && (async (pid: number) => {
        lap('criuToHandoff');
        await userns.wire(pid);
        await putBackState();
        lap('handoffWire');
      });
      await (handoff && wire ? handoff.serve(restoring, wire, signal).finally(() => handoff.clear()) : restoring);
      linkOpened = await unlock.finish();
    } catch (err) {
      // CRIU fails after its network-unlock only rarely; a link opened for a VE that did not come back goes down again.
      if (await unlock.finish()) await this.rt.setHostLink(uid, false).catch(() => undefined);
      await this.releaseTmpfs(uid, imageDir).catch(() => undefined);
      const tail = await criuLogTail(join(work, 'restore.log'));
      throw checkpointError(
        `restore of VE ${config.name} failed: ${criuErrorLine(tail) ?? (err as Error).message} (CRIU log: ${join(work, 'restore.log')}); the checkpoint images are kept`,
        { criuLog: tail, stderr: (err as KvzError).details?.stderr },
        'CommandFailed',
        err,
      );
    }
    lap('criu');
    // The VE's binds hold its tmpfs mounts now. The host's go a moment after the answer: a spawn
    // blocks this thread for 10-20 ms, on the downtime if it came first. Left behind (the agent
    // stopped), the VE's next restore or its removal drops them.
    setTimeout(() => void this.releaseTmpfs(uid, imageDir).catch((err: unknown) => log.warn({ err: (err as Error).message }, 'could not drop the host\'s mounts of the restored VE\'s tmpfs; its next restore or removal will')), 1_000).unref();
    await rm(work, { recursive: true, force: true });
    await this.rt.openNetwork(uid, signal, { linkOpened });
    lap('release');
    const names = await this.rt.netNames(uid);
    if (names) announceAddresses({ netnsPath: netnsPath(names.netns), ifname: CNI_IFNAME, mac: macAddress(uid), addresses: config.addresses, busybox: this.rt.busybox, log });
    return timings;
  }


  /** Drops the host's mounts of the VE's tmpfs made for `imageDir` (not those of a later restore). */
  releaseTmpfs(uid: string, imageDir: string): Promise<void> {
    return this.rt.withVE(tmpfsLock(uid), () => CarriedTmpfs.release(this.rt.veDir(uid), imageDir));
  }

  /**
   * The VE's tmpfs mounts from the images (CarriedTmpfs): by every restore, and by a migration
   * target ahead of it once the images are verified. Not under the VE's lock (only the tmpfs
   * mounts' own): on a target it goes beside the disk's mounting (mountIncomingDisk), and the
   * restore waits for both.
   */
  mountIncomingTmpfs(uid: string, imageDir: string, signal?: AbortSignal): Promise<void> {
    // Joining the VE's memory cgroup waits out an RCU grace period: expedited (a migration's downtime).
    return this.rt.withVE(tmpfsLock(uid), () => this.rt.whileFrozen(() => CarriedTmpfs.mount(this.rt.veDir(uid), imageDir, { memoryProcs: this.rt.memoryCgroupProcs(uid), signal })));
  }

  diskImagePath(uid: string): string {
    return diskPaths(this.rt.veDir(uid)).image;
  }

  releaseDisk(uid: string): Promise<void> {
    return this.rt.withVE(uid, async () => {
      const st = await this.rt.runc.state(containerId(uid));
      if (st && st.status !== 'stopped') {
        throw new KvzError('Conflict', `VE ${uid} still runs (state ${st.status}); its disk can only be released after a dump that stopped it`);
      }
      const paths = rootfsPaths(this.rt.veDir(uid));
      await unmountRootfs(paths);
      if (await isImageMounted(paths.disk)) await unmountImage(paths.disk);
      else if (existsSync(paths.disk.image)) await unmountImage(paths.disk); // detaches a leftover loop device
    });
  }

  prepareIncoming(config: VEConfig, signal?: AbortSignal): Promise<void> {
    return this.rt.withVE(config.uid, async () => {
      const { uid } = config;
      const st = await this.rt.runc.state(containerId(uid), signal);
      if (st) throw new KvzError('Conflict', `VE ${config.name} already has a container on this node (state ${st.status}); it cannot be received here`);
      const dir = this.rt.veDir(uid);
      const log = this.rt.veLogger(uid, config.name);
      await mkdir(this.rt.bundleDir(uid), { recursive: true });
      // The same uid range as on the source (its files are owned by it), before config.json exists.
      await this.rt.resolveSecurity(config, log);
      await this.rt.ensureTemplate(config.template, undefined, { signal });
      const disk = diskPaths(dir);
      if (await isImageMounted(disk)) throw new KvzError('Conflict', `VE ${config.name}'s disk is mounted on this node; it cannot be received here`);
      // A loop device still backed by an image of this name (a crash mid-way before) goes now, so
      // mountIncomingDisk need not look for one during the downtime.
      await detachLoops(disk.image, signal).catch(() => undefined);
      await createEmptyImage(disk, config.disk?.sizeBytes ?? DEFAULT_DISK_BYTES);
      const file = join(dir, 'config.json');
      await writeFile(`${file}.tmp`, `${JSON.stringify(config, null, 2)}\n`);
      await rename(`${file}.tmp`, file);
      log.info({ image: disk.image }, 'incoming VE prepared');
    });
  }

  /**
   * After a dump: the VE's filesystem frozen (fsfreeze) rather than unmounted, so the image file is
   * consistent to read and mounts cleanly elsewhere (a frozen ext4 has its journal flushed), in one
   * command instead of two unmounts and a loop look-up — and a rollback only thaws it. The VE must
   * not run (the caller has just dumped it: no `runc state` look-up during the downtime). The same
   * spawn lists the image's extents for the last delta's digest. thawDisk undoes it; a frozen disk
   * must be thawed before it is unmounted or written.
   */
  freezeDisk(uid: string, signal?: AbortSignal): Promise<Array<[number, number]> | undefined> {
    return this.rt.withVE(uid, async () => {
      const disk = diskPaths(this.rt.veDir(uid));
      if (!(await isImageMounted(disk))) return undefined; // not mounted: the image file is already at rest
      const script = 'fsfreeze --freeze "$1" || exit 90; filefrag -e "$2" || exit 91';
      const res = await run('sh', ['-c', script, 'kvz-freeze', disk.mount, disk.image], { signal, allowFailure: true });
      if (res.exitCode === 0) return parseFilefrag(res.stdout);
      if (res.exitCode === 91) return undefined; // frozen; the digest reads every block
      // Not frozen, or not known to be (the caller's rollback thaws): never digest a disk that may still change.
      throw new KvzError('CommandFailed', `could not freeze the disk of VE ${uid} (fsfreeze --freeze ${disk.mount}): ${res.stderr.trim() || `exit ${res.exitCode}`}`);
    });
  }

  async syncDisk(uid: string, signal?: AbortSignal): Promise<void> {
    const disk = diskPaths(this.rt.veDir(uid));
    if (await isImageMounted(disk)) await run('sync', ['-f', disk.mount], { signal });
  }

  /** Thaws what freezeDisk froze; a disk that is not frozen or not mounted is fine. */
  async thawDisk(uid: string, signal?: AbortSignal): Promise<void> {
    const disk = diskPaths(this.rt.veDir(uid));
    if (!(await isImageMounted(disk))) return;
    const res = await run('fsfreeze', ['--unfreeze', disk.mount], { signal, allowFailure: true });
    // EINVAL: it was not frozen.
    if (res.exitCode !== 0 && !/Invalid argument/i.test(res.stderr)) {
      throw new KvzError('CommandFailed', `could not thaw the disk of VE ${uid} (fsfreeze --unfreeze ${disk.mount}): ${res.stderr.trim()}`);
    }
  }

  /**
   * Target side, once the last disk block arrived: the incoming image mounted (loop, ext4) with its
   * record written, and the VE's root fs on it (HostRuntime.mountIncomingRootfs), so the restore
   * mounts nothing. prepareIncoming detached any loop device of the image, so no `losetup -j`
   * look-up is needed.
   */
  mountIncomingDisk(uid: string, signal?: AbortSignal): Promise<void> {
    return this.rt.withVE(uid, async () => {
      const disk = diskPaths(this.rt.veDir(uid));
      const withDisk = !(await isImageMounted(disk));
      if (withDisk && !(await readDiskRecord(disk))) await recoverDiskRecord(disk);
      await this.rt.whileFrozen(() => this.rt.mountIncomingRootfs(uid, signal, { withDisk }));
    });
  }

  /**
   * Target side, while the source still runs the VE: its netns wired with the host end parked off
   * the LAN, or for a VE whose restore makes its own netns (user namespace) its interface staged,
   * so the restore finds it ready.
   */
  async prepareRestoreNetwork(config: VEConfig, signal?: AbortSignal): Promise<void> {
    await this.rt.prepareRestoreNetwork(config, signal);
  }

  async abortIncoming(uid: string): Promise<void> {
    const st = await this.rt.runc.state(containerId(uid));
    if (st && st.status !== 'stopped') {
      throw new KvzError('Conflict', `VE ${uid} runs on this node (state ${st.status}): the incoming copy was restored; stop it first if it really must go`);
    }
    await this.rt.destroy(uid, { timeoutMs: 5_000 });
  }
}

/** The lock of a VE's carried tmpfs mounts (apart from the VE's own: a migration target mounts them beside the disk). */
function tmpfsLock(uid: string): string {
  return `${uid}/tmpfs`;
}
