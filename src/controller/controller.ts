// The cluster-side controller process: for now one reconciler (binding VEs to nodes).

import type { VirtualEnvironment } from '../api/types.js';
import { ControllerLoop } from '../core/controller-loop.js';
import type { Logger } from '../core/logger.js';
import { objectKey } from '../core/reconcile.js';
import type { InformerHandle, ResourceClient } from '../core/resource-client.js';
import { Scheduler } from './scheduler.js';

export interface ControllerOptions {
  client: ResourceClient<VirtualEnvironment>;
  defaultNode: string;
  log: Logger;
}

export class Controller {
  private loop: ControllerLoop | undefined;
  private informer: InformerHandle<VirtualEnvironment> | undefined;

  constructor(private readonly o: ControllerOptions) {}

  async start(): Promise<void> {
    const log = this.o.log.child({ component: 'controller' });
    this.loop = new ControllerLoop({ reconciler: new Scheduler({ ...this.o, log }), log, workers: 2 });
    const queue = this.loop.queue;
    this.informer = await this.o.client.inform({}, (type, obj) => {
      if (type !== 'DELETED') queue.add(objectKey(obj));
    });
    this.loop.start();
    for (const ve of this.informer.list()) queue.add(objectKey(ve));
  }

  async stop(): Promise<void> {
    await this.informer?.stop();
    await this.loop?.stop();
  }
}
