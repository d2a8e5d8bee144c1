// Translates a VirtualEnvironment's spec into the runtime's plain VEConfig (bytes, shares, µs).
// A spec the runtime cannot honour is a TerminalError naming the field: retrying will not help.

import { parseBytes, parseCpuLimit } from '../api/quantity.js';
import type { VirtualEnvironment } from '../api/types.js';
import { TerminalError } from '../core/errors.js';
import { formatCpuset, parseCpuset, type VEConfig, type VELimits } from '../runtime/index.js';
import { diskFromSpec } from './ve-disk.js';

export const CPU_PERIOD_US = 100_000;

export function limitsFromSpec(ve: VirtualEnvironment): VELimits {
  const r = ve.spec.resources ?? {};
  const limits: VELimits = {};
  try {
    if (r.memory?.limit !== undefined) limits.memoryBytes = parseBytes(r.memory.limit, 'spec.resources.memory.limit');
    if (r.memory?.swap !== undefined) {
      if (limits.memoryBytes === undefined) throw new TerminalError('spec.resources.memory.swap: needs spec.resources.memory.limit to be set as well');
      limits.swapBytes = parseBytes(r.memory.swap, 'spec.resources.memory.swap');
    }
    if (r.cpu?.units !== undefined) limits.cpuShares = r.cpu.units;
    let cpus: number | undefined;
    if (r.cpu?.limit !== undefined) cpus = parseCpuLimit(r.cpu.limit, 'spec.resources.cpu.limit');
    if (r.cpu?.cpus !== undefined) cpus = cpus === undefined ? r.cpu.cpus : Math.min(cpus, r.cpu.cpus);
    if (cpus !== undefined) {
      limits.cpuPeriodUs = CPU_PERIOD_US;
      limits.cpuQuotaUs = Math.max(1000, Math.round(cpus * CPU_PERIOD_US));
    }
    if (r.processes !== undefined) limits.pids = r.processes;
    if (r.memory?.guarantee !== undefined) limits.memoryGuaranteeBytes = parseBytes(r.memory.guarantee, 'spec.resources.memory.guarantee');
    if (r.cpu?.cpuset !== undefined) {
      try {
        limits.cpuset = formatCpuset(parseCpuset(r.cpu.cpuset));
      } catch (e) {
        throw new TerminalError(`spec.resources.cpu.cpuset: ${(e as Error).message}`);
      }
      if (limits.cpuset === '') throw new TerminalError('spec.resources.cpu.cpuset: names no CPU; leave it out to allow all CPUs');
    }
    if (r.openFiles !== undefined) limits.openFiles = r.openFiles;
    const d = r.disk;
    if (d?.ioWeight !== undefined) limits.ioWeight = d.ioWeight;
    if (d?.readBps !== undefined) limits.readBps = parseBytes(d.readBps, 'spec.resources.disk.readBps');
    if (d?.writeBps !== undefined) limits.writeBps = parseBytes(d.writeBps, 'spec.resources.disk.writeBps');
    if (d?.readIops !== undefined) limits.readIops = d.readIops;
    if (d?.writeIops !== undefined) limits.writeIops = d.writeIops;
  } catch (err) {
    if ((err as { code?: string }).code === 'Invalid') throw new TerminalError((err as Error).message, { cause: err });
    throw err;
  }
  return limits;
}

export function configFromSpec(ve: VirtualEnvironment, addresses: string[]): VEConfig {
  const uid = ve.metadata.uid;
  if (!uid) throw new TerminalError(`${ve.metadata.namespace}/${ve.metadata.name} has no metadata.uid`);
  return {
    uid,
    name: `${ve.metadata.namespace}/${ve.metadata.name}`,
    hostname: ve.spec.hostname || ve.metadata.name,
    template: ve.spec.template,
    addresses,
    ...networkFromSpec(ve),
    limits: limitsFromSpec(ve),
    disk: diskFromSpec(ve),
    ...(ve.spec.security ? { security: { userNamespace: ve.spec.security.userNamespace ?? true, ...(ve.spec.security.allowPrivilegedFallback ? { allowPrivilegedFallback: true } : {}), ...(ve.spec.security.uidRange ? { uidRange: ve.spec.security.uidRange } : {}) } } : {}),
    ...(ve.spec.devices?.length ? { devices: ve.spec.devices.map((d) => ({ path: d.path, ...(d.access ? { access: d.access } : {}) })) } : {}),
  };
}

/** Mode and resolver; left out entirely for a plain bridged VE without DNS, so older records compare equal. */
function networkFromSpec(ve: VirtualEnvironment): Pick<VEConfig, 'network'> {
  const n = ve.spec.network ?? {};
  const network: NonNullable<VEConfig['network']> = {};
  if (n.mode && n.mode !== 'bridged') network.mode = n.mode;
  if (n.nameservers?.length) network.nameservers = [...n.nameservers];
  if (n.searchDomains?.length) network.searchDomains = [...n.searchDomains];
  return Object.keys(network).length ? { network } : {};
}

/** Whether two configs differ in something that needs the VE restarted (not a live limit change). */
export function needsRestart(a: VEConfig, b: VEConfig): boolean {
  return a.hostname !== b.hostname || a.template !== b.template || JSON.stringify(a.addresses) !== JSON.stringify(b.addresses)
    || JSON.stringify(a.network ?? {}) !== JSON.stringify(b.network ?? {});
}
