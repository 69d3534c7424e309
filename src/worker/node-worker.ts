/// <reference lib="webworker" />
/**
 * The node worker: a SharedWorker, one per origin and profile (DESIGN §6). Every tab
 * connects a port and talks to the one BrowserNode through comlink. It holds a Web Lock for
 * as long as it lives, so tabs learn of its death (it dies with the tab that started it, if
 * that tab crashes) and start a new one.
 */
import { expose } from 'comlink';
import { BrowserNode } from './node.ts';
import { LOCKS } from './node-api.ts';

const node = new BrowserNode();
const holding = new Promise<void>((held) => {
  void navigator.locks.request(LOCKS.worker, () => {
    held();
    return new Promise<never>(() => {});
  });
});

(self as unknown as SharedWorkerGlobalScope).onconnect = (event: MessageEvent) => {
  const port = event.ports[0];
  if (port) void holding.then(() => expose(node, port));
};
