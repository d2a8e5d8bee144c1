// Leader election with a coordination.k8s.io/v1 Lease, after client-go's leaderelection
// package: so that of several controller processes exactly one acts at a time.
// Guarantees, as client-go's: a candidate takes the lease only after it has seen the same
// record unchanged for leaseDuration on its *own* clock (renewTime is never trusted, so clock
// skew between hosts does not matter); writes are conditional on resourceVersion, so two
// candidates cannot both win; a leader that cannot renew within renewDeadline stops leading
// (before anyone else may take over, since renewDeadline < leaseDuration). Caveat: the
// callback must really stop acting when its signal aborts; `kvz controller` exits.

import * as k8s from '@kubernetes/client-node';
import { errorMessage, KvzError } from './errors.js';
import { toKvzError } from './kube-client.js';
import type { Logger } from './logger.js';

export interface LeaseSpec {
  holderIdentity?: string;
  leaseDurationSeconds?: number;
  /** MicroTime: RFC 3339 with exactly 6 fractional digits (real API servers reject 3). */
  acquireTime?: string;
  renewTime?: string;
  leaseTransitions?: number;
}

export interface StoredLease {
  spec: LeaseSpec;
  resourceVersion?: string;
}

/** What the elector needs from the API; errors are KvzErrors (AlreadyExists, Conflict, ...). */
export interface LeaseApi {
  get(namespace: string, name: string): Promise<StoredLease | undefined>;
  create(namespace: string, name: string, spec: LeaseSpec): Promise<StoredLease>;
  /** Conditional on resourceVersion: a Conflict when someone else wrote meanwhile. */
  replace(namespace: string, name: string, spec: LeaseSpec, resourceVersion: string | undefined): Promise<StoredLease>;
}

export interface ElectionClock {
  now(): number;
  sleep(ms: number, signal: AbortSignal): Promise<void>;
}

export const realElectionClock: ElectionClock = {
  now: () => Date.now(),
  sleep: (ms, signal) =>
    new Promise((resolve) => {
      if (signal.aborted) return resolve();
      const t = setTimeout(done, ms);
      function done() {
        clearTimeout(t);
        signal.removeEventListener('abort', done);
        resolve();
      }
      signal.addEventListener('abort', done, { once: true });
    }),
};

/** MicroTime as the API server parses it: `2026-11-25T13:00:10.123000Z`. */
export function microTime(ms: number): string {
  return new Date(ms).toISOString().slice(0, -1) + '000Z';
}

export interface LeaderElectionOptions {
  api: LeaseApi;
  namespace: string;
  name: string;
  /** Unique per process: `<host>_<random>` as client-go. */
  identity: string;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  /** Wait retryPeriod * (1 + random * jitter) between attempts when not leading (client-go: 1.2). */
  jitter?: number;
  /** Write an empty holder on a graceful stop, so a successor need not wait out the lease. */
  releaseOnCancel?: boolean;
  clock?: ElectionClock;
  log: Logger;
}

export interface LeaderCallbacks {
  /** Called once leadership is gained; `signal` aborts when it is lost or the elector stops. */
  onStartedLeading(signal: AbortSignal): void | Promise<void>;
  /** Called when leadership ends (lost, or stopped). */
  onStoppedLeading?(): void | Promise<void>;
  onNewLeader?(identity: string): void;
}

export class LeaderElector {
  private observed: StoredLease | undefined;
  private observedRaw = '';
  private observedTime = 0;
  private readonly clock: ElectionClock;
  private readonly leaseMs: number;
  private readonly renewDeadlineMs: number;
  private readonly retryMs: number;
  private reportedLeader = '';
  private callbacks: LeaderCallbacks | undefined;

  constructor(private readonly o: LeaderElectionOptions) {
    this.clock = o.clock ?? realElectionClock;
    this.leaseMs = o.leaseDurationMs ?? 15_000;
    this.renewDeadlineMs = o.renewDeadlineMs ?? 10_000;
    this.retryMs = o.retryPeriodMs ?? 2_000;
    if (!(this.leaseMs > this.renewDeadlineMs && this.renewDeadlineMs > 1.2 * this.retryMs)) {
      throw new KvzError('Invalid', `leader election: need leaseDuration (${this.leaseMs} ms) > renewDeadline (${this.renewDeadlineMs} ms) > 1.2 × retryPeriod (${this.retryMs} ms)`);
    }
  }

