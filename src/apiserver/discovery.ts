// Legacy discovery documents (kube-api-notes §2.2): /version, /api, /api/v1, /apis, /apis/G,
// /apis/G/V. Aggregated discovery is not served; kubectl falls back to these. Keep them stable:
// kubectl caches discovery on disk per host:port.

import { type ResourceDef, type ResourceTable, storageVersionHash, VERBS } from './resources.js';

/** Reported so the kubectl dispatcher on these machines picks a modern kubectl (1.32). */
export function versionInfo(): Record<string, string> {
  return {
    major: '1',
    minor: '32',
    gitVersion: 'v1.32.0-kubevz',
    gitCommit: '0000000000000000000000000000000000000000',
    gitTreeState: 'clean',
    buildDate: '2025-01-01T00:00:00Z',
    goVersion: 'go1.23.0',
    compiler: 'gc',
    platform: `linux/${process.arch === 'arm64' ? 'arm64' : 'amd64'}`,
  };
}

export function apiVersions(): Record<string, unknown> {
  return { kind: 'APIVersions', versions: ['v1'], serverAddressByClientCIDRs: null };
}

function groupEntry(name: string, versions: string[]): Record<string, unknown> {
  const vs = versions.map((v) => ({ groupVersion: `${name}/${v}`, version: v }));
  return { name, versions: vs, preferredVersion: vs[0] };
}

export function apiGroupList(resources: ResourceTable): Record<string, unknown> {
  return { kind: 'APIGroupList', apiVersion: 'v1', groups: resources.groups().map((g) => groupEntry(g.name, g.versions)) };
}

export function apiGroup(resources: ResourceTable, group: string): Record<string, unknown> | undefined {
  const g = resources.groups().find((x) => x.name === group);
  return g ? { kind: 'APIGroup', apiVersion: 'v1', ...groupEntry(g.name, g.versions) } : undefined;
}

function entries(d: ResourceDef, version: string): Record<string, unknown>[] {
  const main: Record<string, unknown> = {
    name: d.plural,
    singularName: d.singular,
    namespaced: d.namespaced,
    kind: d.kind,
    verbs: VERBS,
    storageVersionHash: storageVersionHash(d.group, version, d.kind),
  };
  if (d.shortNames.length > 0) main.shortNames = d.shortNames;
  if (d.categories.length > 0) main.categories = d.categories;
  const out = [main];
  if (d.statusSubresource) out.push({ name: `${d.plural}/status`, singularName: '', namespaced: d.namespaced, kind: d.kind, verbs: ['get', 'patch', 'update'] });
  return out;
}

export function apiResourceList(resources: ResourceTable, group: string, version: string): Record<string, unknown> | undefined {
  const defs = resources.inGroupVersion(group, version);
  if (defs.length === 0) return undefined;
  return {
    kind: 'APIResourceList',
    apiVersion: 'v1',
    groupVersion: group ? `${group}/${version}` : version,
    resources: defs.flatMap((d) => entries(d, version)),
  };
}
