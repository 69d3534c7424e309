/**
 * The STUN/TURN server's UDP socket (src/node/turn/udp-listener.ts), both ways it runs:
 * batched (native/batch-udp, recvmmsg) and Node's dgram. Real sockets on loopback; the same
 * behaviour is asked of both. The TURN server's own tests run on the batched one (the
 * default); the last test here relays through a server on dgram, the fallback's path.
 */
import { createSocket, type Socket } from 'node:dgram';
import { afterEach, describe, expect, it } from 'vitest';
import { Method, XorPeerAddress, XorRelayedAddress } from '../src/node/stun/index.ts';
import { ChannelNumber, RequestedTransport } from '../src/node/turn/codec/attributes.ts';
import { decodeChannelData, encodeChannelData } from '../src/node/turn/codec/channel-data.ts';
import { TurnServer } from '../src/node/turn/server.ts';
import { batchedUdpAvailable, listenUdp, type UdpIo } from '../src/node/turn/udp-listener.ts';
import { attr, codeOf, TestTurnClient } from './support/turn-client.ts';

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

interface Heard {
  bytes: Uint8Array;
  address: string;
  port: number;
}

async function listen(io: UdpIo, host = '127.0.0.1', port = 0) {
  const heard: Heard[] = [];
  const errors: Error[] = [];
  let sendFailures = 0;
  const listener = await listenUdp({
    host,
    port,
    bufferBytes: 4 * 1024 * 1024,
    io,
    // The bytes are lent: kept ones are copied.
    onDatagram: (bytes, address, port) => heard.push({ bytes: bytes.slice(), address, port }),
    onError: (err) => errors.push(err),
    onSendFailed: () => sendFailures++,
  });
  cleanups.push(() => listener.close());
  return { listener, heard, errors, sendFailures: () => sendFailures };
}

async function peerSocket(type: 'udp4' | 'udp6' = 'udp4'): Promise<Socket> {
  const socket = createSocket(type);
  await new Promise<void>((resolve) =>
    socket.bind(0, type === 'udp4' ? '127.0.0.1' : '::1', () => resolve()),
  );
  cleanups.push(() => socket.close());
  return socket;
}

/** How long a poll waits for datagrams on loopback: long, so a loaded machine is not a failure. */
const ARRIVAL = { timeout: 30_000 };

/** Datagram i: its number, then i bytes of (i & 0xff), so a mixed-up or cut one shows. */
const numbered = (i: number) => {
  const bytes = new Uint8Array(4 + i).fill(i & 0xff);
  new DataView(bytes.buffer).setUint32(0, i);
  return bytes;
};