  /** Whether the last observed record names us. */
  isLeader(): boolean {
    return this.observed?.spec.holderIdentity === this.o.identity;
  }

  /** The holder as last observed ('' when none). */
  leader(): string {
    return this.observed?.spec.holderIdentity ?? '';
  }

  /** One attempt (client-go's tryAcquireOrRenew): true when we hold the lease afterwards. */
  async tryAcquireOrRenew(): Promise<boolean> {
    const { api, namespace, name, identity } = this.o;
    const now = this.clock.now();
    const durationSeconds = Math.ceil(this.leaseMs / 1000);
    let current: StoredLease | undefined;
    try {
      current = await api.get(namespace, name);
    } catch (err) {
      this.o.log.warn({ lease: `${namespace}/${name}`, err: errorMessage(err) }, 'cannot read the leader lease');
      return false;
    }
    if (!current) {
      const spec: LeaseSpec = { holderIdentity: identity, leaseDurationSeconds: durationSeconds, acquireTime: microTime(now), renewTime: microTime(now), leaseTransitions: 0 };
      try {
        this.observe(await api.create(namespace, name, spec), now);
        return true;
      } catch (err) {
        this.o.log.debug({ err: errorMessage(err) }, 'lost the race to create the lease');
        return false;
      }
    }
    const raw = JSON.stringify(current.spec);
    if (raw !== this.observedRaw) this.observe(current, now);
    const holder = current.spec.holderIdentity ?? '';
    const ttlMs = (current.spec.leaseDurationSeconds ?? durationSeconds) * 1000;
    if (holder && holder !== identity && this.observedTime + ttlMs > now) return false;
    const renewing = holder === identity;
    const spec: LeaseSpec = {
      holderIdentity: identity,
      leaseDurationSeconds: durationSeconds,
      acquireTime: renewing && current.spec.acquireTime ? current.spec.acquireTime : microTime(now),
      renewTime: microTime(now),
      leaseTransitions: renewing ? (current.spec.leaseTransitions ?? 0) : (current.spec.leaseTransitions ?? 0) + 1,
    };
    try {
      this.observe(await api.replace(namespace, name, spec, current.resourceVersion), now);
      return true;
    } catch (err) {
      this.o.log.debug({ err: errorMessage(err) }, 'could not update the lease');
      return false;
    }
  }

  private observe(lease: StoredLease, now: number): void {
    this.observed = lease;
    this.observedRaw = JSON.stringify(lease.spec);
    this.observedTime = now;
    const holder = lease.spec.holderIdentity ?? '';
    if (holder && holder !== this.reportedLeader) {
      this.reportedLeader = holder;
      this.o.log.info({ lease: `${this.o.namespace}/${this.o.name}`, leader: holder, me: holder === this.o.identity }, 'new leader observed');
      this.callbacks?.onNewLeader?.(holder);
    }
  }


  /**
   * Campaigns until leading, leads until the lease cannot be renewed within renewDeadline or
   * `signal` aborts, then returns (after onStoppedLeading). Run it again to campaign again.
   */
  async run(callbacks: LeaderCallbacks, signal: AbortSignal): Promise<void> {
    this.callbacks = callbacks;
    const log = this.o.log.child({ lease: `${this.o.namespace}/${this.o.name}`, identity: this.o.identity });
    while (!signal.aborted) {
      if (await this.tryAcquireOrRenew()) break;
      await this.clock.sleep(this.retryMs * (1 + Math.random() * (this.o.jitter ?? 1.2)), signal);
    }
    if (signal.aborted) return;
    log.info('became leader');
    const leading = new AbortController();
    const started = Promise.resolve()
      .then(() => callbacks.onStartedLeading(leading.signal))
      .catch((err) => log.error({ err: errorMessage(err) }, 'the leader callback failed'));
    let lastRenew = this.clock.now();
    while (!signal.aborted) {
      await this.clock.sleep(this.retryMs, signal);
      if (signal.aborted) break;
      if (await this.tryAcquireOrRenew()) {
        lastRenew = this.clock.now();
        continue;
      }
      // Someone else holds it now, or we could not renew in time: stop acting at once.
      if (!this.isLeader() || this.clock.now() - lastRenew >= this.renewDeadlineMs) {
        log.warn({ leader: this.leader() }, 'leadership lost');
        break;
      }
    }
    leading.abort();
    await started;
    if (signal.aborted && (this.o.releaseOnCancel ?? true) && this.isLeader()) await this.release();
    await Promise.resolve(callbacks.onStoppedLeading?.()).catch((err) => log.error({ err: errorMessage(err) }, 'onStoppedLeading failed'));
  }

