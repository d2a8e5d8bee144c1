// In-memory VERuntime for unit tests of the node agent. It passes the same contract tests
// (test/helpers/runtime-contract.ts) as the real runtime, so it cannot drift from it.

import type { EnsureResult, ExecOptions, StopOptions, VEConfig, VEHostState, VELimits, VERuntime } from '../../src/runtime/index.js';

interface FakeVE {
  config: VEConfig;
  state: 'running' | 'stopped';
  pid?: number;
}

export class FakeRuntime implements VERuntime {
  readonly ves = new Map<string, FakeVE>();
  readonly templates = new Set<string>();
  readonly calls: string[] = [];
  private nextPid = 1000;
  /** Set to make the next ensureRunning fail (once). */
  failNextStart: Error | undefined;

  async ensureTemplate(name: string): Promise<{ rootfs: string; result: EnsureResult }> {
    const had = this.templates.has(name);
    this.templates.add(name);
    return { rootfs: `/fake/templates/${name}`, result: had ? 'unchanged' : 'created' };
  }

  async ensureRunning(config: VEConfig): Promise<EnsureResult> {
    this.calls.push(`ensureRunning ${config.uid}`);
    if (this.failNextStart) {
      const err = this.failNextStart;
      this.failNextStart = undefined;
      throw err;
    }
    if (!this.templates.has(config.template)) throw Object.assign(new Error(`template ${config.template} is not built`), { code: 'NotFound' });
    const ve = this.ves.get(config.uid);
    if (ve?.state === 'running') return 'unchanged';
    this.ves.set(config.uid, { config: { ...config, limits: { ...config.limits } }, state: 'running', pid: this.nextPid++ });
    return ve ? 'updated' : 'created';
  }

  async ensureStopped(uid: string, _opts: StopOptions): Promise<EnsureResult> {
    this.calls.push(`ensureStopped ${uid}`);
    const ve = this.ves.get(uid);
    if (!ve || ve.state === 'stopped') return 'unchanged';
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
    return this.ves.delete(uid) ? 'deleted' : 'unchanged';
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
    return { ...ve.config.limits };
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
