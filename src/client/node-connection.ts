/**
 * How a tab reaches the node: through the shared node worker when the browser has
 * SharedWorker, otherwise by running the node in this tab.
 */
import { type Remote, wrap } from 'comlink';
import type { NodeApi } from '../worker/node-api.ts';

export type NodeHandle = Remote<NodeApi> | NodeApi;

export async function connectToNode(): Promise<{ node: NodeHandle; shared: boolean }> {
  if (typeof SharedWorker !== 'undefined') {
    const worker = new SharedWorker(new URL('../worker/node-worker.ts', import.meta.url), {
      type: 'module',
      name: 'rtcmesh-node',
    });
    return { node: wrap<NodeApi>(worker.port), shared: true };
  }
  const { BrowserNode } = await import('../worker/node.ts');
  return { node: new BrowserNode(), shared: false };
}