  /** Gives the lease up: empty holder, 1 s duration (client-go's ReleaseOnCancel). */
  async release(): Promise<boolean> {
    const { api, namespace, name } = this.o;
    try {
      const current = await api.get(namespace, name);
      if (!current || current.spec.holderIdentity !== this.o.identity) return false;
      const now = this.clock.now();
      const spec: LeaseSpec = { ...current.spec, holderIdentity: '', leaseDurationSeconds: 1, renewTime: microTime(now) };
      this.observe(await api.replace(namespace, name, spec, current.resourceVersion), now);
      this.o.log.info({ lease: `${namespace}/${name}` }, 'released the leader lease');
      return true;
    } catch (err) {
      this.o.log.warn({ err: errorMessage(err) }, 'could not release the leader lease; a successor waits for it to expire');
      return false;
    }
  }
}

/** MicroTime fields come back from client-node as Date, V1MicroTime or string: normalise to a 6-digit string. */
function toMicro(v: unknown): string | undefined {
  if (v instanceof Date) return microTime(v.getTime());
  if (typeof v === 'string' && v) {
    const t = Date.parse(v);
    return Number.isNaN(t) ? v : /\.\d{6}Z$/.test(v) ? v : microTime(t);
  }
  return undefined;
}

function fromV1(lease: k8s.V1Lease): StoredLease {
  const s = (lease.spec ?? {}) as Record<string, unknown>;
  const spec: LeaseSpec = {};
  if (typeof s.holderIdentity === 'string') spec.holderIdentity = s.holderIdentity;
  if (typeof s.leaseDurationSeconds === 'number') spec.leaseDurationSeconds = s.leaseDurationSeconds;
  const acquire = toMicro(s.acquireTime);
  const renew = toMicro(s.renewTime);
  if (acquire) spec.acquireTime = acquire;
  if (renew) spec.renewTime = renew;
  if (typeof s.leaseTransitions === 'number') spec.leaseTransitions = s.leaseTransitions;
  return { spec, resourceVersion: lease.metadata?.resourceVersion };
}

function toV1(namespace: string, name: string, spec: LeaseSpec, resourceVersion?: string): k8s.V1Lease {
  const micro = (s?: string) => (s ? new k8s.V1MicroTime(Date.parse(s)) : undefined);
  return {
    apiVersion: 'coordination.k8s.io/v1',
    kind: 'Lease',
    metadata: { name, namespace, ...(resourceVersion ? { resourceVersion } : {}) },
    spec: {
      holderIdentity: spec.holderIdentity,
      leaseDurationSeconds: spec.leaseDurationSeconds,
      acquireTime: micro(spec.acquireTime),
      renewTime: micro(spec.renewTime),
      leaseTransitions: spec.leaseTransitions,
    },
  };
}

/** LeaseApi over client-node's CoordinationV1Api. */
export function kubeLeaseApi(kc: k8s.KubeConfig): LeaseApi {
  const api = kc.makeApiClient(k8s.CoordinationV1Api);
  return {
    async get(namespace, name) {
      try {
        return fromV1(await api.readNamespacedLease({ namespace, name }));
      } catch (err) {
        const e = toKvzError(err, `get lease ${namespace}/${name}`);
        if (e.code === 'NotFound') return undefined;
        throw e;
      }
    },
    async create(namespace, name, spec) {
      try {
        return fromV1(await api.createNamespacedLease({ namespace, body: toV1(namespace, name, spec) }));
      } catch (err) {
        throw toKvzError(err, `create lease ${namespace}/${name}`);
      }
    },
    async replace(namespace, name, spec, resourceVersion) {
      try {
        return fromV1(await api.replaceNamespacedLease({ namespace, name, body: toV1(namespace, name, spec, resourceVersion) }));
      } catch (err) {
        throw toKvzError(err, `update lease ${namespace}/${name}`);
      }
    },
  };
}
