/**
 * 100,000 bad datagrams at a real gateway's two UDP ports (STUN/TURN, and the WebRTC port
 * libjuice serves): valid STUN, TURN and ChannelData messages with bits flipped, truncated
 * or extended, headers with lying lengths, and random bytes. Afterwards the gateway still
 * answers a STUN Binding, /healthz is ok, a WebRTC node session still connects, and its
 * memory grew by less than a generous bound. Bounded, seeded, loopback only.
 */
import { createSocket, type Socket } from 'node:dgram';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { type GatewayProcess, metric, startGateway } from '../e2e/support/gateway-process.ts';
import {
  MessageBuilder,
  Method,
  Software,
  shortTermKey,
  Username,
  XorMappedAddress,
  XorPeerAddress,
} from '../src/node/stun/index.ts';
import {
  ChannelNumber,
  Data,
  EvenPort,
  Lifetime,
  RequestedTransport,
} from '../src/node/turn/codec/attributes.ts';
import { encodeChannelData } from '../src/node/turn/codec/channel-data.ts';
import { startNodeNode } from './support/node-node.ts';
import { attr, codeOf, openPeer, TestTurnClient } from './support/turn-client.ts';

const DATAGRAMS = 100_000;
const BATCH = 250;
const MEMORY_GROWTH_BOUND = 100 * 1024 * 1024;
const SEED = Number(process.env.RTCMESH_FUZZ_SEED ?? 0x5eed) >>> 0;

let gateway: GatewayProcess;
beforeAll(async () => {
  // Private peers allowed, so authenticated relaying to the loopback sink really happens.
  gateway = await startGateway({ args: ['--turn-allow-private'] });
});
afterAll(async () => {
  await gateway.stop();
});

