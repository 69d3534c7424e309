/**
 * rtcmesh as a library for Node apps: a mesh node with its identity in a data directory.
 *
 *   import { connectNode } from 'rtcmesh';
 *   const node = await connectNode({ gateway: 'http://127.0.0.1:8080', dataDir: './node' });
 */
import type { AcceptPolicy, MeshNode } from '../core/node/index.ts';
import { DEFAULT_GATEWAY, DEFAULT_NODE_DATA, startCliNode, stopCliNode } from './cli-node.ts';

export * from '../core/node/index.ts';

export interface ConnectNodeOptions {
  gateway?: string;
  dataDir?: string;
  /** Incoming calls: everyone, known (the `known` list) or ask (declines: nobody to ask). */
  accept?: AcceptPolicy;
  known?: string[];
  name?: string;
}

/** Makes (or loads) the node's identity, connects to the gateway, resolves when connected. */
export function connectNode(options: ConnectNodeOptions = {}): Promise<MeshNode> {
  return startCliNode({
    gateway: options.gateway ?? DEFAULT_GATEWAY,
    dataDir: options.dataDir ?? DEFAULT_NODE_DATA,
    accept: options.accept ?? 'known',
    known: options.known ?? [],
    ...(options.name ? { name: options.name } : {}),
  });
}

/** Stops the node and releases its native resources. */
export function closeNode(node: MeshNode): void {
  stopCliNode(node);
}
