// In-memory VERuntime for unit tests of the node agent. It passes the same contract tests
// (test/helpers/runtime-contract.ts) as the real runtime, so it cannot drift from it.

import { initProfile, templateDigest, type EnsureTemplateOptions, type TemplateInfo, type TemplateRecipe } from '../../src/runtime/index.js';
import type { CheckpointOptions, CheckpointResult, EnsureResult, ExecOptions, NodeFeature, StopOptions, VEConfig, VEDiskUsage, VEHostState, VELimits, VEMigrationRuntime, VERuntime, VEUsage } from '../../src/runtime/index.js';

interface FakeVE {
  config: VEConfig;
  /** Applied disk: grown online only when onlineGrow is set, else at the next start; never shrunk. */
  disk: VEDiskUsage;
  state: 'running' | 'stopped' | 'suspended';
  pid?: number;
  /** RLIMIT_NOFILE init started with: like the kernel, a live update does not change it. */
  nofile?: number;
}

export class FakeRuntime implements VERuntime {
  readonly ves = new Map<string, FakeVE>();
  readonly templates = new Set<string>();
  readonly calls: string[] = [];
  private nextPid = 1000;
  /** What nodeFeatures() reports; tests flip these. */
  features: Record<string, NodeFeature> = {
    diskOnlineGrow: { available: false, reason: 'fake: no CAP_SYS_RESOURCE' },
    diskQuotaUgid: { available: false, reason: 'fake: kernel lacks CONFIG_QFMT_V2' },
    checkpoint: { available: true, reason: 'fake: CRIU 4.2.1; VEs with a user namespace cannot be checkpointed' },
  };
  /** Set to make the next checkpoint (suspend or migration) fail (once); the VE keeps running. */
  failNextCheckpoint: Error | undefined;
  /** Set to make the next restore (resume or migration) fail (once). */
  failNextRestore: Error | undefined;
  /** Incoming VEs prepared by migration.prepareIncoming and not yet restored/started (uid → config). */
  readonly incoming = new Map<string, VEConfig>();
  readonly migration: VEMigrationRuntime = new FakeMigration(this);
  /** Usage readUsage reports, by uid; tests set it (default: one process, 1 MiB, nothing failed). */
  readonly usage = new Map<string, VEUsage>();
  /** Set to make the next ensureRunning fail (once). */
  failNextStart: Error | undefined;

  /** Template caches by name (digest as the real cache computes it from the recipe alone). */
  readonly templateInfos = new Map<string, TemplateInfo>();
  /** Set to make the next template build fail (once), after its first progress report. */
  failNextBuild: Error | undefined;

  async ensureTemplate(name: string, recipe?: TemplateRecipe, opts: EnsureTemplateOptions = {}): Promise<TemplateInfo & { result: EnsureResult }> {
    const current = this.templateInfos.get(name);
    if (!recipe) {
      if (current) return { ...current, result: 'unchanged' };
      if (name !== 'busybox') throw Object.assign(new Error(`template ${JSON.stringify(name)} is not built on this node and has no recipe`), { code: 'NotFound' });
    }
    const r: TemplateRecipe = recipe ?? { source: { kind: 'busybox' } };
    const digest = templateDigest(r);
    if (current?.digest === digest) return { ...current, result: 'unchanged' };
    this.calls.push(`buildTemplate ${name}`);
    opts.onProgress?.({ stage: r.source.kind === 'debootstrap' ? 'Downloading' : 'Installing', percent: 10 });
    if (this.failNextBuild) {
      const err = this.failNextBuild;
      this.failNextBuild = undefined;
      throw err;
    }
    opts.onProgress?.({ stage: 'Packing', percent: 90 });
    const flavor = r.init?.flavor && r.init.flavor !== 'auto' ? r.init.flavor : r.source.kind === 'busybox' ? 'busybox' : 'systemd';
    const info: TemplateInfo = {
      name,
      rootfs: `/fake/templates/${name}/rootfs`,
      digest,
      source: r.source.kind,
      init: initProfile(flavor, r.init),
      sizeBytes: 1000,
      unpackedBytes: 4000,
      builtAt: new Date(0).toISOString(),
      buildMs: 1,
      builtin: recipe === undefined,
    };
    this.templateInfos.set(name, info);
    this.templates.add(name);
    opts.onProgress?.({ stage: 'Ready', percent: 100 });
    return { ...info, result: current ? 'updated' : 'created' };
  }