/** mulberry32: a small seeded generator, so a failure can be replayed with RTCMESH_FUZZ_SEED. */
function random(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A metric of the gateway's; one that is missing fails the test here, not as NaN later. */
async function metricOf(name: string): Promise<number> {
  const value = await metric(gateway, name);
  if (Number.isNaN(value)) throw new Error(`no ${name} in /metrics`);
  return value;
}

async function socketOn(): Promise<Socket> {
  const s = createSocket('udp4');
  await new Promise<void>((resolve) => s.bind(0, '127.0.0.1', () => resolve()));
  s.on('message', () => {}); // replies are read and dropped
  return s;
}

it('keeps serving after 100,000 random and mutated datagrams, with bounded memory', async () => {
  const turnPort = gateway.turnPort ?? 0;
  const secret = readFileSync(join(gateway.dataDir, 'turn-secret'), 'utf8').trim();
  const next = random(SEED);
  const int = (n: number) => Math.floor(next() * n);
  const noise = (n: number) => Uint8Array.from({ length: n }, () => int(256));

  // A client with a real allocation, permission and channel towards a sink on loopback, so
  // mutated Send indications and ChannelData reach the relay code, not just the parser.
  const client = await TestTurnClient.open(
    { host: '127.0.0.1', port: turnPort },
    TestTurnClient.credentials(secret, 'fuzzer'),
  );
  const sink = await openPeer();
  const allocated = await client.request(Method.ALLOCATE, (b) => b.add(RequestedTransport, 17));
  expect(codeOf(allocated)).toBe(0);
  const toSink = { address: '127.0.0.1', port: sink.port };
  expect(
    codeOf(
      await client.request(Method.CHANNEL_BIND, (b) =>
        b.add(ChannelNumber, 0x4001).add(XorPeerAddress, toSink),
      ),
    ),
  ).toBe(0);

  const valid: Uint8Array[] = [
    new MessageBuilder(Method.BINDING, 'request').build(),
    new MessageBuilder(Method.BINDING, 'request')
      .add(Software, 'fuzz')
      .build({ fingerprint: true }),
    new MessageBuilder(Method.ALLOCATE, 'request').add(RequestedTransport, 17).build(),
    client.signed(Method.ALLOCATE, (b) =>
      b.add(RequestedTransport, 17).add(EvenPort, { reserveNext: true }),
    ),
    client.signed(Method.REFRESH, (b) => b.add(Lifetime, 600)),
    client.signed(Method.CREATE_PERMISSION, (b) => b.add(XorPeerAddress, toSink)),
    client.signed(Method.CHANNEL_BIND, (b) =>
      b.add(ChannelNumber, 0x4001).add(XorPeerAddress, toSink),
    ),
    new MessageBuilder(Method.SEND, 'indication')
      .add(XorPeerAddress, toSink)
      .add(Data, new Uint8Array(64))
      .build(),
    encodeChannelData({ channel: 0x4001, data: new Uint8Array(100) }),
    encodeChannelData({ channel: 0x4001, data: new Uint8Array(7) }, { pad: true }),
    // What ICE and DTLS put on the WebRTC port.
    new MessageBuilder(Method.BINDING, 'request')
      .add(Username, 'abcd:efgh')
      .addRaw(0x0024, new Uint8Array([0x6e, 0, 1, 0xff]))
      .addRaw(0x802a, new Uint8Array(8))
      .build({ integrity: { key: shortTermKey('0123456789abcdefghijkl') }, fingerprint: true }),
    new Uint8Array([
      0x16,
      0xfe,
      0xfd,
      0,
      0,
      0,
      0,
      0,
      0,
      0,
      0,
      0,
      0x80,
      1,
      ...new Array<number>(128).fill(7),
    ]),
    new MessageBuilder(Method.BINDING, 'success')
      .add(XorMappedAddress, { address: '127.0.0.1', port: 9 })
      .build(),
  ];

  function mutate(): Uint8Array {
    const kind = int(10);
    if (kind === 0) return noise(int(1500));
    const seed = valid[int(valid.length)] as Uint8Array;
    const bytes = seed.slice();
    if (kind <= 5) {
      const flips = 1 + int(8);
      for (let f = 0; f < flips; f++) {
        const bit = int(bytes.length * 8);
        bytes[bit >> 3] = (bytes[bit >> 3] ?? 0) ^ (1 << (bit & 7));
      }
      return bytes;
    }
    if (kind === 6) return bytes.subarray(0, int(bytes.length));
    if (kind === 7) {
      const longer = new Uint8Array(bytes.length + 1 + int(64));
      longer.set(bytes);
      longer.set(noise(longer.length - bytes.length), bytes.length);
      return longer;
    }
    if (kind === 8) {
      // A header whose length lies about what follows.
      new DataView(bytes.buffer).setUint16(2, int(0x10000));
      return bytes;
    }
    return bytes; // as is: the valid paths run too
  }

  const senders = [client.socket, await socketOn(), await socketOn(), await socketOn()];
  const rssBefore = await metricOf('process_resident_memory_bytes');
  const turnBefore =
    (await metricOf('rtcmesh_turn_requests_total')) +
    (await metricOf('rtcmesh_turn_dropped_total'));
  let toTurn = 0;
  for (let sent = 0; sent < DATAGRAMS; sent += BATCH) {
    await Promise.all(
      Array.from({ length: BATCH }, () => {
        const bytes = mutate();
        const turn = next() < 0.6;
        if (turn) toTurn++;
        const socket = senders[int(senders.length)] as Socket;
        return new Promise<void>((resolve) =>
          socket.send(bytes, turn ? turnPort : gateway.udpPort, '127.0.0.1', () => resolve()),
        );
      }),
    );
    // Pace a little, so the gateway parses the datagrams rather than the kernel dropping them.
    await new Promise((resolve) => setTimeout(resolve, 2));
  }

  // Still serving: a STUN Binding, /healthz, and a WebRTC session for a real node.
  expect(gateway.process.exitCode).toBeNull();
  // From another source: the fuzzing one has spent its unauthenticated answers, by design.
  const probe = await TestTurnClient.open(
    { host: '127.0.0.1', port: turnPort },
    client,
    '127.0.0.2',
  );
  const binding = await probe.transact(new MessageBuilder(Method.BINDING, 'request').build());
  expect(attr(binding, XorMappedAddress)).toEqual({ address: '127.0.0.2', port: probe.port });
  expect(await (await fetch(`${gateway.url}/healthz`)).text()).toBe('ok\n');
  const node = await startNodeNode(gateway.url); // resolves once its session is connected
  node.node.stop();

  // The datagrams were handled by the server, not lost on the way.
  const handled =
    (await metricOf('rtcmesh_turn_requests_total')) +
    (await metricOf('rtcmesh_turn_dropped_total')) -
    turnBefore;
  expect(handled).toBeGreaterThan(toTurn * 0.5);
  const growth = (await metricOf('process_resident_memory_bytes')) - rssBefore;
  console.log(
    `turn-abuse: seed ${SEED}, ${toTurn} datagrams to TURN (${handled} handled), ${DATAGRAMS - toTurn} to WebRTC; rss grew ${(growth / 1e6).toFixed(1)} MB`,
  );
  expect(growth).toBeLessThan(MEMORY_GROWTH_BOUND);
  expect(sink.received.length).toBeGreaterThan(0); // the relay path ran, not only the parser
  expect(gateway.output()).not.toMatch(/TURN: (a datagram|a request|a relayed)/);
  for (const s of senders) s.close();
  probe.close();
  sink.close();
}, 120_000);
