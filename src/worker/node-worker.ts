/**
 * The node worker (DESIGN §6): a SharedWorker, one per origin and profile, that every tab
 * connects a port to and talks to the one BrowserNode through comlink. It holds a Web Lock
 * for as long as it lives, so tabs learn of its death (it dies with the tab that started
 * it, if that tab crashes) and start a new one (client/node-worker-host.ts).
 *
 * Where SharedWorker is missing the same script runs as a dedicated worker of the one tab
 * holding the node lock: it serves that tab alone and lives and dies with it, so it holds
 * no worker lock.
 */
import { expose } from 'comlink';
import { LOCKS } from '../browser/node-api.ts';
import { BrowserNode } from './node.ts';

const node = new BrowserNode();

if (typeof SharedWorkerGlobalScope !== 'undefined' && self instanceof SharedWorkerGlobalScope) {
  const scope = self;
  const holding = new Promise<void>((held) => {
    void navigator.locks.request(LOCKS.worker, () => {
      held();
      return new Promise<never>(() => {});
    });
  });
  scope.onconnect = (event: MessageEvent) => {
    const port = event.ports[0];
    if (port) void holding.then(() => expose(node, port));
  };
} else {
  expose(node, self as DedicatedWorkerGlobalScope);
}