  async removeTemplate(name: string): Promise<EnsureResult> {
    const users = [...this.ves.values()].filter((v) => v.config.template === name).map((v) => v.config.name);
    if (users.length) throw Object.assign(new Error(`template ${JSON.stringify(name)} is in use by ${users.join(', ')} on this node`), { code: 'Conflict' });
    this.templates.delete(name);
    return this.templateInfos.delete(name) ? 'deleted' : 'unchanged';
  }

  async listTemplates(): Promise<TemplateInfo[]> {
    return [...this.templateInfos.values()];
  }

  async ensureRunning(config: VEConfig): Promise<EnsureResult> {
    this.calls.push(`ensureRunning ${config.uid}`);
    if (this.failNextStart) {
      const err = this.failNextStart;
      this.failNextStart = undefined;
      throw err;
    }
    if (!this.templates.has(config.template)) throw Object.assign(new Error(`template ${config.template} is not built`), { code: 'NotFound' });
    if ((config.disk?.quotaUgidLimit ?? 0) > 0 && !this.features.diskQuotaUgid?.available) {
      throw Object.assign(new Error('second-level disk quota is not available on this node'), { code: 'Invalid' });
    }
    const ve = this.ves.get(config.uid);
    const want = config.disk?.sizeBytes ?? 2 * 1024 ** 3;
    // Like the host: a suspended VE asked to run is resumed, never cold-booted over its checkpoint.
    if (ve?.state === 'suspended') return this.resume(config);
    this.incoming.delete(config.uid);
    if (ve?.state === 'running') {
      if (want > ve.disk.sizeBytes && this.features.diskOnlineGrow?.available) {
        ve.disk.sizeBytes = want;
        return 'updated';
      }
      return 'unchanged';
    }
    let disk: VEDiskUsage = ve?.disk ?? { sizeBytes: want, inodes: config.disk?.inodes ?? Math.floor(want / 16384), mounted: true, usedBytes: 0, inodesUsed: 11 };
    const src = config.disk?.cloneFrom ? this.ves.get(config.disk.cloneFrom) : undefined;
    if (!ve && config.disk?.cloneFrom) {
      if (!src) throw Object.assign(new Error(`clone source ${config.disk.cloneFrom} has no disk on this node`), { code: 'NotFound' });
      disk = { ...src.disk };
    }
    if (want > disk.sizeBytes) disk = { ...disk, sizeBytes: want };
    this.ves.set(config.uid, { config: { ...config, limits: { ...config.limits } }, disk, state: 'running', pid: this.nextPid++, nofile: config.limits.openFiles ?? 1024 });
    return ve ? 'updated' : 'created';
  }

  async ensureStopped(uid: string, _opts: StopOptions): Promise<EnsureResult> {
    this.calls.push(`ensureStopped ${uid}`);
    const ve = this.ves.get(uid);
    if (!ve || ve.state === 'stopped') return 'unchanged';
    // A suspended VE's checkpoint is discarded.
    ve.state = 'stopped';
    delete ve.pid;
    return 'updated';
  }

  async updateLimits(uid: string, limits: VELimits): Promise<EnsureResult> {
    this.calls.push(`updateLimits ${uid}`);
    const ve = this.ves.get(uid);
    if (!ve || ve.state !== 'running') throw Object.assign(new Error(`VE ${uid} is not running`), { code: 'NotFound' });
    if (JSON.stringify(ve.config.limits) === JSON.stringify(limits)) return 'unchanged';
    ve.config.limits = { ...limits };
    return 'updated';
  }

  async destroy(uid: string, _opts: StopOptions): Promise<EnsureResult> {
    this.calls.push(`destroy ${uid}`);
    const had = this.incoming.delete(uid);
    return this.ves.delete(uid) || had ? 'deleted' : 'unchanged';
  }

