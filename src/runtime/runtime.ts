// The node's VE runtime on a Linux host: template cache → overlay root → netns + CNI bridge →
// OCI bundle → runc. Every verb reads the host first (runc state, mounts, netns), acts only on
// what differs, and records the config it applied, so a repeat after a crash completes or
// redoes the work. Multi-step changes run under a Revert.

import { chown, rename, mkdir, readdir, readFile, rm, rmdir, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { KvzError, errorMessage } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { Revert } from '../core/revert.js';
import { createCgroupReader, type CgroupReader } from './cgroup.js';
import { V1_CONTROLLERS } from './cgroup-v1.js';
import { CNI_IFNAME, Cni, bridgeConfig, networkConfig, restoreIfaceBatch, routedPlan, type CniResult, type NetworkMode } from './cni.js';
import { addRoutedAddresses } from './network-routed.js';
import { guardVeth, removeAntispoofTables, unguardVeth } from './antispoof.js';
import { writeResolvConf } from './network-files.js';
import { deleteManagedBridge, markBridgeManaged, nodeBridgeAttachment, parkingBridgeName, type NodeBridgeAttachment } from './node-bridge.js';
import { hostInfo } from './host-info.js';
import { blockDeviceOf } from './block-device.js';
import { limitsEqual, ociResources, parseCpuset, runcUpdateJson, sameLimits, type BlockDevice } from './limits.js';
import { UsageReader } from './usage.js';
import { cgroupPath, containerId, macAddress } from './names.js';
import { ExpeditedRcu } from './rcu-expedite.js';
import { chooseNetNames, readNetNames, type VENetNames } from './net-names.js';
import { VEMigration } from './migration.js';
import { CarriedTmpfs, CgroupfsLayout, SuspendCheckpoints, type VEFreezer, criuConfigPath, checkpointFeature, ensureKerndatCache, findCriu, holdInput, releaseInput, removeKerndatCache, removeMigrationScratch, writeCriuConfig } from './checkpoint.js';
import { addNetns, deleteLink, deleteNetns, linkExists, netnsAddresses, netnsExists, netnsPath, renameLink, setLinkAddress } from './netns.js';
import { MASKED_PATHS, STOP_SIGNAL_ANNOTATION, buildOciSpec, type BootProfile } from './oci-spec.js';
import { Isolation } from './isolation.js';
import { DEFAULT_IDMAP_HELPER } from './idmap-mount.js';
import { cloneImage } from './clone.js';
import { diskUsageOf, onlineGrowFeature, quotaFeature, readDiskRecord, roundToBlock, DEFAULT_DISK_BYTES } from './disk-image.js';
import { ensureRootfs, growRunning, isMounted, mountDiskAndRootfs, mountRootfs, mountsUnder, removeRootfs, rootfsPaths, unmountRootfs, writeIdentity } from './rootfs.js';
import { run } from './command.js';
import { pidGone } from './pid.js';
import { stopwatch } from './stopwatch.js';
import { Lxcfs, stopNodeServices } from './lxcfs.js';
import { Runc, type RuncState } from './runc.js';
import { TemplateCache, type EnsureTemplateOptions, type TemplateInfo } from './templates.js';
import type { InitProfile, TemplateRecipe } from './template-recipe.js';
import type {
  EnsureResult,
  ExecOptions,
  NodeFeature,
  VEDiskUsage,
  RuntimeOptions,
  StopOptions,
  VEConfig,
  VEHostState,
  VELimits,
  VERunState,
  VERuntime,
  VEUsage,
} from './types.js';

/** Stop timeout when a VE must be recreated because its identity (hostname, addresses, template) changed. */
const RECREATE_STOP_TIMEOUT_MS = 10_000;

interface StoredNetwork {
  addresses: string[];
  /** Absent in records written before routed mode existed: bridged. */
  mode?: NetworkMode;
  hostVeth: string;
  result: CniResult;
  /** Wired ahead of a restore into this agent-made netns, for the restored VE's own (see stageNetwork). */
  staged?: string;
  /** Wired ahead of a restore: the host end is on the parking bridge, down, until openNetwork moves it to this bridge. */
  parked?: string;
  /** A restore's input hold (holdInput) is on the netns until openNetwork removes it. */
  inputHeld?: boolean;
}

/** The host end of a bridged VE's veth, if it exists (routed mode's host routes go with its link). */
function bridgedHostVeth(stored: StoredNetwork | undefined): string | undefined {
  return stored && (stored.mode ?? 'bridged') === 'bridged' && linkExists(stored.hostVeth) ? stored.hostVeth : undefined;
}

function modeOf(c: VEConfig): NetworkMode {
  return c.network?.mode ?? 'bridged';
}

/** Serialises operations per key inside this process (the agent's queue already does per VE; this guards direct callers). */
class KeyedMutex {
  private tails = new Map<string, Promise<unknown>>();
  async run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.tails.get(key) ?? Promise.resolve();
    const next = prev.catch(() => undefined).then(fn);
    this.tails.set(key, next);
    try {
      return await next;
    } finally {
      if (this.tails.get(key) === next) this.tails.delete(key);
    }
  }
}

async function readJson<T>(path: string): Promise<T | undefined> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as T;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new KvzError('Internal', `cannot read ${path}: ${(err as Error).message}`, { cause: err });
  }
}