describe.each(['batched', 'dgram'] as const)('the UDP listener (%s)', (io) => {
  it('uses the I/O it was asked for', async () => {
    const { listener } = await listen(io);
    expect(listener.io).toBe(io);
  });

  it('hears every datagram whole, in order, with its source, many more than a batch', async () => {
    const { listener, heard, errors } = await listen(io);
    const peer = await peerSocket();
    const count = 500;
    for (let i = 0; i < count; i++) {
      peer.send(numbered(i), listener.port, '127.0.0.1');
      // Within any receive buffer: the point is the batches, not the system's limits.
      if (i % 50 === 49) await new Promise((r) => setTimeout(r, 1));
    }
    await expect.poll(() => heard.length, ARRIVAL).toBe(count);
    expect(heard.every((h, i) => Buffer.compare(h.bytes, numbered(i)) === 0)).toBe(true);
    expect(new Set(heard.map((h) => `${h.address}:${h.port}`))).toEqual(
      new Set([`127.0.0.1:${peer.address().port}`]),
    );
    // The largest datagram UDP over IPv4 carries arrives whole too.
    const largest = new Uint8Array(65_507).fill(7);
    peer.send(largest, listener.port, '127.0.0.1');
    await expect.poll(() => heard.length, ARRIVAL).toBe(count + 1);
    expect(Buffer.compare(heard[count]?.bytes ?? new Uint8Array(), largest)).toBe(0);
    expect(errors).toEqual([]);
  });

  it('tells sources apart within a batch, over IPv6 too', async () => {
    const { listener, heard } = await listen(io, '::1');
    const peers = [await peerSocket('udp6'), await peerSocket('udp6')];
    for (let i = 0; i < 20; i++) peers[i % 2]?.send(numbered(i), listener.port, '::1');
    await expect.poll(() => heard.length, ARRIVAL).toBe(20);
    heard.sort((a, b) => (a.bytes[3] as number) - (b.bytes[3] as number));
    expect(heard.map((h) => `${h.address}:${h.port}`)).toEqual(
      Array.from({ length: 20 }, (_, i) => `::1:${peers[i % 2]?.address().port}`),
    );
  });

  it('sends to an address and port, and refuses what cannot be sent without throwing', async () => {
    const { listener, sendFailures } = await listen(io);
    const peer = await peerSocket();
    const got = new Promise<{ msg: Buffer; port: number }>((resolve) =>
      peer.once('message', (msg, rinfo) => resolve({ msg, port: rinfo.port })),
    );
    expect(listener.send(numbered(9), peer.address().port, '127.0.0.1')).toBe(true);
    const { msg, port } = await got;
    expect(Buffer.compare(msg, numbered(9))).toBe(0);
    expect(port).toBe(listener.port);
    // Port 0 is no one's; an IPv6 address is not reachable from an IPv4 socket.
    expect(listener.send(numbered(1), 0, '127.0.0.1')).toBe(false);
    const refusedLater = listener.send(numbered(1), 9, '::1') ? 1 : 0;
    await expect.poll(() => sendFailures(), ARRIVAL).toBe(refusedLater);
  });

  it("says a port is taken as Node's sockets do, and frees its port on close", async () => {
    const { listener } = await listen(io);
    const port = listener.port;
    await expect(listen(io, '127.0.0.1', port)).rejects.toMatchObject({
      code: 'EADDRINUSE',
      message: expect.stringContaining(`127.0.0.1:${port}`),
    });
    await listener.close();
    const again = await listen(io, '127.0.0.1', port);
    expect(again.listener.port).toBe(port);
  });
});

it.runIf(process.platform === 'linux')(
  'is batched on Linux: npm install and npm run build compile native/batch-udp',
  () => {
    expect(batchedUdpAvailable()).toEqual({ available: true });
  },
);

it("relays ChannelData between two allocations on Node's dgram (where the addon is not built)", async () => {
  const secret = 'listener-test';
  const server = await TurnServer.start({
    listen: { host: '127.0.0.1', port: 0 },
    relayIp: '127.0.0.1',
    secret,
    allowPrivatePeers: true,
    udpIo: 'dgram',
  });
  cleanups.push(() => server.close());
  expect(server.udpIo).toBe('dgram');
  const open = async (user: string) => {
    const c = await TestTurnClient.open(
      { host: '127.0.0.1', port: server.port },
      TestTurnClient.credentials(secret, user),
    );
    cleanups.push(() => c.close());
    const res = await c.request(Method.ALLOCATE, (b) => b.add(RequestedTransport, 17));
    return { c, relay: attr(res, XorRelayedAddress) };
  };
  const a = await open('node-a');
  const b = await open('node-b');
  const bind = (c: TestTurnClient, to: { address: string; port: number }) =>
    c.request(Method.CHANNEL_BIND, (m) => m.add(ChannelNumber, 0x4000).add(XorPeerAddress, to));
  expect(codeOf(await bind(a.c, b.relay))).toBe(0);
  expect(codeOf(await bind(b.c, a.relay))).toBe(0);
  a.c.sendRaw(encodeChannelData({ channel: 0x4000, data: numbered(300) }));
  const frame = await b.c.next((d) => d.bytes[0] === 0x40, ARRIVAL.timeout);
  expect(decodeChannelData(frame?.bytes ?? new Uint8Array())).toEqual({
    channel: 0x4000,
    data: numbered(300),
  });
});
