/// <reference lib="webworker" />
/**
 * The node worker: a SharedWorker, one per origin and profile (DESIGN §6). Every tab
 * connects a port and talks to the one BrowserNode through comlink.
 */
import { expose } from 'comlink';
import { BrowserNode } from './node.ts';

const node = new BrowserNode();

(self as unknown as SharedWorkerGlobalScope).onconnect = (event: MessageEvent) => {
  const port = event.ports[0];
  if (port) expose(node, port);
};
