/**
 * `rtcmesh expose` and `rtcmesh forward` as a user runs them: two CLI node processes over a
 * real gateway, real TCP on both sides. Byte-identical transfers on many connections at once,
 * each connection's close or reset reaching only its own stream, a peer that restarts, and
 * bad input (garbage instead of HTTP, a flood of streams, a closed port).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type GatewayProcess, RTCMESH_BIN, startGateway } from '../e2e/support/gateway-process.ts';
import { captureOutput } from '../e2e/support/process-output.ts';
import { waitFor } from '../e2e/support/wait.ts';
import {
  END_OF_BODY,
  encodeHead,
  parseResponseHead,
} from '../src/core/services/http-over-stream.ts';
import { connectNode, type MeshNodeHandle, type MeshStream } from '../src/node/index.ts';

let gateway: GatewayProcess;
const children = new Set<ChildProcess>();
const servers: Server[] = [];
beforeAll(async () => {
  gateway = await startGateway();
}, 120_000);
afterAll(async () => {
  for (const c of children) c.kill('SIGTERM');
  for (const s of servers) s.close();
  await gateway.stop();
});

interface Cli {
  child: ChildProcess;
  exited: Promise<number | null>;
  err(): string;
  stop(): Promise<number | null>;
}

function rtcmesh(args: string[], data = mkdtempSync(join(tmpdir(), 'rtcmesh-sv-'))): Cli {
  const child = spawn(
    process.execPath,
    [RTCMESH_BIN, ...args, '--gateway', gateway.url, '--data', data],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  children.add(child);
  const { err, exited } = captureOutput(child);
  void exited.then(() => children.delete(child));
  return {
    child,
    exited,
    err,
    stop: () => {
      child.kill('SIGTERM');
      return exited;
    },
  };
}

/** Listens on a free loopback port. */
async function serve(server: Server): Promise<number> {
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as { port: number }).port;
}

/** Starts `rtcmesh expose`; resolves with its node ID once it serves. */
async function startExpose(args: string[], data?: string): Promise<{ cli: Cli; id: string }> {
  const cli = rtcmesh(['expose', ...args], data);
  const id = await waitFor(() => /node (\S+) \(/.exec(cli.err())?.[1], 'the expose node');
  await waitFor(() => cli.err().includes('exposing'), 'expose to serve');
  return { cli, id };
}

async function startForward(peer: string, service: string): Promise<{ cli: Cli; port: number }> {
  const cli = rtcmesh(['forward', '127.0.0.1:0', peer, service]);
  const port = Number(
    await waitFor(() => /forwarding 127\.0\.0\.1:(\d+)/.exec(cli.err())?.[1], 'the forward'),
  );
  return { cli, port };
}

/** Opens a TCP connection, sends `payload`, half-closes, and resolves with all it read. */
function roundTrip(port: number, payload: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const socket = connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    const parts: Buffer[] = [];
    socket.on('data', (d: Buffer) => parts.push(d));
    socket.on('error', reject);
    socket.on('end', () => {
      socket.end();
      resolve(Buffer.concat(parts));
    });
    socket.on('close', () => resolve(Buffer.concat(parts)));
    socket.end(payload);
  });
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** An echo server that keeps each connection, named by the line it starts with. */
function namedEcho() {
  const byName = new Map<string, Socket>();
  const server = createServer({ allowHalfOpen: true }, (socket) => {
    socket.on('error', () => {});
    let named = false;
    let head = '';
    socket.on('data', (d: Buffer) => {
      if (!named) {
        head += d.toString('latin1');
        const nl = head.indexOf('\n');
        if (nl >= 0) {
          named = true;
          byName.set(head.slice(0, nl), socket);
        }
      }
      socket.write(d);
    });
    socket.on('end', () => socket.end());
  });
  return { server, byName };
}

/** A client connection that says its name and collects what comes back. */
function namedClient(port: number, name: string) {
  const socket = connect({ port, host: '127.0.0.1', allowHalfOpen: true });
  let got = '';
  let closed = false;
  socket.on('data', (d: Buffer) => {
    got += d.toString('latin1');
  });
  socket.on('error', () => {});
  socket.on('close', () => {
    closed = true;
  });
  socket.write(`${name}\n`);
  return { socket, got: () => got, closed: () => closed };
}

