// Minimal scheduler: binds every VE that is not yet bound to a node. A VE that names a node
// (spec.nodeName) goes there; otherwise to the default node (the local one under `kvz up`).
// Binding = the label kubevz.io/node (which agents select on) plus status.nodeName and a
// Scheduled condition. Once bound, a VE stays where it is: moving it is a migration.

import { NODE_LABEL, type VirtualEnvironment } from '../api/types.js';
import { setCondition } from '../core/conditions.js';
import type { Logger } from '../core/logger.js';
import { splitKey, type Reconciler, type ReconcileResult } from '../core/reconcile.js';
import type { ResourceClient } from '../core/resource-client.js';

export interface SchedulerOptions {
  client: ResourceClient<VirtualEnvironment>;
  defaultNode: string;
  log: Logger;
}

export class Scheduler implements Reconciler {
  readonly name = 'scheduler';

  constructor(private readonly o: SchedulerOptions) {}

  async reconcile(key: string): Promise<ReconcileResult> {
    const { namespace, name } = splitKey(key);
    const ve = await this.o.client.get(name, namespace);
    if (!ve || ve.metadata.deletionTimestamp) return {};
    const bound = ve.metadata.labels?.[NODE_LABEL];
    if (bound) return {};
    const node = ve.spec.nodeName || this.o.defaultNode;
    await this.o.client.mergePatch(name, namespace, { metadata: { labels: { [NODE_LABEL]: node } } });
    const conditions = setCondition(ve.status?.conditions, {
      type: 'Scheduled',
      status: 'True',
      reason: ve.spec.nodeName ? 'Pinned' : 'Scheduled',
      message: `bound to node ${node}`,
      observedGeneration: ve.metadata.generation,
    });
    await this.o.client.patchStatus(name, namespace, { phase: ve.status?.phase ?? 'Pending', nodeName: node, conditions });
    this.o.log.info({ ve: key, node }, 'VE bound to node');
    return {};
  }
}
