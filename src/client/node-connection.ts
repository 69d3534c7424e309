/**
 * How a tab reaches the node (DESIGN §6): the shared node worker where the browser has
 * SharedWorker; otherwise a node of this tab's own, which runs only while this tab holds
 * the node lock (the other tabs say the node is active elsewhere).
 */
import { expose, type Remote, wrap } from 'comlink';
import type { NodeApi } from '../worker/node-api.ts';

export function sharedWorkerAvailable(): boolean {
  return typeof SharedWorker !== 'undefined';
}

/** The node worker, started if it does not run yet (one per origin and profile). */
export function connectToNodeWorker(): Remote<NodeApi> {
  const worker = new SharedWorker(new URL('../worker/node-worker.ts', import.meta.url), {
    type: 'module',
    name: 'rtcmesh-node',
  });
  return wrap<NodeApi>(worker.port);
}

/** A node in this tab, behind the same comlink interface as the shared one. */
export async function startNodeInTab(): Promise<Remote<NodeApi>> {
  const { BrowserNode } = await import('../worker/node.ts');
  const { port1, port2 } = new MessageChannel();
  expose(new BrowserNode(), port1);
  return wrap<NodeApi>(port2);
}
