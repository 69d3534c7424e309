/**
 * The library (src/node/index.ts): the README example run for real; nodes and a gateway
 * sharing one process, each closing only its own connections; signal, onCall and logger;
 * idle peer connections closing by themselves.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type GatewayProcess, startGateway } from '../e2e/support/gateway-process.ts';
import { freeTcpPort } from '../e2e/support/ports.ts';
import type { Gateway } from '../src/node/gateway/gateway.ts';
import {
  type CallRecord,
  type ConnectNodeOptions,
  connectNode,
  GatewayConnectError,
  type Logger,
  type MeshNodeHandle,
  type StreamMessage,
  silentLogger,
} from '../src/node/index.ts';
import { startGatewayInProcess } from './support/gateway-in-process.ts';
import { startNodeNode } from './support/node-node.ts';

const dir = () => mkdtempSync(join(tmpdir(), 'rtcmesh-lib-'));

/** Bytes of a message (strings as UTF-8). */
const bytesOf = (m: StreamMessage) => (typeof m === 'string' ? new TextEncoder().encode(m) : m);

describe('the README example, against a gateway process', { timeout: 90_000 }, () => {
  let gateway: GatewayProcess;
  beforeAll(async () => {
    gateway = await startGateway();
  });
  afterAll(async () => {
    await gateway.stop();
  });

  it('listen on echo, dial it, read the echo', async () => {
    const server = await connectNode({
      gateway: gateway.url,
      dataDir: dir(),
      accept: 'everyone',
      bindAddress: '127.0.0.1',
    });
    server.listen('echo', async (stream) => {
      for await (const message of stream.readable) await stream.send(message);
    });
    const client = await connectNode({
      gateway: gateway.url,
      dataDir: dir(),
      bindAddress: '127.0.0.1',
    });
    const stream = await client.dial(server.id, 'echo');
    await stream.send('hello');
    const reader = stream.readable.getReader();
    expect((await reader.read()).value).toBe('hello');
    // Messages larger than any maxMessageSize are split and joined.
    const big = new Uint8Array(1_000_000).map((_, i) => i % 256);
    await stream.send(big);
    expect((await reader.read()).value).toEqual(big);
    stream.close();
    await client.close();
    await server.close();
    expect(server.status).toBe('offline');
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
});

describe('nodes and a gateway in one process', { timeout: 120_000 }, () => {
  let gateway: Gateway;
  const nodes: MeshNodeHandle[] = [];
  const start = async (options: ConnectNodeOptions = {}) => {
    const node = await connectNode({
      gateway: gateway.publicUrl,
      dataDir: dir(),
      accept: 'everyone',
      bindAddress: '127.0.0.1',
      ...options,
    });
    nodes.push(node);
    return node;
  };
  beforeAll(async () => {
    gateway = await startGatewayInProcess();
  });
  afterAll(async () => {
    for (const node of nodes) await node.close();
    await gateway?.stop(100);
  });

  it('closing one node, then the gateway, leaves the other nodes’ connections working', async () => {
    const closing = await start();
    const sender = await start();
    const receiver = await start();
    const SIZE = 4 * 1024 * 1024;
    const CHUNK = 64 * 1024;
    const data = new Uint8Array(SIZE).map((_, i) => (i * 7 + (i >> 13)) % 256);
    const hash = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

    // The receiver takes the 4 MiB on "bulk"; once a quarter has arrived, the closing node
    // closes, while the rest is still on its way.
    let closed: Promise<void> | undefined;
    const received = new Promise<Uint8Array>((resolve, reject) => {
      receiver.listen('bulk', (stream) => {
        void (async () => {
          const reader = stream.readable.getReader();
          const got = new Uint8Array(SIZE);
          let at = 0;
          while (at < SIZE) {
            const { value, done } = await reader.read();
            if (done) break;
            const bytes = bytesOf(value);
            got.set(bytes.subarray(0, SIZE - at), at);
            at += bytes.length;
            if (at >= SIZE / 4) closed ??= closing.close();
          }
          await stream.send('got it');
          resolve(got.subarray(0, Math.min(at, SIZE)));
          // Then it echoes whatever else comes.
          for (;;) {
            const { value, done } = await reader.read();
            if (done) return;
            await stream.send(value);
          }
        })().catch(reject);
      });
    });
    receiver.listen('echo', async (stream) => {
      for await (const message of stream.readable) await stream.send(message);
    });
    sender.listen('echo', async (stream) => {
      for await (const message of stream.readable) await stream.send(message);
    });

    // The closing node holds peer connections of its own, to both others.
    for (const peer of [sender, receiver]) {
      const s = await closing.dial(peer.id, 'echo');
      await s.send('ping');
      expect((await s.readable.getReader().read()).value).toBe('ping');
    }

    const bulk = await sender.dial(receiver.id, 'bulk');
    const replies = bulk.readable.getReader();
    for (let at = 0; at < SIZE; at += CHUNK) await bulk.send(data.subarray(at, at + CHUNK));
    const got = await received;
    expect(closed).toBeDefined();
    await closed;
    expect(got.length).toBe(SIZE);
    expect(hash(got)).toBe(hash(data));
    expect((await replies.read()).value).toBe('got it');
    expect(closing.status).toBe('offline');

    // The gateway stops: the sender's own link to the receiver still carries data, both on
    // the stream it has and on a new one (a dial over the open link needs no gateway).
    await gateway.stop(100);
    await bulk.send('after the gateway');
    expect((await replies.read()).value).toBe('after the gateway');
    const echo = await sender.dial(receiver.id, 'echo');
    await echo.send('still here');
    expect((await echo.readable.getReader().read()).value).toBe('still here');
    echo.close();
    bulk.close();
  });
});

describe('connectNode options', { timeout: 60_000 }, () => {
  let gateway: Gateway;
  const nodes: MeshNodeHandle[] = [];
  beforeAll(async () => {
    gateway = await startGatewayInProcess();
  });
  afterAll(async () => {
    for (const node of nodes) await node.close();
    await gateway?.stop(100);
  });
  const start = async (options: ConnectNodeOptions = {}) => {
    const node = await connectNode({
      gateway: gateway.publicUrl,
      dataDir: dir(),
      bindAddress: '127.0.0.1',
      ...options,
    });
    nodes.push(node);
    return node;
  };

  it('a gateway nobody answers at: GatewayConnectError, with the reason it was last given', async () => {
    const nowhere = `http://127.0.0.1:${await freeTcpPort()}`;
    const warned: string[] = [];
    const err = await connectNode({
      gateway: nowhere,
      dataDir: dir(),
      connectTimeoutMs: 3000,
      logger: { ...silentLogger, warn: (m: string) => warned.push(m) },
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GatewayConnectError);
    expect((err as GatewayConnectError).lastProblem).toMatch(/ECONNREFUSED/);
    expect((err as Error).message).toMatch(/could not reach the gateway at .* in 3 s \(last: /);
    // Said once while it was still trying, not on every retry.
    expect(warned).toHaveLength(1);
    expect(warned[0]).toMatch(/cannot reach .*ECONNREFUSED.*trying for 3 s/);
  });

  it("accept: 'ask' without onCall is refused at once", async () => {
    await expect(
      connectNode({ gateway: gateway.publicUrl, dataDir: dir(), accept: 'ask' }),
    ).rejects.toThrow(/onCall/);
  });

  it('onCall decides each call; the call event tells what was answered', async () => {
    const asked: CallRecord[] = [];
    let answer: 'accept' | 'decline' = 'decline';
    const callee = await start({
      onCall: async (call) => {
        asked.push(call);
        return answer;
      },
    });
    callee.listen('echo', async (stream) => {
      for await (const message of stream.readable) await stream.send(message);
    });
    const events: [string, string][] = [];
    callee.on('call', (call, decision) => events.push([call.id, decision]));
    const caller = await start({ name: 'caller' });
    await expect(caller.dial(callee.id, 'echo')).rejects.toMatchObject({ code: 'declined' });
    answer = 'accept';
    const stream = await caller.dial(callee.id, 'echo');
    await stream.send('yes');
    expect((await stream.readable.getReader().read()).value).toBe('yes');
    expect(asked.map((c) => [c.id, c.name, c.known])).toEqual([
      [caller.id, 'caller', false],
      [caller.id, 'caller', false],
    ]);
    expect(events).toEqual([
      [caller.id, 'decline'],
      [caller.id, 'accept'],
    ]);
  });

  it('the logger hears what the node says; aborting the signal closes the node', async () => {
    const lines: string[] = [];
    const logger: Logger = {
      debug: (m) => lines.push(`debug ${m}`),
      info: (m) => lines.push(`info ${m}`),
      warn: (m) => lines.push(`warn ${m}`),
      error: (m) => lines.push(`error ${m}`),
    };
    const controller = new AbortController();
    const node = await start({ logger, signal: controller.signal });
    expect(lines).toContainEqual(expect.stringMatching(`info node ${node.id} .* connected to`));
    const closed = new Promise<void>((resolve) => node.on('close', resolve));
    controller.abort();
    await closed;
    expect(node.status).toBe('offline');
    // An aborted signal refuses to start at all.
    await expect(start({ signal: controller.signal })).rejects.toThrow();
  });
});
