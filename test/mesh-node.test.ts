/** Two Node mesh nodes (node-datachannel) dial each other through a real gateway process. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type GatewayProcess, startGateway } from '../e2e/support/gateway-process.ts';
import { DialError } from '../src/core/node/errors.ts';
import { startNodeNode } from './support/node-node.ts';

describe('MeshNode on node-datachannel', () => {
  let gateway: GatewayProcess;
  beforeAll(async () => {
    gateway = await startGateway({ args: ['--dial-timeout', '3s'] });
  });
  afterAll(async () => {
    await gateway.stop();
  });

  it('dials by ID, verifies, and exchanges messages', async () => {
    const a = await startNodeNode(gateway.url);
    const b = await startNodeNode(gateway.url);
    const received = new Promise<string>((resolve) => {
      b.node.on('link', (link) => link.onMessage(resolve));
    });
    const link = await a.node.dial(b.identity.id);
    expect(link.peer.id).toBe(b.identity.id);
    link.send('hello over the mesh');
    expect(await received).toBe('hello over the mesh');
    a.node.stop();
    b.node.stop();
  });

  it('a callee that never answers: timeout; an offline node: offline', async () => {
    const a = await startNodeNode(gateway.url);
    const b = await startNodeNode(gateway.url, { policy: () => 'ask' });
    const err = await a.node.dial(b.identity.id).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DialError);
    expect((err as DialError).code).toBe('timeout');
    b.node.stop();
    await new Promise((r) => setTimeout(r, 500));
    const offline = await a.node.dial(b.identity.id).catch((e: unknown) => e);
    expect((offline as DialError).code).toBe('offline');
    a.node.stop();
  });
});