describe('rtcmesh expose + forward', { timeout: 240_000 }, () => {
  let echoPort: number;
  let echo: ReturnType<typeof namedEcho>;
  let exposeData: string;
  let exposer: { cli: Cli; id: string };
  let forwarder: { cli: Cli; port: number };

  beforeAll(async () => {
    echo = namedEcho();
    echoPort = await serve(echo.server);
    exposeData = mkdtempSync(join(tmpdir(), 'rtcmesh-sv-'));
    exposer = await startExpose(['echo', `127.0.0.1:${echoPort}`], exposeData);
    forwarder = await startForward(exposer.id, 'echo');
  }, 120_000);

  it('carries 20 connections at once, 1 MiB each way on each, byte-identical', async () => {
    const payloads = Array.from({ length: 20 }, () => randomBytes(1024 * 1024));
    const echoed = await Promise.all(payloads.map((p) => roundTrip(forwarder.port, p)));
    for (const [i, p] of payloads.entries()) {
      expect(echoed[i]?.length).toBe(p.length);
      expect(sha(echoed[i] as Buffer)).toBe(sha(p));
    }
  });

  it('a connection closed or reset by either end closes its stream and only it', async () => {
    const clients = ['a', 'b', 'c', 'd'].map((name) => ({
      name,
      ...namedClient(forwarder.port, name),
    }));
    await waitFor(() => clients.every((c) => echo.byName.has(c.name)), 'four connections');
    for (const c of clients) await waitFor(() => c.got().startsWith(`${c.name}\n`), 'the echo');
    const [a, b, c, d] = clients as [
      (typeof clients)[0],
      (typeof clients)[0],
      (typeof clients)[0],
      (typeof clients)[0],
    ];
    const serverSide = (name: string) => echo.byName.get(name) as Socket;
    // The user's end resets one, and ends another cleanly…
    a.socket.resetAndDestroy();
    b.socket.end();
    await waitFor(() => serverSide('a').destroyed, 'the reset to reach the service');
    await waitFor(() => b.closed(), 'the clean close to come back');
    // …the service's end resets one.
    serverSide('c').resetAndDestroy();
    await waitFor(() => c.closed(), 'the service side reset to reach the user');
    // d is untouched and still carries bytes both ways.
    expect(d.closed()).toBe(false);
    d.socket.write('still here\n');
    await waitFor(() => d.got().endsWith('still here\n'), 'the untouched connection to echo');
    d.socket.end();
    await waitFor(() => d.closed(), 'd to close');
  });

  it('the forwarder survives the peer restarting: new connections dial again', async () => {
    expect(await exposer.cli.stop()).toBe(0);
    // While the peer is away, a connection fails fast with a clear log, and the forwarder stays.
    const failed = await roundTrip(forwarder.port, Buffer.from('x')).catch((e: Error) => e);
    expect(failed instanceof Error || failed.length === 0).toBe(true);
    exposer = await startExpose(['echo', `127.0.0.1:${echoPort}`], exposeData);
    const payload = randomBytes(200_000);
    let echoed: Buffer | undefined;
    for (let attempt = 0; attempt < 30 && !echoed?.equals(payload); attempt++) {
      if (attempt) await new Promise((r) => setTimeout(r, 1000));
      echoed = await roundTrip(forwarder.port, payload).catch(() => undefined);
    }
    expect(echoed?.equals(payload)).toBe(true);
    expect(forwarder.cli.child.exitCode).toBe(null);
  });
});

/** Sends one HTTP-over-stream request; resolves with the answer's head and body text. */
async function httpOverStream(node: MeshNodeHandle, peer: string, service: string, path: string) {
  const stream = await node.dial(peer, service);
  const writer = stream.writable.getWriter();
  await writer.write(encodeHead({ method: 'GET', path, headers: [] }));
  await writer.write(END_OF_BODY);
  const reader = stream.readable.getReader();
  const first = await reader.read();
  const head = first.done ? undefined : parseResponseHead(first.value);
  let body = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done || typeof value === 'string' || value.byteLength === 0) break;
    body += new TextDecoder().decode(value);
  }
  stream.close();
  return { head, body };
}

