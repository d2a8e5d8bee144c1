// Where applied objects go: an ApplyTarget maps apiVersion + kind to a resource and hands out a
// ResourceClient for it. Two implementations: one over a kubeconfig (the server's discovery
// decides which kinds exist), and one over a fixed list of kinds (the CRDs in crds/, for tests
// and callers that bring their own clients).

import * as k8s from '@kubernetes/client-node';
import { loadCrds, type CustomResourceDefinition } from '../api/crds.js';
import { makeResourceClient, serverOf, toKvzError } from '../core/kube-client.js';
import type { Logger } from '../core/logger.js';
import type { ResourceClient, ResourceRef } from '../core/resource-client.js';

export interface ApplyTarget {
  /** The resource serving `kind` in `apiVersion`; undefined when the server does not serve that kind. */
  resolve(apiVersion: string, kind: string): Promise<ResourceRef | undefined>;
  client(ref: ResourceRef): ResourceClient;
  /** Kinds to scan for objects that a watched directory owns (start-up reconcile). */
  kinds(): Promise<ResourceRef[]>;
  /** Where the objects go, for messages (`https://127.0.0.1:6443`). */
  readonly server: string;
}

export function apiVersionOf(ref: ResourceRef): string {
  return ref.group ? `${ref.group}/${ref.version}` : ref.version;
}

/** One ResourceRef per served version of every CRD. */
export function refsFromCrds(crds: CustomResourceDefinition[] = loadCrds()): ResourceRef[] {
  return crds.flatMap((crd) =>
    crd.spec.versions
      .filter((v) => v.served)
      .map((v) => ({ group: crd.spec.group, version: v.name, plural: crd.spec.names.plural, kind: crd.spec.names.kind, namespaced: crd.spec.scope === 'Namespaced' })),
  );
}

/** A target over a fixed set of kinds, with clients from `clientFor` (e.g. a fake API). */
export function registryApplyTarget(refs: ResourceRef[], clientFor: (ref: ResourceRef) => ResourceClient, server = 'the API server'): ApplyTarget {
  const clients = new Map<string, ResourceClient>();
  return {
    server,
    async resolve(apiVersion, kind) {
      return refs.find((r) => apiVersionOf(r) === apiVersion && r.kind === kind);
    },
    client(ref) {
      const key = `${apiVersionOf(ref)}/${ref.plural}`;
      let c = clients.get(key);
      if (!c) clients.set(key, (c = clientFor(ref)));
      return c;
    },
    async kinds() {
      return refs;
    },
  };
}

// KubernetesObjectApi keeps its discovery lookup protected; this exposes it (it caches per apiVersion).
class Discovery extends k8s.KubernetesObjectApi {
  lookup(apiVersion: string, kind: string): Promise<k8s.V1APIResource | undefined> {
    return this.resource(apiVersion, kind);
  }
}

/**
 * A target over a kubeconfig: kinds come from the server's discovery (so any CRD installed on
 * a real cluster works), and the local CRDs name the kinds scanned at start-up.
 */
export function kubeApplyTarget(kc: k8s.KubeConfig, log: Logger, localKinds: ResourceRef[] = refsFromCrds()): ApplyTarget {
  const discovery = kc.makeApiClient(Discovery);
  const server = serverOf(kc);
  const resolved = new Map<string, ResourceRef>();
  const clients = new Map<string, ResourceClient>();
  return {
    server,
    async resolve(apiVersion, kind) {
      const key = `${apiVersion}/${kind}`;
      const hit = resolved.get(key);
      if (hit) return hit;
      const slash = apiVersion.indexOf('/');
      // The ResourceClient speaks the /apis/GROUP/VERSION paths of custom resources only.
      if (slash < 0) return undefined;
      let res: k8s.V1APIResource | undefined;
      try {
        res = await discovery.lookup(apiVersion, kind);
      } catch (err) {
        const e = toKvzError(err, `discover ${apiVersion}`, server);
        if (e.code === 'NotFound') return undefined;
        throw e;
      }
      if (!res) return undefined;
      const ref: ResourceRef = { group: apiVersion.slice(0, slash), version: apiVersion.slice(slash + 1), plural: res.name, kind, namespaced: res.namespaced };
      resolved.set(key, ref);
      return ref;
    },
    client(ref) {
      const key = `${apiVersionOf(ref)}/${ref.plural}`;
      let c = clients.get(key);
      if (!c) clients.set(key, (c = makeResourceClient(kc, ref, log)));
      return c;
    },
    async kinds() {
      const out = new Map<string, ResourceRef>();
      for (const r of [...localKinds, ...resolved.values()]) out.set(`${r.group}/${r.plural}`, r);
      return [...out.values()];
    },
  };
}
