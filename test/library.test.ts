/** The README's library example, run for real, and idle peer connections closing by themselves. */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { type GatewayProcess, startGateway } from '../e2e/support/gateway-process.ts';
import { closeNode, connectNode } from '../src/node/index.ts';
import { startNodeNode } from './support/node-node.ts';

let gateway: GatewayProcess;
beforeAll(async () => {
  gateway = await startGateway();
});
afterAll(async () => {
  await gateway.stop();
});

it('the README example: listen on echo, dial it, read the echo', async () => {
  const dir = () => mkdtempSync(join(tmpdir(), 'rtcmesh-lib-'));
  const server = await connectNode({ gateway: gateway.url, dataDir: dir(), accept: 'everyone' });
  server.listen('echo', async (stream) => {
    for await (const message of stream.readable) await stream.send(message);
  });
  const client = await connectNode({ gateway: gateway.url, dataDir: dir() });
  const stream = await client.dial(server.id, 'echo');
  await stream.send('hello');
  const reader = stream.readable.getReader();
  expect((await reader.read()).value).toBe('hello');
  // Messages larger than any maxMessageSize are split and joined.
  const big = new Uint8Array(1_000_000).map((_, i) => i % 256);
  await stream.send(big);
  expect((await reader.read()).value).toEqual(big);
  stream.close();
  client.stop();
  server.stop();
  void closeNode;
});

it('a peer connection with no stream left closes after the idle timeout', async () => {
  const a = await startNodeNode(gateway.url, { idleMs: 500 });
  const b = await startNodeNode(gateway.url, { idleMs: 500 });
  b.node.listen('x', () => {});
  const stream = await a.node.dial(b.identity.id, 'x');
  const link = a.node.link(b.identity.id);
  expect(link?.isOpen).toBe(true);
  stream.close();
  await expect.poll(() => link?.isOpen, { timeout: 5000 }).toBe(false);
  a.node.stop();
  b.node.stop();
});