describe('bad input', { timeout: 240_000 }, () => {
  let client: MeshNodeHandle;
  beforeAll(async () => {
    client = await connectNode({
      gateway: gateway.url,
      dataDir: mkdtempSync(join(tmpdir(), 'rtcmesh-sv-')),
    });
  }, 120_000);
  afterAll(() => client.close());

  it('a device answering garbage instead of HTTP: a clear error, and the next request is served', async () => {
    const device = createServer((socket) => {
      socket.on('error', () => {});
      socket.once('data', (d: Buffer) => {
        if (d.toString().startsWith('GET /garbage'))
          socket.end('SSH-2.0-not-http-at-all\r\n\x00\x01\x02\r\n\r\n');
        else socket.end('HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\nfine!');
      });
    });
    const port = await serve(device);
    const { id } = await startExpose(['web', `127.0.0.1:${port}`, '--http']);
    const bad = await httpOverStream(client, id, 'web', '/garbage');
    expect(bad.head).toMatchObject({ error: expect.stringMatching(/did not answer HTTP/) });
    const good = await httpOverStream(client, id, 'web', '/');
    expect(good.head).toMatchObject({ status: 200 });
    expect(good.body).toBe('fine!');
  });

  it('a peer opening 1,000 streams to an exposed port: the excess is refused, nothing hangs, it keeps serving', async () => {
    const held = namedEcho();
    const port = await serve(held.server);
    const { cli, id } = await startExpose([
      'flood',
      `127.0.0.1:${port}`,
      '--max-connections',
      '100',
    ]);
    (await client.dial(id, 'flood')).close(); // the link, made once
    const outcomes = await Promise.all(
      Array.from({ length: 1000 }, async (_, i) => {
        let stream: MeshStream;
        try {
          stream = await client.dial(id, 'flood');
        } catch (err) {
          return `dial failed: ${(err as Error).message}`;
        }
        const reader = stream.readable.getReader();
        await stream.send(new TextEncoder().encode(`s${i}\n`)).catch(() => {});
        const first = await reader.read().catch(() => ({ done: true as const, value: undefined }));
        stream.close();
        if (first.done) return 'closed';
        return typeof first.value === 'string' ? first.value : 'echoed';
      }),
    );
    const count = (p: (o: string) => boolean) => outcomes.filter(p).length;
    expect(count((o) => o === 'echoed')).toBeGreaterThan(0);
    // Every stream got an answer; the refused ones were told why.
    const unclear = outcomes.filter(
      (o) => !o.includes('busy') && o !== 'echoed' && !o.startsWith('dial failed'),
    );
    expect(unclear).toEqual([]);
    expect(cli.err()).toMatch(/refused \d+ stream\(s\).*100 connections are open/);
    // And it still serves: a forward through it carries bytes.
    const forwarder = await startForward(id, 'flood');
    const payload = randomBytes(100_000);
    expect((await roundTrip(forwarder.port, payload)).equals(payload)).toBe(true);
    expect(cli.child.exitCode).toBe(null);
  });

  it('a forward to a closed port: the connection closes at once, with a clear error on both sides', async () => {
    const closed = createServer();
    const port = await serve(closed);
    await new Promise((r) => closed.close(r));
    const { cli, id } = await startExpose(['nothing', `127.0.0.1:${port}`]);
    const forwarder = await startForward(id, 'nothing');
    const got = await roundTrip(forwarder.port, Buffer.from('hello')).catch((e: Error) => e);
    expect(got instanceof Error || got.length === 0).toBe(true);
    await waitFor(
      () => /could not connect to 127\.0\.0\.1:\d+.*ECONNREFUSED/.test(cli.err()),
      'the device to say why',
    );
    await waitFor(
      () =>
        /the device could not connect to 127\.0\.0\.1:\d+.*ECONNREFUSED/.test(forwarder.cli.err()),
      'the forwarder to say why',
    );
    // Both keep running.
    expect(cli.child.exitCode).toBe(null);
    expect(forwarder.cli.child.exitCode).toBe(null);
  });
});

/** Whether anything listens on a loopback port. */
const listening = (port: number) =>
  new Promise<boolean>((resolve) => {
    const socket = connect({ port, host: '127.0.0.1' });
    socket.on('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.on('error', () => resolve(false));
  });

describe('the library: node.expose and node.forward', { timeout: 120_000 }, () => {
  it('carry connections; each handle closes only its own; a node closes its own handles', async () => {
    const echo = namedEcho();
    const port = await serve(echo.server);
    const dataDir = () => mkdtempSync(join(tmpdir(), 'rtcmesh-sv-'));
    const device = await connectNode({
      gateway: gateway.url,
      dataDir: dataDir(),
      accept: 'everyone',
    });
    const laptop = await connectNode({ gateway: gateway.url, dataDir: dataDir() });
    try {
      const served = device.expose('echo', { host: '127.0.0.1', port });
      const aborted = new AbortController();
      const first = await laptop.forward({
        port: 0,
        peer: device.id,
        service: 'echo',
        signal: aborted.signal,
      });
      const second = await laptop.forward({ port: 0, peer: device.ip6, service: 'echo' });
      const payload = randomBytes(300_000);
      expect((await roundTrip(first.port, payload)).equals(payload)).toBe(true);
      expect((await roundTrip(second.port, payload)).equals(payload)).toBe(true);
      // Aborting the first one's signal closes it, and only it.
      aborted.abort();
      expect(await listening(first.port)).toBe(false);
      expect((await roundTrip(second.port, payload)).equals(payload)).toBe(true);
      // The device stops serving: connections through the forward are turned away.
      served.close();
      expect((await roundTrip(second.port, payload).catch(() => Buffer.alloc(0))).length).toBe(0);
      // Closing the node closes its forward.
      await laptop.close();
      expect(await listening(second.port)).toBe(false);
    } finally {
      await laptop.close();
      await device.close();
    }
  });
});