/** Write-then-rename, so a crash never leaves half a JSON file. */
async function writeJsonAtomic(path: string, value: unknown): Promise<void> {
  const tmp = `${path}.tmp`;
  await writeFile(tmp, `${JSON.stringify(value, null, 2)}\n`);
  await rename(tmp, path);
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(signal?.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Like Promise.all, but waits for every promise before throwing, so no step still runs while undos do. */
async function allSettledOrThrow<T extends readonly unknown[]>(ps: { [K in keyof T]: Promise<T[K]> }): Promise<T> {
  const results = await Promise.allSettled(ps);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
  return results.map((r) => (r as PromiseFulfilledResult<unknown>).value) as unknown as T;
}

function runState(st: RuncState | undefined): VERunState {
  if (!st) return 'absent';
  if (st.status === 'creating') return 'created';
  return st.status;
}

function sameIdentity(a: VEConfig, b: VEConfig): boolean {
  return a.hostname === b.hostname && a.template === b.template && a.name === b.name && a.addresses.join(',') === b.addresses.join(',')
    && JSON.stringify(a.network ?? {}) === JSON.stringify(b.network ?? {})
    && JSON.stringify(a.devices ?? []) === JSON.stringify(b.devices ?? []);
}

function validate(c: VEConfig): void {
  if (!c.uid) throw new KvzError('Invalid', 'VE config has no uid');
  if (!/^[A-Za-z0-9]([A-Za-z0-9.-]{0,62})$/.test(c.hostname)) {
    throw new KvzError('Invalid', `hostname ${JSON.stringify(c.hostname)} is not a valid host name`);
  }
  if (!c.template) throw new KvzError('Invalid', 'VE config has no template');
}

export interface HostRuntimeOptions extends RuntimeOptions {
  runcBinary?: string;
  /** The kvz-idmap helper (user namespaces); default dist/native/kvz-idmap, built by hack/setup.sh. */
  idmapHelper?: string;
  cniPluginDir?: string;
  busybox?: string;
  cgroupRoot?: string;
  /** CRIU binary; default /usr/local/sbin/criu, else PATH. */
  criuBinary?: string;
  /** lxcfs binary [lxcfs on PATH] and how often its supervisor checks it [2000 ms]. */
  lxcfs?: { binary?: string; checkMs?: number };
  /** Expedited RCU grace periods node-wide while a VE is frozen for a dump or restore [true] (rcu-expedite.ts). */
  expediteRcu?: boolean;
}

/** What a bring-up does after the bundle: boot init, or restore CRIU images. */
type BringUp = { kind: 'boot' } | { kind: 'restore'; imageDir: string };

/** Suspend checkpoints kept per VE (the newest is what resume restores). */
const SUSPEND_RETENTION = 2;

export class HostRuntime implements VERuntime {
  readonly runc: Runc;
  readonly templates: TemplateCache;
  private readonly cni: Cni;
  private readonly cgroup: CgroupReader;
  private readonly usage: UsageReader;
  private readonly log: Logger;
  private readonly mutex = new KeyedMutex();
  private ownBridge: NodeBridgeAttachment | undefined;
  /** VEs whose host veth this process has guarded (antispoof.ts); a reused network is guarded once per agent. */
  private readonly guarded = new Set<string>();
  private readonly vesDir: string;
  private readonly isolation: Isolation;
  readonly migration: VEMigration;
  /** Runs a dump's or restore's frozen part with expedited RCU, unless turned off. */
  readonly whileFrozen: <T>(fn: () => Promise<T>) => Promise<T>;
  private readonly settleRcu: () => Promise<void>;
  /** The node's lxcfs, once startNodeServices() ran (lxcfs.ts). */
  private lxcfs: Lxcfs | undefined;

  constructor(private readonly opts: HostRuntimeOptions) {
    this.log = opts.log;
    this.vesDir = join(opts.stateDir, 'ves');
    const criu = opts.criuBinary ?? findCriu();
    this.runc = new Runc(join(opts.stateDir, 'runc'), opts.runcBinary ?? 'runc', criu);
    if (criu) void ensureKerndatCache(criu, opts.log);
    this.migration = new VEMigration(this);
    const rcu = opts.expediteRcu === false ? undefined : new ExpeditedRcu(opts.log);
    this.whileFrozen = rcu ? (fn) => rcu.during(fn) : (fn) => fn();
    this.settleRcu = () => rcu?.settle() ?? Promise.resolve();
    this.cni = new Cni(opts.cniPluginDir ?? '/usr/lib/cni');
    this.cgroup = createCgroupReader(opts.cgroupRoot ?? '/sys/fs/cgroup');
    this.usage = new UsageReader(this.cgroup);
    this.isolation = new Isolation({ vesDir: this.vesDir, helper: opts.idmapHelper ?? DEFAULT_IDMAP_HELPER, log: opts.log });
    this.templates = new TemplateCache({
      dir: join(opts.stateDir, 'templates'),
      busybox: opts.busybox ?? '/bin/busybox',
      log: opts.log,
      usedBy: (name) => this.templateUsers(name),
    });
  }

  // ---- paths ----

  veDir(uid: string): string {
    return join(this.vesDir, uid);
  }
  private configFile(uid: string): string {
    return join(this.veDir(uid), 'config.json');
  }
  private networkFile(uid: string): string {
    return join(this.veDir(uid), 'network.json');
  }
  bundleDir(uid: string): string {
    return join(this.veDir(uid), 'bundle');
  }
  /** Where CRIU writes its logs and work files for one operation ('dump', 'restore'). */
  criuWorkDir(uid: string, what: string): string {
    return join(this.veDir(uid), 'criu-work', what);
  }
  /** Where the VE's CRIU action script and the agent meet (criuActionScript: DumpMarks, NetnsHandoff). */
  handoffDir(uid: string): string {
    return join(this.veDir(uid), 'criu-handoff');
  }
  /** The `cgroup.procs` of the VE's memory cgroup (made by whoever joins first: runc, or CarriedTmpfs before a restore). */
  memoryCgroupProcs(uid: string): string {
    const root = this.opts.cgroupRoot ?? '/sys/fs/cgroup';
    return this.cgroup.version === 'v1' ? join(root, 'memory', cgroupPath(uid), 'cgroup.procs') : join(root, cgroupPath(uid), 'cgroup.procs');
  }
  /** The VE's freezer cgroup dir (v2: its one cgroup dir), and which interface it has. */
  freezer(uid: string): VEFreezer {
    const root = this.opts.cgroupRoot ?? '/sys/fs/cgroup';
    return this.cgroup.version === 'v1' ? { version: 'v1', dir: join(root, 'freezer', cgroupPath(uid)) } : { version: 'v2', dir: join(root, cgroupPath(uid)) };
  }
  /** The host dir a restored VE's /sys/fs/cgroup binds on a v1 host (CgroupfsLayout). */
  cgroupfsLayout(uid: string): CgroupfsLayout {
    return new CgroupfsLayout(join(this.veDir(uid), 'criu-cgroupfs'));
  }
  suspendCheckpoints(uid: string): SuspendCheckpoints {
    return new SuspendCheckpoints(this.veDir(uid));
  }
  /** The VE's netns and host veth names (recorded); undefined when this runtime has none for it. */
  netNames(uid: string): Promise<VENetNames | undefined> {
    return readNetNames(this.veDir(uid), uid);
  }
  get stateDir(): string {
    return this.opts.stateDir;
  }
  get busybox(): string {
    return this.opts.busybox ?? '/bin/busybox';
  }
  /** Serialises host operations on one VE (shared with the migration verbs). */
  withVE<T>(uid: string, fn: () => Promise<T>): Promise<T> {
    return this.mutex.run(uid, fn);
  }
  /** The VE's recorded isolation. */
  securityOf(uid: string) {
    return this.isolation.state(uid);
  }
  /** Decides (or reads) the VE's isolation before anything else exists: for an incoming migration. */
  resolveSecurity(config: VEConfig, log: Logger) {
    return this.isolation.resolve(config, false, log);
  }
  appliedConfig(uid: string): Promise<VEConfig | undefined> {
    return readJson<VEConfig>(this.configFile(uid));
  }
  veLogger(uid: string, name?: string): Logger {
    return this.veLog(uid, name);
  }

  private veLog(uid: string, name?: string): Logger {
    return this.log.child(name ? { ve: name, uid } : { ve: uid });
  }

  // ---- VERuntime ----

  ensureTemplate(name: string, recipe?: TemplateRecipe, opts?: EnsureTemplateOptions): Promise<TemplateInfo & { result: EnsureResult }> {
    return this.templates.ensure(name, recipe, opts);
  }

  removeTemplate(name: string): Promise<EnsureResult> {
    return this.templates.remove(name);
  }

  listTemplates(): Promise<TemplateInfo[]> {
    return this.templates.list();
  }

  /** The bundle settings of a template's init; systemd's legacy cgroup mode only where v1 is. */
  private bootProfile(init: InitProfile): BootProfile {
    return {
      env: init.env,
      stopSignal: init.stopSignal,
      ...(init.flavor === 'systemd' ? { systemd: { legacyCgroup: this.cgroup.version === 'v1' } } : {}),
    };
  }

  async ensureRunning(config: VEConfig, signal?: AbortSignal, onLimitsRestored?: (found: VELimits) => void): Promise<EnsureResult> {
    validate(config);
    const quota = config.disk?.quotaUgidLimit ?? 0;
    const qf = this.features().diskQuotaUgid;
    if (quota > 0 && !qf?.available) {
      throw new KvzError('Invalid', `second-level disk quota (quotaUgidLimit ${quota}) is not available on this node: ${qf?.reason}; set it to 0`);
    }
    return this.mutex.run(config.uid, () => this.doEnsureRunning(config, signal, onLimitsRestored));
  }

  private async doEnsureRunning(config: VEConfig, signal?: AbortSignal, onLimitsRestored?: (found: VELimits) => void): Promise<EnsureResult> {
    const { uid } = config;
    const id = containerId(uid);
    const log = this.veLog(uid, config.name);
    const applied = await readJson<VEConfig>(this.configFile(uid));
    const st = await this.runc.state(id, signal);
    // A security mode the VE was not created with is refused before anything is stopped.
    await this.isolation.check(config);

    if (st && applied && sameIdentity(applied, config) && (st.status === 'running' || st.status === 'paused')) {
      if (st.status === 'paused') {
        // A frozen VE is not "running" in the sense the spec asks for.
        await this.runc.resume(id, signal);
        log.info('VE resumed');
      }
      const grown = await growRunning(rootfsPaths(this.veDir(uid)), config.disk, this.features().diskOnlineGrow?.available ?? false, signal);
      if (grown) log.info({ sizeBytes: grown.sizeBytes, inodes: grown.inodes }, 'VE disk grown online');
      const intact = await this.networkIntact(uid);
      const asApplied = sameLimits(applied.limits, config.limits);
      // Same declared limits as applied, but the kernel holds others: changed behind our back (drift).
      const drifted = intact && asApplied ? await this.driftedLimits(uid, config.limits) : undefined;
      if (intact && asApplied && !drifted) {
        // Restart-only fields (openFiles) are recorded for the next start; the host is unchanged.
        if (!limitsEqual(applied.limits, config.limits)) await writeJsonAtomic(this.configFile(uid), config);
        return st.status === 'paused' || grown ? 'updated' : 'unchanged';
      }
      if (intact) {
        await this.applyLimits(uid, id, config.limits, signal);
        await writeJsonAtomic(this.configFile(uid), config);
        // Drift is said once: by the caller when it asked to be told, else here.
        if (drifted && onLimitsRestored) onLimitsRestored(drifted);
        else if (drifted) log.warn({ found: drifted, declared: config.limits }, 'limits were changed on the host; put back the declared ones');
        else log.info({ limits: config.limits }, 'VE limits updated live');
        return 'updated';
      }
      log.warn('VE network is incomplete; recreating the VE');
    }
    if (st) {
      // Running with another identity, or a dead/half-created container: stop and recreate.
      await this.stopAndDelete(id, RECREATE_STOP_TIMEOUT_MS, signal);
    } else {
      // `powerState: Running` after Suspended means resume: never cold-boot over a checkpoint.
      const cp = await this.suspendCheckpoints(uid).newest();
      if (cp) {
        await this.restoreSuspended(config, applied, signal);
        return 'updated';
      }
    }
    return this.bringUp(config, applied, { kind: 'boot' }, signal);
  }

  /**
   * Root fs, network, bundle, then `runc create` + `start` (boot) or `runc restore` (restore),
   * all under one Revert. The container must not exist.
   */
  async bringUp(config: VEConfig, applied: VEConfig | undefined, how: BringUp, signal?: AbortSignal): Promise<EnsureResult> {
    const { uid } = config;
    const id = containerId(uid);
    const log = this.veLog(uid, config.name);
    const existedBefore = existsSync(this.veDir(uid));
    const { timings, lap } = stopwatch();
    await Revert.run(log, async (revert) => {
      if (!existedBefore) revert.add('remove VE directory', () => rm(this.veDir(uid), { recursive: true, force: true }));
      await mkdir(this.bundleDir(uid), { recursive: true });
      // User namespace or privileged, decided once per VE; exclusive device grants checked before anything is made.
      const security = await this.isolation.resolve(config, existedBefore, log);
      const devices = await this.isolation.claimDevices(config);
      const template = await this.templates.ensure(config.template, undefined, { signal });
      // systemd manages its own cgroup tree: in a user namespace its root must own the VE's cgroup
      // dirs, between create and start, and again after a restore (CRIU makes them as host root).
      const delegate = template.init.flavor === 'systemd' && security.uidRange ? security.uidRange.hostId : undefined;
      // With a user namespace the VE's netns is made by runc (create) or CRIU (restore) inside it
      // and wired once it exists; whatever netns it had before goes.
      const ownNetns = security.uidRange !== undefined;
      const lower = await this.isolation.lower(template.rootfs, uid, security, revert, signal, { pin: ownNetns && how.kind === 'boot' });
      lap('template');

      const paths = rootfsPaths(this.veDir(uid));
      // Root fs and network are independent: set them up side by side (both push their undos).
      await allSettledOrThrow([
        (async () => {
          const disk = await ensureRootfs({
            lower,
            paths,
            disk: config.disk,
            clone: () => this.cloneDisk(config, log, signal),
            canGrowOnline: this.features().diskOnlineGrow?.available ?? false,
            rootOwner: security.uidRange?.hostId,
            revert,
            log,
            signal,
          });
          lap(`disk${disk.disk === 'unchanged' ? '' : `:${disk.disk}`}`);
          // Restored processes may hold these files open: CRIU checks them as they were dumped.
          if (how.kind === 'restore') return;
          if (disk.disk === 'cloned' && config.disk?.cloneFrom) await this.isolation.shiftClone(paths.upper, config.disk.cloneFrom, security);
          await writeIdentity(paths, config.hostname, config.addresses);
          await writeResolvConf(paths.target, config.network);
          await this.isolation.ownUpper(paths.upper, paths.target, security, ['etc', 'etc/hostname', 'etc/hosts', 'etc/resolv.conf']);
        })(),
        // A restore's new netns takes no packets until the VE's sockets are back (holdInput, or
        // for one wired ahead its host link kept down).
        ownNetns
          ? (how.kind === 'restore' && modeOf(config) === 'bridged' ? this.stageNetwork(config, revert, signal) : this.teardownNetwork(uid, signal))
          : this.ensureNetwork(config, applied, revert, signal, { holdInput: how.kind === 'restore' }).then(() => (how.kind === 'restore' ? undefined : this.wakeHostLink(uid, signal))),
      ]);
      lap('rootfsAndNetwork');

      await this.checkCpuset(config.limits);
      const names = ownNetns ? undefined : await this.netNames(uid);
      if (!ownNetns && !names) throw new KvzError('Internal', `VE ${uid} has no network names after its network was set up`);
      // runc joins the pinned user namespace on create; a restore makes it anew from the images.
      const pin = ownNetns && how.kind === 'boot' ? await this.isolation.ensureUsernsPin(uid, revert, signal) : undefined;
      const procBinds = how.kind === 'restore' ? await this.lxcfs?.restoreBinds() : await this.lxcfs?.bootBinds(log);
      const spec = buildOciSpec({
        procBinds,
        criuConfig: criuConfigPath(this.veDir(uid)),
        resourceOptions: { device: blockDeviceOf(paths.upper) },
        config,
        rootfs: paths.target,
        netnsPath: names ? netnsPath(names.netns) : undefined,
        cgroupsPath: cgroupPath(uid),
        init: template.init.command,
        boot: this.bootProfile(template.init),
        host: hostInfo(),
        userns: security.uidRange ? { path: pin, range: security.uidRange } : undefined,
        devices,
      });
      // runc's own mounts that CRIU need not archive or rebuild (systemd VEs: CRIU still does).
      const carried = template.init.flavor !== 'systemd';
      await writeCriuConfig(this.veDir(uid), template.init.flavor, {
        handoffDir: this.handoffDir(uid),
        // Bridged: its host link is the lock (down from the freeze to CRIU's network-unlock).
        ownNetworkLock: modeOf(config) === 'bridged',
        maskedPaths: MASKED_PATHS,
        ...(carried && this.cgroup.version === 'v1' ? { cgroupfs: this.cgroupfsLayout(uid) } : {}),
        ...(carried ? { tmpfs: CarriedTmpfs.fromSpec(this.veDir(uid), spec.mounts) } : {}),
      });
      await writeJsonAtomic(join(this.bundleDir(uid), 'config.json'), spec);

      revert.add('delete container', () => this.forceDelete(id));
      lap('bundle');
      // CRIU's root task at the netns handoff is the restored init (its host pid stays).
      let handoffPid: number | undefined;
      const wire = async (pid: number) => {
        handoffPid = pid;
        if (await this.adoptStagedNetwork(uid, pid, revert, signal)) return;
        await this.ensureNetwork(config, applied, revert, signal, { holdInput: how.kind === 'restore', attachPid: pid });
      };
      if (how.kind === 'restore') {
        const steps = await this.migration.runRestore(config, how.imageDir, signal, security.uidRange ? { hostGid: security.uidRange.hostId, wire } : undefined);
        lap('runcRestore');
        timings.restoreSteps = steps;
        if (ownNetns) await this.isolation.repinUserns(uid, handoffPid ?? (await this.initPid(id, signal)), signal);
        if (delegate !== undefined) await this.delegateCgroup(uid, delegate);
        lap('afterRestore');
      } else {
        await this.runc.create(id, this.bundleDir(uid), { signal });
        lap('runcCreate');
        if (ownNetns) {
          await wire(await this.initPid(id, signal));
          await this.wakeHostLink(uid, signal);
          lap('network');
        }
        if (delegate !== undefined) await this.delegateCgroup(uid, delegate);
        await this.runc.start(id, signal);
        lap('runcStart');
      }
      await writeJsonAtomic(this.configFile(uid), config);
    });
    const what = how.kind === 'restore' ? 'VE restored' : existedBefore ? 'VE started' : 'VE created and started';
    log.info({ hostname: config.hostname, addresses: config.addresses, ms: timings }, what);
    return existedBefore ? 'updated' : 'created';
  }

  // ---- suspend / resume ----

  async suspend(uid: string, signal?: AbortSignal): Promise<EnsureResult> {
    return this.mutex.run(uid, async () => {
      const id = containerId(uid);
      const st = await this.runc.state(id, signal);
      const applied = await readJson<VEConfig>(this.configFile(uid));
      const log = this.veLog(uid, applied?.name);
      if (!st || st.status === 'stopped') {
        if (!st && (await this.suspendCheckpoints(uid).newest())) return 'unchanged';
        throw new KvzError('Conflict', `VE ${applied?.name ?? uid} is not running (state ${runState(st)}); only a running VE can be suspended`);
      }
      if (st.status === 'paused') await this.runc.resume(id, signal);
      const store = this.suspendCheckpoints(uid);
      const { name, path } = await store.create();
      try {
        const res = await this.migration.dump(uid, { imageDir: path, signal }, applied?.name, st.pid);
        await store.complete({ name, path, createdAt: new Date().toISOString(), bytes: res.bytes, ms: res.ms });
        await store.prune(SUSPEND_RETENTION);
        log.info({ checkpoint: name, bytes: res.bytes, ms: res.ms }, 'VE suspended');
      } catch (err) {
        await rm(path, { recursive: true, force: true });
        throw err;
      }
      return 'updated';
    });
  }

  async resume(config: VEConfig, signal?: AbortSignal): Promise<EnsureResult> {
    validate(config);
    return this.mutex.run(config.uid, async () => {
      const st = await this.runc.state(containerId(config.uid), signal);
      if (st?.status === 'running') return 'unchanged';
      if (st?.status === 'paused') {
        await this.runc.resume(st.id, signal);
        return 'updated';
      }
      if (!(await this.suspendCheckpoints(config.uid).newest())) {
        throw new KvzError('NotFound', `VE ${config.name} has no suspend checkpoint on this node; start it instead (powerState: Running)`);
      }
      if (st) await this.deleteStopped(st.id, signal);
      await this.restoreSuspended(config, await readJson<VEConfig>(this.configFile(config.uid)), signal);
      return 'updated';
    });
  }

  /** Restores the newest suspend checkpoint; on success every suspend checkpoint is dropped (the VE has moved on). */
  private async restoreSuspended(config: VEConfig, applied: VEConfig | undefined, signal?: AbortSignal): Promise<void> {
    const store = this.suspendCheckpoints(config.uid);
    const cp = await store.newest();
    if (!cp) throw new KvzError('NotFound', `VE ${config.name} has no suspend checkpoint`);
    await this.bringUp(config, applied, { kind: 'restore', imageDir: cp.path }, signal);
    await store.removeAll();
    this.veLog(config.uid, config.name).info({ checkpoint: cp.name }, 'VE resumed from its suspend checkpoint');
  }

  async ensureStopped(uid: string, opts: StopOptions): Promise<EnsureResult> {
    return this.mutex.run(uid, async () => {
      const id = containerId(uid);
      const st = await this.runc.state(id, opts.signal);
      if (!st) {
        // A suspended VE asked to stop: its checkpoint is discarded (the next start boots).
        const dropped = await this.suspendCheckpoints(uid).removeAll();
        if (dropped) this.veLog(uid).info('suspend checkpoint discarded: VE stopped');
        return dropped ? 'updated' : 'unchanged';
      }
      const how = await this.stopAndDelete(id, opts.timeoutMs, opts.signal);
      // The usage reader's kept-open files would hold the dead VE's cgroup and netns a while longer.
      this.usage.forget(cgroupPath(uid));
      this.veLog(uid).info({ how }, 'VE stopped');
      return 'updated';
    });
  }

  async updateLimits(uid: string, limits: VELimits, signal?: AbortSignal): Promise<EnsureResult> {
    return this.mutex.run(uid, async () => {
      const applied = await readJson<VEConfig>(this.configFile(uid));
      if (!applied) throw new KvzError('NotFound', `VE ${uid} has no state on this node`);
      const id = containerId(uid);
      const st = await this.runc.state(id, signal);
      const live = st !== undefined && st.status !== 'stopped';
      let liveChanged = !sameLimits(applied.limits, limits);
      if (live && !liveChanged) liveChanged = (await this.driftedLimits(uid, limits)) !== undefined;
      const changed = liveChanged || !limitsEqual(applied.limits, limits);
      if (!changed) return 'unchanged';
      if (live && liveChanged) await this.applyLimits(uid, id, limits, signal);
      await writeJsonAtomic(this.configFile(uid), { ...applied, limits });
      this.veLog(uid, applied.name).info({ limits, live }, live ? 'VE limits updated live' : 'VE limits recorded for next start');
      return 'updated';
    });
  }

  async destroy(uid: string, opts: StopOptions): Promise<EnsureResult> {
    return this.mutex.run(uid, async () => {
      const id = containerId(uid);
      const dir = this.veDir(uid);
      const st = await this.runc.state(id, opts.signal);
      const cgroupLeft = await this.cgroup.exists(cgroupPath(uid));
      const anything = st !== undefined || existsSync(dir) || cgroupLeft;
      if (!anything) return 'unchanged';
      const { timings, lap } = stopwatch();
      if (st) await this.stopAndDelete(id, opts.timeoutMs, opts.signal);
      this.usage.forget(cgroupPath(uid));
      await this.removeCgroup(uid);
      lap('stop');
      await this.teardownNetwork(uid, opts.signal);
      lap('network');
      const paths = rootfsPaths(dir);
      await unmountRootfs(paths, opts.signal);
      for (const m of (await mountsUnder(dir)).reverse()) await unmountRootfs({ ...paths, target: m }, opts.signal);
      await removeRootfs(paths, opts.signal);
      await rm(dir, { recursive: true, force: true });
      lap('rootfs');
      this.veLog(uid).info({ ms: timings }, 'VE destroyed');
      return 'deleted';
    });
  }

  async inspect(uid: string): Promise<VEHostState> {
    const id = containerId(uid);
    const names = await this.netNames(uid);
    const [config, st, addresses, mounted, suspended] = await Promise.all([
      readJson<VEConfig>(this.configFile(uid)),
      this.runc.state(id),
      names ? netnsAddresses(names.netns) : Promise.resolve([]),
      isMounted(rootfsPaths(this.veDir(uid)).target),
      this.suspendCheckpoints(uid).newest(),
    ]);
    const state = !st && suspended ? 'suspended' : runState(st);
    const out: VEHostState = {
      uid,
      state,
      addresses,
      prepared: mounted && names !== undefined && netnsExists(names.netns) && existsSync(join(this.bundleDir(uid), 'config.json')),
    };
    if (st && st.pid > 0 && state !== 'stopped') out.pid = st.pid;
    if (config) out.config = config;
    const security = await this.isolation.state(uid);
    if (security) out.security = security;
    return out;
  }

  async list(): Promise<VEHostState[]> {
    const entries = await readdir(this.vesDir, { withFileTypes: true }).catch(() => []);
    const uids = new Set(entries.filter((e) => e.isDirectory()).map((e) => e.name));
    // Containers in our runc root without a VE directory are leftovers: report them too.
    for (const c of await this.runc.list()) {
      const uid = c.annotations?.['io.kubevz.uid'];
      if (uid && containerId(uid) === c.id) uids.add(uid);
    }
    return Promise.all([...uids].sort().map((uid) => this.inspect(uid)));
  }

  async exec(uid: string, argv: string[], opts: ExecOptions): Promise<number> {
    const id = containerId(uid);
    const st = await this.runc.state(id);
    if (st?.status !== 'running') {
      throw new KvzError('Conflict', `VE ${uid} is not running (state ${runState(st)}); start it first`);
    }
    if (argv.length === 0) throw new KvzError('Invalid', 'exec needs a command');
    return this.runc.exec(id, argv, {
      tty: opts.tty,
      env: opts.env,
      cwd: opts.cwd,
      stdin: opts.stdin,
      stdout: opts.stdout,
      stderr: opts.stderr,
      signal: opts.signal,
    });
  }

  /** The cgroup's limits, plus openFiles as the running init has it (/proc/PID/limits). */
  async readLimits(uid: string): Promise<VELimits> {
    const limits = await this.cgroup.readLimits(cgroupPath(uid), { device: this.veDevice(uid) });
    const st = await this.runc.state(containerId(uid)).catch(() => undefined);
    if (st && st.pid > 0 && st.status !== 'stopped') {
      const text = await readFile(`/proc/${st.pid}/limits`, 'utf8').catch(() => '');
      const m = /^Max open files\s+(\d+)/m.exec(text);
      if (m) limits.openFiles = Number(m[1]);
    }
    return limits;
  }

  async readUsage(uid: string, pid?: number): Promise<VEUsage> {
    let initPid = pid;
    if (initPid === undefined) {
      const st = await this.runc.state(containerId(uid));
      if (st && st.pid > 0 && st.status !== 'stopped') initPid = st.pid;
    }
    return this.usage.read({ cgroupPath: cgroupPath(uid), pid: initPid });
  }

  diskUsage(uid: string): Promise<VEDiskUsage | undefined> {
    return diskUsageOf(rootfsPaths(this.veDir(uid)).disk);
  }

  async nodeFeatures(): Promise<Record<string, NodeFeature>> {
    return { ...this.features(), lxcfs: this.lxcfs?.feature() ?? { available: false, reason: 'lxcfs is not started on this node (the node agent starts it)' } };
  }

  // ---- node services (lxcfs) ----

  /** Starts or adopts the node's lxcfs and supervises it; VEs started from now on get its /proc files. Never fails: VEs run without it. */
  async startNodeServices(): Promise<void> {
    // An agent that died during a dump or restore may have left expedited RCU on.
    await this.settleRcu();
    this.lxcfs ??= new Lxcfs({
      stateDir: this.opts.stateDir,
      helper: this.opts.idmapHelper ?? DEFAULT_IDMAP_HELPER,
      binary: this.opts.lxcfs?.binary,
      checkMs: this.opts.lxcfs?.checkMs,
      log: this.log,
      eachRunningVE: (fn) => this.eachRunningVE(fn),
    });
    await this.lxcfs.start();
  }

  /** Stops supervising; lxcfs keeps serving running VEs (teardownNode with stateDir ends it). */
  releaseNodeServices(): void {
    void this.lxcfs?.release();
  }

  /** The node's lxcfs supervisor (tests: its pid). */
  get lxcfsSupervisor(): Lxcfs | undefined {
    return this.lxcfs;
  }

  /**
   * fn(uid, init pid) for each running or paused VE of this runtime (one `runc list`), under the
   * VE's lock, a few at a time (one VE busy in a long operation does not hold up the others).
   */
  private async eachRunningVE(fn: (uid: string, pid: number) => Promise<void>): Promise<void> {
    const todo = (await this.runc.list())
      .filter((c) => c.pid > 0 && (c.status === 'running' || c.status === 'paused') && c.annotations?.['io.kubevz.uid'])
      .map((c) => ({ uid: c.annotations!['io.kubevz.uid']!, pid: c.pid }));
    const worker = async () => {
      for (let ve = todo.shift(); ve; ve = todo.shift()) {
        const { uid, pid } = ve;
        // Stopped or restarted meanwhile: a new start has its binds fresh from the bundle.
        await this.mutex.run(uid, async () => (pidGone(pid) ? undefined : fn(uid, pid)));
      }
    };
    await Promise.all(Array.from({ length: 8 }, worker));
  }

  private featureCache: Record<string, NodeFeature> | undefined;

  /** Detected once per process: capabilities and kernel config do not change under a running agent. */
  private features(): Record<string, NodeFeature> {
    this.featureCache ??= {
      diskOnlineGrow: onlineGrowFeature(),
      diskQuotaUgid: quotaFeature(),
      userNamespace: this.isolation.feature(),
      checkpoint: checkpointFeature(this.runc.criu),
    };
    return this.featureCache;
  }

  /** Seeds a new VE's disk from another VE on this node (runs inside ensureRunning's Revert). */
  private async cloneDisk(config: VEConfig, log: Logger, signal?: AbortSignal): Promise<void> {
    const src = config.disk?.cloneFrom;
    if (!src) throw new KvzError('Internal', 'cloneDisk without disk.cloneFrom');
    if (src === config.uid) throw new KvzError('Invalid', 'a VE cannot be cloned from itself');
    const srcConfig = await readJson<VEConfig>(this.configFile(src));
    const srcPaths = rootfsPaths(this.veDir(src)).disk;
    const srcDisk = await readDiskRecord(srcPaths);
    if (!srcConfig || !srcDisk) {
      throw new KvzError('NotFound', `clone source ${src} has no disk on this node; clone from a VE that was created on this node`);
    }
    if (srcConfig.template !== config.template) {
      throw new KvzError('Invalid', `clone source ${srcConfig.name} uses template ${srcConfig.template}, not ${config.template}: its disk is an overlay upper layer that only fits its own template`);
    }
    const want = roundToBlock(config.disk?.sizeBytes ?? DEFAULT_DISK_BYTES);
    if (want < srcDisk.sizeBytes) {
      throw new KvzError('Invalid', `the clone's disk (${want} bytes) is smaller than its source's (${srcDisk.sizeBytes} bytes ${srcConfig.name}); disks cannot shrink: ask for at least the source's size`);
    }
    // The source's own operations wait for the copy (and the copy for them).
    const res = await this.mutex.run(src, () =>
      cloneImage({ src: srcPaths, srcContainer: containerId(src), dst: rootfsPaths(this.veDir(config.uid)).disk, runc: this.runc, log, signal }),
    );
    log.info({ source: srcConfig.name, sourceUid: src, ...res }, 'VE disk cloned');
  }

  // ---- steps ----

  /** The limits the kernel holds when they are not these (changed behind our back); undefined when the same or unreadable. */
  private async driftedLimits(uid: string, limits: VELimits): Promise<VELimits | undefined> {
    try {
      const held = await this.cgroup.readLimits(cgroupPath(uid), { device: this.veDevice(uid) });
      return sameLimits(held, limits) ? undefined : held;
    } catch {
      return undefined;
    }
  }

  /** The block device holding the VE's writable layer (where its I/O goes), if it has one. */
  private veDevice(uid: string): BlockDevice | undefined {
    return blockDeviceOf(rootfsPaths(this.veDir(uid)).upper);
  }

  /** A cpuset naming CPUs the host does not offer fails clearly here rather than as a runc write error. */
  private async checkCpuset(limits: VELimits): Promise<string | undefined> {
    const all = await this.cgroup.allCpus().catch(() => undefined);
    if (limits.cpuset === undefined || all === undefined) return all;
    const have = new Set(parseCpuset(all));
    const missing = parseCpuset(limits.cpuset).filter((c) => !have.has(c));
    if (missing.length) throw new KvzError('Invalid', `cpuset ${limits.cpuset} names CPUs ${missing.join(',')} this host does not offer (available: ${all})`);
    return all;
  }

  /**
   * runc update for what it can change live (memory, swap, soft limit, shares, quota, cpuset,
   * pids, I/O weight), then the block I/O throttles written to the cgroup directly (runc 1.1.5
   * update ignores them).
   */
  private async applyLimits(uid: string, id: string, limits: VELimits, signal?: AbortSignal): Promise<void> {
    const allCpus = await this.checkCpuset(limits);
    await this.runc.update(id, runcUpdateJson(limits, { allCpus }), signal);
    const device = this.veDevice(uid);
    const throttled = Boolean(limits.readBps || limits.writeBps || limits.readIops || limits.writeIops);
    if (device) await this.cgroup.setIoThrottle(cgroupPath(uid), device, limits);
    else if (throttled) this.veLog(uid).warn('I/O throttles requested but the VE\'s files are on no block device; not applied');
    // Keep the bundle in step, so a later recreate from it starts with the same limits.
    const bundleConfig = join(this.bundleDir(uid), 'config.json');
    const spec = await readJson<{ linux: { resources: Record<string, unknown> } }>(bundleConfig);
    if (spec) {
      spec.linux.resources = { ...spec.linux.resources, ...ociResources(limits, { device }) };
      await writeJsonAtomic(bundleConfig, spec);
    }
  }


  /**
   * SIGTERM to init, wait for it to exit (polling its host pid, cheap), SIGKILL after the
   * timeout, then `runc delete` once stopped — not `delete -f`, whose internal poll costs 100 ms.
   */
  private async stopAndDelete(id: string, timeoutMs: number, signal?: AbortSignal): Promise<'none' | 'graceful' | 'killed'> {
    const st = await this.runc.state(id, signal);
    if (!st) return 'none';
    let how: 'none' | 'graceful' | 'killed' = 'none';
    if (st.status === 'paused') await this.runc.resume(id, signal);
    if (st.status === 'running' || st.status === 'paused') {
      // The template's init decides how it is asked to shut down (systemd 37, sysvinit PWR).
      await this.runc.kill(id, st.annotations?.[STOP_SIGNAL_ANNOTATION] ?? 'TERM', signal);
      how = (await this.waitExit(st.pid, timeoutMs, signal)) ? 'graceful' : 'killed';
    }
    if (st.status !== 'stopped' && how !== 'graceful') {
      await this.runc.kill(id, 'KILL', signal);
      if (st.pid > 0 && !(await this.waitExit(st.pid, 10_000, signal))) {
        throw new KvzError('Unavailable', `container ${id} (pid ${st.pid}) did not die after SIGKILL`);
      }
      if (how === 'none') how = 'killed';
    }
    await this.deleteStopped(id, signal);
    return how;
  }

  private async waitExit(pid: number, timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    if (pid <= 0) return true;
    const deadline = Date.now() + timeoutMs;
    for (let delay = 2; ; delay = Math.min(delay * 2, 20)) {
      if (pidGone(pid)) return true;
      if (Date.now() >= deadline) return false;
      await sleep(delay, signal);
    }
  }

  /** `runc delete`, retried briefly: runc may not have noticed the exit yet. */
  async deleteStopped(id: string, signal?: AbortSignal): Promise<void> {
    for (let i = 0; ; i++) {
      try {
        await this.runc.delete(id, signal);
        return;
      } catch (err) {
        if (i >= 20) throw err;
        await sleep(10, signal);
      }
    }
  }

  /** For reverts: kill and delete whatever state the container is in. */
  private async forceDelete(id: string): Promise<void> {
    const st = await this.runc.state(id);
    if (!st) return;
    if (st.status !== 'stopped') {
      await this.runc.kill(id, 'KILL');
      await this.waitExit(st.pid, 5_000);
    }
    await this.deleteStopped(id);
  }

  /**
   * After a dump the VE's netns still holds its addresses and MAC: on a shared LAN it would answer
   * ARP and steal the VE's traffic from the node it was restored on. Its host veth goes down
   * (bridged mode; routed mode's host routes would go with it) until a restore brings it up.
   */
  async setHostLink(uid: string, up: boolean, signal?: AbortSignal): Promise<void> {
    if (up) return this.openNetwork(uid, signal);
    const link = await this.markHostLinkDown(uid);
    if (link) await run('ip', ['link', 'set', 'dev', link, 'down'], { signal });
  }

  /**
   * Lets the VE's network take packets again (after a dump, or at the end of a restore): its host
   * end up — moved from the parking bridge to the node bridge first when it was wired ahead — and
   * a restore's input hold removed. Side by side: both sit on a migration's downtime.
   */
  async openNetwork(uid: string, signal?: AbortSignal, o: { linkOpened?: boolean } = {}): Promise<void> {
    const stored = await this.storedNetwork(uid);
    if (!stored) return;
    const names = stored.inputHeld ? await this.netNames(uid) : undefined;
    const link = o.linkOpened ? undefined : bridgedHostVeth(stored);
    await Promise.all([
      link ? run('ip', ['link', 'set', 'dev', link, ...(stored.parked ? ['master', stored.parked] : []), 'up'], { signal }) : undefined,
      names ? releaseInput(netnsPath(names.netns), signal) : undefined,
    ]);
    if (stored.parked || stored.inputHeld) {
      const { parked, inputHeld, ...open } = stored;
      await writeJsonAtomic(this.networkFile(uid), open satisfies StoredNetwork);
    }
    await rm(join(this.veDir(uid), 'link-down'), { force: true });
  }

  /** The host end of a bridged VE's veth (what a dump takes off the LAN), if it exists. */
  private async hostLink(uid: string): Promise<string | undefined> {
    return bridgedHostVeth(await this.storedNetwork(uid));
  }

  /** The VE's network record (what ensureNetwork wired), if there is one. */
  private storedNetwork(uid: string): Promise<StoredNetwork | undefined> {
    return readJson<StoredNetwork>(this.networkFile(uid)).catch(() => undefined);
  }

  /**
   * The host link that is about to go down (by setHostLink, or by the action script at the freeze),
   * marked so that a later cold boot (a suspended VE stopped, then started) finds it down.
   */
  async markHostLinkDown(uid: string): Promise<string | undefined> {
    const link = await this.hostLink(uid);
    if (link) await writeFile(join(this.veDir(uid), 'link-down'), '');
    return link;
  }

  /**
   * Hands the VE's cgroup tree to its root (host id `owner`): every directory and file under the
   * VE's cgroup in the hierarchies systemd writes — `name=systemd` and `unified` on v1, the one
   * tree on v2. Controllers' limits stay the host's: on v1 those are other hierarchies; on v2 the
   * limit files of the VE's own cgroup directory stay root's.
   */
  private async delegateCgroup(uid: string, owner: number): Promise<void> {
    const root = this.opts.cgroupRoot ?? '/sys/fs/cgroup';
    const tops = this.cgroup.version === 'v1'
      ? [join(root, 'systemd', cgroupPath(uid)), join(root, 'unified', cgroupPath(uid))]
      : [join(root, cgroupPath(uid))];
    const delegated = /^(cgroup\.(procs|threads|subtree_control)|tasks|notify_on_release|cgroup\.clone_children)$/;
    const walk = async (dir: string, top: boolean): Promise<void> => {
      await chown(dir, owner, owner);
      for (const e of await readdir(dir, { withFileTypes: true })) {
        const p = join(dir, e.name);
        if (e.isDirectory()) await walk(p, false);
        else if (!top || this.cgroup.version === 'v1' || delegated.test(e.name)) await chown(p, owner, owner).catch(() => undefined);
      }
    };
    for (const t of tops) if (existsSync(t)) await walk(t, true);
  }

  /** The host pid of a container's init (created or restored). */
  private async initPid(id: string, signal?: AbortSignal): Promise<number> {
    const st = await this.runc.state(id, signal);
    if (!st || st.pid <= 0) throw new KvzError('Internal', `container ${id} has no init process (state ${runState(st)})`);
    return st.pid;
  }

  /**
   * Migration target, under the VE's lock, once the incoming disk is mounted (mountIncomingDisk):
   * the VE's root fs on it as bringUp mounts it — the template's lower (id-mapped for a VE with a
   * user namespace) and the overlay — so the restore finds it ready rather than mounting it on the
   * downtime. A failure undoes its mounts; destroy (abortIncoming) undoes the rest.
   */
  async mountIncomingRootfs(uid: string, signal?: AbortSignal, opts: { withDisk?: boolean } = {}): Promise<void> {
    const config = await this.appliedConfig(uid);
    if (!config) throw new KvzError('NotFound', `VE ${uid} has no config on this node: prepare it as incoming first`);
    const log = this.veLog(uid, config.name);
    await Revert.run(log, async (revert) => {
      const security = await this.isolation.resolve(config, true, log);
      const template = await this.templates.ensure(config.template, undefined, { signal });
      const lower = await this.isolation.lower(template.rootfs, uid, security, revert, signal);
      const paths = rootfsPaths(this.veDir(uid));
      if (opts.withDisk) await mountDiskAndRootfs(lower, paths, signal);
      else if (await mountRootfs(lower, paths, signal)) revert.add('unmount rootfs', () => unmountRootfs(paths));
    });
  }

  /**
   * Migration target (VEMigration.prepareRestoreNetwork), while the source still runs the VE: its
   * netns wired now with the host end parked (down, on the parking bridge: parkingBridgeName), so
   * the restore's bringUp finds it intact and skips it and openNetwork only moves the host end —
   * or, for a VE whose restore makes its own netns (user namespace), its interface staged
   * (stageNetwork). Undone on failure.
   */
  async prepareRestoreNetwork(config: VEConfig, signal?: AbortSignal): Promise<void> {
    const own = config.security?.uidRange !== undefined || (await this.securityOf(config.uid))?.uidRange !== undefined;
    if (own && modeOf(config) !== 'bridged') return;
    await this.mutex.run(config.uid, () => Revert.run(this.veLog(config.uid, config.name), async (revert) => {
      if (own) await this.stageNetwork(config, revert, signal);
      else await this.ensureNetwork(config, await this.appliedConfig(config.uid), revert, signal, { ahead: true });
    }));
  }

  /**
   * Before the restore of a bridged VE that makes its own netns (user namespace): CNI wires the
   * VE's eth0 into a staging netns of the agent's, its host end parked, so that at CRIU's
   * setup-namespaces only two `ip`s move it into the new netns and put its addresses and routes
   * back (adoptStagedNetwork) — the bridge plugin (a Go binary) was a third of the restore there.
   * Kept when already staged for this config.
   */
  private async stageNetwork(config: VEConfig, revert: Revert, signal?: AbortSignal): Promise<void> {
    const stored = await this.storedNetwork(config.uid);
    if (stored?.staged && netnsExists(stored.staged) && linkExists(stored.hostVeth) && stored.addresses.join(',') === config.addresses.join(',')) return;
    await this.teardownNetwork(config.uid, signal);
    await this.ensureNetwork(config, undefined, revert, signal, { stage: true });
  }

  /**
   * Moves a staged eth0 (stageNetwork) into the netns of the restoring VE's first task, pinned
   * under the VE's netns name, with its addresses (IPv6 without DAD: they were the VE's already)
   * and routes from the CNI result. The host link stays down until the restore releases it.
   * False when nothing is staged.
   */
  private async adoptStagedNetwork(uid: string, pid: number, revert: Revert, signal?: AbortSignal): Promise<boolean> {
    const stored = await this.storedNetwork(uid);
    const names = await this.netNames(uid);
    if (!stored?.staged || !names || !netnsExists(stored.staged)) return false;
    const target = `/proc/${pid}/ns/net`;
    const pin = this.isolation.addNetns(uid, names.netns, signal, pid);
    revert.add('delete netns', () => deleteNetns(names.netns));
    // One child for both steps: spawning from the agent costs more than sh's own forks, here on the downtime's path.
    const moved = run('sh', ['-c', 'ip -n "$1" link set dev "$2" netns "$3" && exec nsenter --net="$4" ip -batch -', 'sh', stored.staged, CNI_IFNAME, String(pid), target], {
      input: restoreIfaceBatch(stored.result, CNI_IFNAME),
      signal,
    });
    await allSettledOrThrow([pin, moved]);
    const { staged, ...network } = stored;
    for (const i of network.result.interfaces ?? []) if (i.sandbox) i.sandbox = netnsPath(names.netns);
    await writeJsonAtomic(this.networkFile(uid), network satisfies StoredNetwork);
    // Empty now; its deletion need not hold up the restore (nothing refers to it any more).
    void deleteNetns(staged).catch((err: unknown) => this.veLog(uid).warn({ netns: staged, err: errorMessage(err) }, 'could not delete the staging netns'));
    return true;
  }

  /** The node bridge, looked up with `ip` until it is known to be ours: then it stays ours while it exists. */
  private async bridgeAttachment(signal?: AbortSignal): Promise<NodeBridgeAttachment> {
    if (this.ownBridge && linkExists(this.ownBridge.name)) return this.ownBridge;
    const attach = await nodeBridgeAttachment({ ...this.opts.bridge, signal });
    this.ownBridge = attach.managed && attach.exists ? attach : undefined;
    return attach;
  }

  /** What CNI put in the VE's netns (its recorded ADD result). */
  async cniResult(uid: string): Promise<CniResult | undefined> {
    return (await this.storedNetwork(uid))?.result;
  }

  /** The host link a restore opens at CRIU's network-unlock (NetworkUnlock): a parked one, or one a dump took down. */
  async linkToOpen(uid: string): Promise<{ link: string; master?: string } | undefined> {
    const stored = await this.storedNetwork(uid);
    const link = bridgedHostVeth(stored);
    if (!link) return undefined;
    if (stored?.parked) return { link, master: stored.parked };
    return existsSync(join(this.veDir(uid), 'link-down')) ? { link } : undefined;
  }

  /** A boot over a network left down by a dump, or wired ahead of a restore, opens it. */
  private async wakeHostLink(uid: string, signal?: AbortSignal): Promise<void> {
    if (existsSync(join(this.veDir(uid), 'link-down'))) return this.openNetwork(uid, signal);
    const stored = await this.storedNetwork(uid);
    if (stored?.parked || stored?.inputHeld) await this.openNetwork(uid, signal);
  }


  private async networkIntact(uid: string): Promise<boolean> {
    // Routed mode keeps the ptp plugin's host veth name (renaming needs the link down, which drops its routes).
    const stored = await this.storedNetwork(uid);
    const names = await this.netNames(uid);
    return names !== undefined && netnsExists(names.netns) && stored !== undefined && linkExists(stored.hostVeth);
  }

  /**
   * The VE's netns wired to the node bridge. Reused when it is complete and has the same
   * addresses; anything partial (crash half-way) is torn down and redone.
   */
  private async ensureNetwork(config: VEConfig, applied: VEConfig | undefined, revert: Revert, signal?: AbortSignal, opts: { holdInput?: boolean; attachPid?: number; stage?: boolean; ahead?: boolean } = {}): Promise<void> {
    const { uid } = config;
    const stored = await readJson<StoredNetwork>(this.networkFile(uid));
    const reusable = opts.attachPid === undefined && stored && (await this.networkIntact(uid));
    if (reusable && stored.addresses.join(',') === config.addresses.join(',') && (stored.mode ?? 'bridged') === modeOf(config)) {
      if (!this.guarded.has(uid)) await this.guardHostVeth(config, stored.hostVeth, stored.mode ?? 'bridged', signal);
      return;
    }
    if (applied || stored || (await this.netNames(uid))) await this.teardownNetwork(uid, signal);
    // Names chosen (and recorded) now: another runtime on this host may hold the primary ones.
    const { netns: ns, veth } = await chooseNetNames(this.veDir(uid), uid, this.opts.stateDir);

    // attachPid: the netns of the VE's first task (made by runc or CRIU). It is pinned under the
    // name while the plugins wire it through its /proc path, side by side: this is on a boot's and
    // a restore's critical path. Without it the agent makes the netns first.
    // A staging netns (stageNetwork) is the agent's own, even for a VE with a user namespace.
    const stage = opts.stage ? `${ns}-stage` : undefined;
    const pin = stage ? addNetns(stage, signal) : this.isolation.addNetns(uid, ns, signal, opts.attachPid);
    revert.add('delete netns', () => deleteNetns(stage ?? ns));
    if (opts.attachPid === undefined) await pin;
    const path = opts.attachPid === undefined ? netnsPath(stage ?? ns) : `/proc/${opts.attachPid}/ns/net`;
    const mode = modeOf(config);
    revert.add('delete veth', () => deleteLink(veth));
    // Wired ahead of a restore (the source may still run the VE): the host end stays down, and on
    // the parking bridge, where the plugin's gratuitous ARP reaches nobody, when the node bridge exists.
    const ahead = opts.ahead || stage !== undefined;
    const held = opts.holdInput && !ahead;
    let parked: string | undefined;
    const wire = async (): Promise<{ result: CniResult; hostIf: NonNullable<CniResult['interfaces']>[number] }> => {
      if (held) await holdInput(path, signal);
      const id = containerId(uid);
      // Routed VEs touch no bridge: the attachment is looked at only for bridged ones.
      const attach = mode === 'bridged' ? await this.bridgeAttachment(signal) : undefined;
      const park = ahead && attach?.exists ? parkingBridgeName(attach.name) : undefined;
      const newPark = park !== undefined && !linkExists(park);
      const netConfig = networkConfig(mode, {
        bridge: park ?? this.opts.bridge.name, subnet: this.opts.bridge.subnet, subnet6: this.opts.bridge.subnet6,
        gateway: attach?.gateway, isGateway: park ? false : attach?.isGateway, addresses: config.addresses, mac: macAddress(uid),
      });
      // lo and eth0 do not depend on each other. lo needs one `ip` (CNI's loopback plugin is a Go
      // binary of ~25–40 ms CPU; on the create's critical path, beside the bridge plugin).
      const [, result] = await allSettledOrThrow([
        run('nsenter', [`--net=${path}`, 'ip', 'link', 'set', 'dev', 'lo', 'up'], { signal }).then(() => undefined),
        this.cni.invoke({ command: 'ADD', containerId: id, netns: path, ifname: CNI_IFNAME, config: netConfig }, signal),
      ]);
      if (!result) throw new KvzError('Internal', `CNI ${mode} ADD returned no result`);
      // An existing bridge (not ours) is only plugged into; one that is absent the plugin created: tag it as ours.
      if (attach && !attach.exists) {
        await markBridgeManaged(attach.name, signal);
        this.ownBridge = { ...attach, exists: true };
      }
      if (newPark) await markBridgeManaged(park, signal);
      const hostIf = result.interfaces?.find((i) => !i.sandbox && i.name !== this.opts.bridge.name && i.name !== park);
      if (!hostIf) throw new KvzError('Internal', `CNI ${mode} ADD result has no host veth: ${JSON.stringify(result)}`);
      if (mode === 'bridged' && hostIf.name !== veth) {
        // The bridge plugin names the host end at random; give it the VE's stable name.
        await renameLink(hostIf.name, veth, signal, { leaveDown: ahead });
        hostIf.name = veth;
      } else if (ahead) {
        await run('ip', ['link', 'set', 'dev', hostIf.name, 'down'], { signal });
      }
      // Recorded by its pinned name: the /proc path ends with the task; as on the node bridge it will be on.
      for (const i of result.interfaces ?? []) {
        if (i.sandbox) i.sandbox = netnsPath(stage ?? ns);
        if (park && attach && i.name === park) i.name = attach.name;
      }
      if (park && attach) parked = attach.name;
      return { result, hostIf };
    };
    // The host end is guarded (antispoof.ts) before the VE runs; the rules follow the name, so a
    // bridged veth is guarded under its final name while CNI makes it.
    revert.add('unguard veth', () => unguardVeth(veth));
    const [, { result, hostIf }] = await allSettledOrThrow([pin, wire(), mode === 'bridged' ? this.guardHostVeth(config, veth, mode, signal) : Promise.resolve()]);
    if (mode === 'routed') {
      // Undo on failure: the ptp veth has the plugin's name, not ours.
      const ptpVeth = hostIf.name;
      revert.add('delete ptp veth', () => deleteLink(ptpVeth));
      revert.add('unguard ptp veth', () => unguardVeth(ptpVeth));
      // ptp ignores runtimeConfig.mac; a veth takes a new MAC while up, routes stay.
      const { extras } = routedPlan({ subnet: this.opts.bridge.subnet, subnet6: this.opts.bridge.subnet6, addresses: config.addresses, mac: macAddress(uid) });
      await Promise.all([
        this.guardHostVeth(config, ptpVeth, mode, signal),
        setLinkAddress(ns, CNI_IFNAME, macAddress(uid), signal).then(() => addRoutedAddresses({ netns: ns, ifname: CNI_IFNAME, hostVeth: ptpVeth, extras, signal })),
      ]);
      const inner = result.interfaces?.find((i) => i.sandbox);
      if (inner) inner.mac = macAddress(uid);
    }
    await writeJsonAtomic(this.networkFile(uid), {
      addresses: config.addresses, mode, hostVeth: hostIf.name, result, ...(stage ? { staged: stage } : {}), ...(parked ? { parked } : {}), ...(held ? { inputHeld: true } : {}),
    } satisfies StoredNetwork);
  }

  /** Only the VE's own MAC and declared addresses may enter from its host veth (antispoof.ts). */
  private async guardHostVeth(config: VEConfig, hostVeth: string, mode: NetworkMode, signal?: AbortSignal): Promise<void> {
    await guardVeth({ hostVeth, mac: macAddress(config.uid), addresses: config.addresses, mode, signal });
    this.guarded.add(config.uid);
  }

  /** CNI DEL (with the stored ADD result), the host veth deleted synchronously, then the netns. */
  async teardownNetwork(uid: string, signal?: AbortSignal): Promise<void> {
    const names = await this.netNames(uid);
    const stored = await readJson<StoredNetwork>(this.networkFile(uid));
    // Nothing recorded: nothing of ours (the primary names may be another runtime's).
    if (!names) return;
    const ns = stored?.staged ?? names.netns;
    if (stored?.staged) await deleteNetns(names.netns, signal);
    if (netnsExists(ns)) {
      const netConfig = stored?.mode === 'routed'
        ? networkConfig('routed', { bridge: this.opts.bridge.name, subnet: this.opts.bridge.subnet, subnet6: this.opts.bridge.subnet6, addresses: [], mac: macAddress(uid) })
        : bridgeConfig({ bridge: this.opts.bridge.name, subnet: this.opts.bridge.subnet, gateway: this.opts.bridge.gateway, addresses: [], mac: macAddress(uid) });
      try {
        await this.cni.invoke(
          { command: 'DEL', containerId: containerId(uid), netns: netnsPath(ns), ifname: CNI_IFNAME, config: netConfig, prevResult: stored?.result },
          signal,
        );
      } catch (err) {
        // DEL must not block clean-up; what it would remove is removed below anyway.
        this.veLog(uid).warn({ err: (err as Error).message }, 'CNI DEL failed; removing links directly');
      }
    }
    await deleteLink(names.veth, signal);
    if (stored?.hostVeth && stored.hostVeth !== names.veth) await deleteLink(stored.hostVeth, signal);
    // After the links: a link never exists without its guard.
    await unguardVeth(stored?.hostVeth && stored.hostVeth !== names.veth ? [names.veth, stored.hostVeth] : names.veth, signal);
    this.guarded.delete(uid);
    await deleteNetns(ns, signal);
    await rm(this.networkFile(uid), { force: true });
  }

  private async removeCgroup(uid: string): Promise<void> {
    if (this.cgroup.version !== 'v1') return;
    const root = this.opts.cgroupRoot ?? '/sys/fs/cgroup';
    for (const c of V1_CONTROLLERS) {
      await rmdir(join(root, c, cgroupPath(uid))).catch(() => undefined);
    }
  }

  /** VEs (namespace/name) on this node whose root is mounted from the template. */
  private async templateUsers(name: string): Promise<string[]> {
    const entries = await readdir(this.vesDir, { withFileTypes: true }).catch(() => []);
    const users: string[] = [];
    for (const e of entries) {
      const c = await readJson<VEConfig>(join(this.vesDir, e.name, 'config.json')).catch(() => undefined);
      if (c?.template === name && (await isMounted(rootfsPaths(this.veDir(e.name)).target))) users.push(c.name);
    }
    return users;
  }
}

/**
 * Removes node-level network objects the runtime made (the bridge, only when kubevz created it:
 * an existing bridge the VEs were attached to stays), the empty cgroup parent and, given the
 * runtime's stateDir, the node's lxcfs (lxcfs.ts: its mount and process). For tests and
 * node decommissioning; VEs must be destroyed first.
 */
export async function teardownNode(opts: { bridge: string; cgroupRoot?: string; signal?: AbortSignal; stateDir?: string }): Promise<void> {
  // The node's lxcfs (when stateDir is given): it outlives agent restarts, only a teardown ends it.
  if (opts.stateDir) await Promise.all([stopNodeServices({ stateDir: opts.stateDir }), removeMigrationScratch(opts.stateDir)]);
  await deleteManagedBridge(opts.bridge, opts.signal);
  await deleteManagedBridge(parkingBridgeName(opts.bridge), opts.signal);
  // Only empty ones: another runtime of this netns may still guard its VEs.
  await removeAntispoofTables({ signal: opts.signal });
  await removeKerndatCache();
  const root = opts.cgroupRoot ?? '/sys/fs/cgroup';
  for (const c of V1_CONTROLLERS) {
    await rmdir(join(root, c, 'kubevz')).catch(() => undefined);
  }
}

