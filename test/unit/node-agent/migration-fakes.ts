// A FakeRuntime with suspend/resume and the migration runtime, for the node agent's migration
// tests: disks are real small sparse files (the data channel moves real bytes), checkpoints are
// real image files that carry the VE's init PID (a restore keeps the processes: same PID).

import { mkdirSync, openSync, closeSync, ftruncateSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { KvzError } from '../../../src/core/errors.js';
import type { CheckpointOptions, CheckpointResult, EnsureResult, StopOptions, VEConfig, VEHostState, VEMigrationRuntime } from '../../../src/runtime/index.js';
import { FakeRuntime } from '../../helpers/fake-runtime.js';

export class MigratingFakeRuntime extends FakeRuntime {
  /** uids whose container was dumped by a migration checkpoint (no container, disk kept). */
  readonly dumped = new Set<string>();
  /** uids whose disk is frozen (freezeDisk): nothing may run on it until thawDisk. */
  readonly frozen = new Set<string>();
  /** The disk image's bytes when mountIncomingDisk mounted it (the target's copy must be complete by then). */
  readonly mountedDisk = new Map<string, Buffer>();
  /** Runs after a restore brought the VE up, before the restore returns (a test's way to lose its answer). */
  afterRestore: ((uid: string) => Promise<void>) | undefined;

  constructor(readonly dir: string) {
    super();
    mkdirSync(dir, { recursive: true });
  }

  override async inspect(uid: string): Promise<VEHostState> {
    const h = await super.inspect(uid);
    if (this.dumped.has(uid)) return { ...h, state: 'absent', pid: undefined, addresses: [] };
    if (!this.ves.has(uid) && this.incoming.has(uid)) return { uid, state: 'absent', addresses: [], prepared: true };
    return h;
  }

  override async list(): Promise<VEHostState[]> {
    const uids = new Set([...this.ves.keys(), ...this.incoming.keys()]);
    return Promise.all([...uids].map((u) => this.inspect(u)));
  }

  override async destroy(uid: string, opts: StopOptions): Promise<EnsureResult> {
    this.dumped.delete(uid);
    rmSync(this.diskImagePath(uid), { force: true });
    return super.destroy(uid, opts);
  }

  diskImagePath(uid: string): string {
    return join(this.dir, `${uid}.img`);
  }

  /** File-backed: real disk images and image files, so the data channel moves real bytes. */
  override readonly migration: VEMigrationRuntime = {
    checkpoint: async (uid: string, opts: CheckpointOptions): Promise<CheckpointResult> => {
      this.calls.push(`checkpoint ${uid}`);
      const ve = this.ves.get(uid);
      if (!ve || ve.state !== 'running' || this.dumped.has(uid)) throw new KvzError('Conflict', `VE ${uid} is not running`);
      this.checkCheckpointable(ve);
      mkdirSync(opts.imageDir, { recursive: true, mode: 0o700 });
      const state = JSON.stringify({ pid: ve.pid });
      writeFileSync(join(opts.imageDir, 'inventory.img'), state);
      writeFileSync(join(opts.imageDir, 'pages-1.img'), Buffer.alloc(300_000, 7));
      this.dumped.add(uid);
      return { imageDir: opts.imageDir, bytes: state.length + 300_000, ms: 1 };
    },
    restore: async (config: VEConfig, imageDir: string): Promise<{ ms: number }> => {
      this.calls.push(`restore ${config.uid}`);
      if (this.frozen.has(config.uid)) throw new KvzError('Internal', `VE ${config.uid}'s disk is frozen: a restore onto it would hang`);
      if (this.failNextRestore) {
        const e = this.failNextRestore;
        this.failNextRestore = undefined;
        throw e;
      }
      const inv = JSON.parse(readFileSync(join(imageDir, 'inventory.img'), 'utf8')) as { pid: number };
      const pages = readFileSync(join(imageDir, 'pages-1.img'));
      if (pages.length !== 300_000 || pages.some((b) => b !== 7)) throw new KvzError('Internal', 'damaged pages image');
      if (!existsSync(this.diskImagePath(config.uid))) throw new KvzError('NotFound', 'no disk image to restore onto');
      this.dumped.delete(config.uid);
      this.incoming.delete(config.uid);
      this.templates.add(config.template);
      const prev = this.ves.get(config.uid);
      this.ves.set(config.uid, {
        config: { ...config, limits: { ...config.limits } },
        disk: prev?.disk ?? { sizeBytes: config.disk?.sizeBytes ?? 0, inodes: 1000, mounted: true, usedBytes: 0, inodesUsed: 11 },
        state: 'running',
        pid: inv.pid,
        nofile: config.limits.openFiles ?? 1024,
      });
      await this.afterRestore?.(config.uid);
      return { ms: 2 };
    },
    diskImagePath: (uid: string) => this.diskImagePath(uid),
    releaseDisk: async (uid: string) => {
      this.calls.push(`releaseDisk ${uid}`);
      if (this.frozen.has(uid)) throw new KvzError('Internal', `VE ${uid}'s disk is frozen: thaw it before releasing it`);
    },
    freezeDisk: async (uid: string) => {
      this.calls.push(`freezeDisk ${uid}`);
      this.frozen.add(uid);
      return undefined; // the extents are unknown: the digest reads every block
    },
    thawDisk: async (uid: string) => {
      this.calls.push(`thawDisk ${uid}`);
      this.frozen.delete(uid);
    },
    mountIncomingDisk: async (uid: string) => {
      this.calls.push(`mountIncomingDisk ${uid}`);
      this.mountedDisk.set(uid, readFileSync(this.diskImagePath(uid)));
    },
    prepareRestoreNetwork: async (config: VEConfig) => {
      this.calls.push(`prepareRestoreNetwork ${config.uid}`);
    },
    prepareIncoming: async (config: VEConfig) => {
      this.calls.push(`prepareIncoming ${config.uid}`);
      this.templates.add(config.template);
      if (!this.incoming.has(config.uid)) {
        const fd = openSync(this.diskImagePath(config.uid), 'w');
        ftruncateSync(fd, config.disk?.sizeBytes ?? 4 << 20);
        closeSync(fd);
      }
      this.incoming.set(config.uid, { ...config });
    },
    abortIncoming: async (uid: string) => {
      this.calls.push(`abortIncoming ${uid}`);
      if (!this.incoming.has(uid) && !this.ves.has(uid)) return;
      this.incoming.delete(uid);
      this.ves.delete(uid);
      rmSync(this.diskImagePath(uid), { force: true });
    },
  };
}