  async inspect(uid: string): Promise<VEHostState> {
    const ve = this.ves.get(uid);
    if (!ve) return { uid, state: 'absent', addresses: [], prepared: false };
    return {
      uid,
      state: ve.state,
      pid: ve.pid,
      addresses: ve.state === 'running' ? [...ve.config.addresses] : [],
      prepared: true,
      config: { ...ve.config, limits: { ...ve.config.limits } },
      // Like the host: a user namespace unless the config asks for privileged mode (range fixed per VE).
      security: (ve.config.security?.userNamespace ?? true)
        ? { userNamespace: true, privileged: false, uidRange: ve.config.security?.uidRange ?? { hostId: 1_048_576 + ((ve.pid ?? 0) % 60_000) * 65_536, size: 65_536 } }
        : { userNamespace: false, privileged: true },
    };
  }

  async list(): Promise<VEHostState[]> {
    return Promise.all([...this.ves.keys()].map((uid) => this.inspect(uid)));
  }

  async exec(uid: string, argv: string[], _opts: ExecOptions): Promise<number> {
    const ve = this.ves.get(uid);
    if (!ve || ve.state !== 'running') throw Object.assign(new Error(`VE ${uid} is not running`), { code: 'NotFound' });
    return argv[0] === 'false' ? 1 : 0;
  }

  async readLimits(uid: string): Promise<VELimits> {
    const ve = this.ves.get(uid);
    if (!ve) throw Object.assign(new Error(`VE ${uid} not found`), { code: 'NotFound' });
    const { openFiles: _declared, ...limits } = ve.config.limits;
    return ve.state === 'running' ? { ...limits, openFiles: ve.nofile } : limits;
  }

  async readUsage(uid: string): Promise<VEUsage> {
    const ve = this.ves.get(uid);
    if (!ve) throw Object.assign(new Error(`VE ${uid} not found`), { code: 'NotFound' });
    const set = this.usage.get(uid);
    if (set) return structuredClone(set);
    const running = ve.state === 'running' ? 1 : 0;
    return {
      memory: { held: running << 20, maxheld: running << 20, limit: ve.config.limits.memoryBytes, failcnt: 0, oomKills: 0 },
      processes: { held: running, limit: ve.config.limits.pids, failcnt: 0 },
      cpu: { usageUs: 0, periods: 0, throttledPeriods: 0, throttledUs: 0 },
      io: { readBytes: 0, writeBytes: 0, readOps: 0, writeOps: 0 },
      openFiles: 3 * running,
      sockets: { tcp: 0, other: 0 },
      network: { rxBytes: 0, txBytes: 0 },
    };
  }

  async diskUsage(uid: string): Promise<VEDiskUsage | undefined> {
    const ve = this.ves.get(uid);
    return ve ? { ...ve.disk } : undefined;
  }

  async nodeFeatures(): Promise<Record<string, NodeFeature>> {
    return { ...this.features };
  }

  private takeFailure(which: 'failNextCheckpoint' | 'failNextRestore'): void {
    const err = this[which];
    if (err) {
      this[which] = undefined;
      throw err;
    }
  }

  /** Like the host, any VE (user namespace or privileged) can be checkpointed; failures are injected. */
  checkCheckpointable(_ve: FakeVE): void {
    this.takeFailure('failNextCheckpoint');
  }

  async suspend(uid: string): Promise<EnsureResult> {
    this.calls.push(`suspend ${uid}`);
    const ve = this.ves.get(uid);
    if (ve?.state === 'suspended') return 'unchanged';
    if (!ve || ve.state !== 'running') throw Object.assign(new Error(`VE ${uid} is not running`), { code: 'Conflict' });
    this.checkCheckpointable(ve);
    ve.state = 'suspended';
    delete ve.pid;
    return 'updated';
  }

  async resume(config: VEConfig): Promise<EnsureResult> {
    this.calls.push(`resume ${config.uid}`);
    const ve = this.ves.get(config.uid);
    if (ve?.state === 'running') return 'unchanged';
    if (ve?.state !== 'suspended') throw Object.assign(new Error(`VE ${config.uid} has no suspend checkpoint`), { code: 'NotFound' });
    this.takeFailure('failNextRestore');
    ve.state = 'running';
    ve.pid = this.nextPid++;
    ve.config = { ...config, limits: { ...config.limits } };
    return 'updated';
  }

  /** A VE restored from a checkpoint (resume or migration): running, with a fresh host pid. */
  restoreVE(config: VEConfig): void {
    const ve = this.ves.get(config.uid);
    const want = config.disk?.sizeBytes ?? 2 * 1024 ** 3;
    const disk = ve?.disk ?? { sizeBytes: want, inodes: config.disk?.inodes ?? Math.floor(want / 16384), mounted: true, usedBytes: 0, inodesUsed: 11 };
    this.ves.set(config.uid, { config: { ...config, limits: { ...config.limits } }, disk: { ...disk, mounted: true }, state: 'running', pid: this.nextPid++, nofile: config.limits.openFiles ?? 1024 });
  }

  /** Simulates an init killed by hand. */
  kill(uid: string): void {
    const ve = this.ves.get(uid);
    if (ve) {
      ve.state = 'stopped';
      delete ve.pid;
    }
  }
}

/** The migration verbs of the fake: images and disk images are names only; state moves like on a host. */
class FakeMigration implements VEMigrationRuntime {
  constructor(private readonly rt: FakeRuntime) {}

  async checkpoint(uid: string, opts: CheckpointOptions): Promise<CheckpointResult> {
    this.rt.calls.push(`checkpoint ${uid}`);
    const ve = this.rt.ves.get(uid);
    if (!ve || ve.state !== 'running') throw Object.assign(new Error(`VE ${uid} is not running`), { code: 'Conflict' });
    this.rt.checkCheckpointable(ve);
    if (!opts.leaveRunning) {
      ve.state = 'stopped';
      delete ve.pid;
    }
    return { imageDir: opts.imageDir, bytes: 250_000, ms: 1 };
  }

  async restore(config: VEConfig, imageDir: string): Promise<{ ms: number }> {
    this.rt.calls.push(`restore ${config.uid} ${imageDir}`);
    const ve = this.rt.ves.get(config.uid);
    if (ve?.state === 'running') throw Object.assign(new Error(`VE ${config.name} already runs here`), { code: 'Conflict' });
    if ((config.security?.userNamespace ?? true)) throw Object.assign(new Error(`VE ${config.name} has a user namespace and cannot be restored`), { code: 'Unavailable' });
    const failure = this.rt.failNextRestore;
    if (failure) {
      this.rt.failNextRestore = undefined;
      throw failure;
    }
    this.rt.incoming.delete(config.uid);
    this.rt.restoreVE(config);
    return { ms: 1 };
  }

  diskImagePath(uid: string): string {
    return `/fake/ves/${uid}/disk.img`;
  }

  async releaseDisk(uid: string): Promise<void> {
    this.rt.calls.push(`releaseDisk ${uid}`);
    const ve = this.rt.ves.get(uid);
    if (ve?.state === 'running') throw Object.assign(new Error(`VE ${uid} still runs`), { code: 'Conflict' });
    if (ve) ve.disk.mounted = false;
  }

  async prepareIncoming(config: VEConfig): Promise<void> {
    this.rt.calls.push(`prepareIncoming ${config.uid}`);
    if (this.rt.ves.get(config.uid)?.state === 'running') throw Object.assign(new Error(`VE ${config.name} already runs here`), { code: 'Conflict' });
    await this.rt.ensureTemplate(config.template);
    this.rt.incoming.set(config.uid, { ...config });
  }

  async abortIncoming(uid: string): Promise<void> {
    this.rt.calls.push(`abortIncoming ${uid}`);
    if (this.rt.ves.get(uid)?.state === 'running') throw Object.assign(new Error(`VE ${uid} runs here`), { code: 'Conflict' });
    this.rt.incoming.delete(uid);
    this.rt.ves.delete(uid);
  }
}
