/**
 * The TURN server (src/node/turn/server.ts) over real UDP sockets on loopback, with a clock
 * the tests move: authentication and nonces, allocation lifetimes, permission and channel
 * rules (RFC 8656 §9, §12), relaying both ways, and quotas.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  AttributeType,
  checkFingerprint,
  checkIntegrity,
  decodeMessage,
  longTermKey,
  MessageBuilder,
  Method,
  Nonce,
  Realm,
  type StunMessage,
  UnknownAttributes,
  Username,
  XorMappedAddress,
  XorPeerAddress,
  XorRelayedAddress,
} from '../src/node/stun/index.ts';
import {
  ChannelNumber,
  Data,
  DontFragment,
  EvenPort,
  Lifetime,
  RequestedAddressFamily,
  RequestedTransport,
  ReservationToken,
} from '../src/node/turn/codec/attributes.ts';
import { decodeChannelData, encodeChannelData } from '../src/node/turn/codec/channel-data.ts';
import { type TurnLimits, TurnServer } from '../src/node/turn/server.ts';
import { attr, codeOf, hasIntegrity, openPeer, TestTurnClient } from './support/turn-client.ts';

const SECRET = 'test-secret';
let clock = Date.now();
let server: TurnServer;
const opened: { close(): void }[] = [];

async function startServer(
  options: {
    allowPrivatePeers?: boolean;
    limits?: Partial<TurnLimits>;
    ownEndpoints?: { address: string; port: number }[];
  } = {},
): Promise<TurnServer> {
  return TurnServer.start({
    listen: { host: '127.0.0.1', port: 0 },
    relayIp: '127.0.0.1',
    secret: SECRET,
    allowPrivatePeers: options.allowPrivatePeers ?? true,
    ...(options.limits ? { limits: options.limits } : {}),
    ...(options.ownEndpoints ? { ownEndpoints: options.ownEndpoints } : {}),
    now: () => clock,
  });
}

async function client(user = 'node-a', on = server): Promise<TestTurnClient> {
  const c = await TestTurnClient.open(
    { host: '127.0.0.1', port: on.port },
    TestTurnClient.credentials(SECRET, user),
  );
  opened.push(c);
  return c;
}

async function peer(address = '127.0.0.1') {
  const p = await openPeer(address);
  opened.push(p);
  return p;
}

const udp = (b: MessageBuilder) => b.add(RequestedTransport, 17);

async function allocate(c: TestTurnClient, fill: (b: MessageBuilder) => void = () => {}) {
  const res = await c.request(Method.ALLOCATE, (b) => {
    udp(b);
    fill(b);
  });
  expect(codeOf(res)).toBe(0);
  return attr(res, XorRelayedAddress);
}

const permit = (c: TestTurnClient, port: number, address = '127.0.0.1') =>
  c.request(Method.CREATE_PERMISSION, (b) => b.add(XorPeerAddress, { address, port }));

const bind = (c: TestTurnClient, channel: number, port: number, address = '127.0.0.1') =>
  c.request(Method.CHANNEL_BIND, (b) =>
    b.add(ChannelNumber, channel).add(XorPeerAddress, { address, port }),
  );

function sendIndication(c: TestTurnClient, port: number, data: Uint8Array, address = '127.0.0.1') {
  c.sendRaw(
    new MessageBuilder(Method.SEND, 'indication')
      .add(XorPeerAddress, { address, port })
      .add(Data, data)
      .build(),
  );
}

const text = (s: string) => new TextEncoder().encode(s);
const fromStun = (bytes: Uint8Array): StunMessage | undefined => {
  try {
    return decodeMessage(bytes);
  } catch {
    return undefined;
  }
};

beforeEach(async () => {
  clock = Date.now();
  server = await startServer();
});
afterEach(async () => {
  for (const o of opened.splice(0)) o.close();
  await server.close();
});

describe('Binding', () => {
  it('answers with the XOR-MAPPED-ADDRESS it saw, with a fingerprint when asked', async () => {
    const c = await client();
    const plain = await c.transact(new MessageBuilder(Method.BINDING, 'request').build());
    expect(plain.cls).toBe('success');
    expect(attr(plain, XorMappedAddress)).toEqual({ address: '127.0.0.1', port: c.port });
    expect(plain.has(AttributeType.FINGERPRINT)).toBe(false);
    const fp = await c.transact(
      new MessageBuilder(Method.BINDING, 'request').build({ fingerprint: true }),
    );
    expect(checkFingerprint(fp)).toBe(true);
  });

  it('says 420 with UNKNOWN-ATTRIBUTES for a comprehension-required attribute it does not know', async () => {
    const c = await client();
    const res = await c.transact(
      new MessageBuilder(Method.BINDING, 'request')
        .addRaw(0x0003, new Uint8Array(4)) // CHANGE-REQUEST (RFC 5780), not supported
        .addRaw(0x8055, new Uint8Array(4)) // comprehension-optional: ignored
        .build(),
    );
    expect(codeOf(res)).toBe(420);
    expect(res.get(UnknownAttributes)).toEqual([0x0003]);
  });
});

describe('long-term credentials', () => {
  it('challenges with 401, REALM and NONCE, then accepts the signed request', async () => {
    const c = await client();
    const challenge = await c.transact(udp(new MessageBuilder(Method.ALLOCATE, 'request')).build());
    expect(codeOf(challenge)).toBe(401);
    expect(challenge.get(Realm)).toBe('rtcmesh');
    expect(challenge.get(Nonce)).toMatch(/^[\w-]{8}$/);
    expect(hasIntegrity(challenge)).toBe(false);
    c.learn(challenge);
    const res = await c.transact(c.signed(Method.ALLOCATE, udp));
    expect(codeOf(res)).toBe(0);
    // The response is signed with the same key.
    expect(checkIntegrity(res, c.key)).toBe('sha1');
  });

  it('accepts MESSAGE-INTEGRITY-SHA256 and answers with it', async () => {
    const c = await client();
    const res = await c.request(Method.ALLOCATE, udp, { algorithm: 'sha256' });
    expect(codeOf(res)).toBe(0);
    expect(res.has(AttributeType.MESSAGE_INTEGRITY_SHA256)).toBe(true);
    expect(checkIntegrity(res, c.key)).toBe('sha256');
  });

  it('refuses a wrong password, an expired username, another realm, and a missing NONCE', async () => {
    const wrong = await client();
    wrong.password = 'not the password';
    expect(codeOf(await wrong.request(Method.ALLOCATE, udp))).toBe(401);

    const expired = await client();
    Object.assign(
      expired,
      TestTurnClient.credentials(SECRET, 'node-a', Math.floor(clock / 1000) - 1),
    );
    expect(codeOf(await expired.request(Method.ALLOCATE, udp))).toBe(401);

    const notRest = await client();
    notRest.username = 'alice';
    expect(codeOf(await notRest.request(Method.ALLOCATE, udp))).toBe(401);

    const otherRealm = await client();
    otherRealm.learn(
      await otherRealm.transact(udp(new MessageBuilder(Method.ALLOCATE, 'request')).build()),
    );
    otherRealm.realm = 'elsewhere';
    expect(codeOf(await otherRealm.transact(otherRealm.signed(Method.ALLOCATE, udp)))).toBe(401);

    const noNonce = await client();
    const res = await noNonce.transact(
      udp(new MessageBuilder(Method.ALLOCATE, 'request'))
        .add(Username, noNonce.username)
        .add(Realm, 'rtcmesh')
        .build({ integrity: { key: longTermKey(noNonce.username, 'rtcmesh', noNonce.password) } }),
    );
    expect(codeOf(res)).toBe(400);
  });

  it('says 438 Stale Nonce when the nonce expired or belongs to another address', async () => {
    const c = await client();
    expect(codeOf(await c.request(Method.ALLOCATE, udp))).toBe(0);
    const staleNonce = c.nonce;
    clock += 601_000; // the nonce lives 600 s; the allocation too, so refresh is 437 after this
    const stale = await c.transact(c.signed(Method.REFRESH));
    expect(codeOf(stale)).toBe(438);
    expect(stale.get(Nonce)).not.toBe(staleNonce);
    expect(stale.get(Realm)).toBe('rtcmesh');
    // With the new nonce the request goes through (and finds the allocation expired).
    c.learn(stale);
    expect(codeOf(await c.transact(c.signed(Method.REFRESH)))).toBe(437);

    // A nonce handed to one client address is stale from another.
    const other = await client();
    other.realm = c.realm;
    other.nonce = c.nonce;
    expect(codeOf(await other.transact(other.signed(Method.ALLOCATE, udp)))).toBe(438);
    // And a made-up one.
    other.nonce = 'AAAAAAAA'; // well formed, never issued
    expect(codeOf(await other.transact(other.signed(Method.ALLOCATE, udp)))).toBe(438);
  });
});

describe('Allocate and Refresh', () => {
  it('allocates a relay on the relay address with the default, clamped or asked lifetime', async () => {
    const c = await client();
    const res = await c.request(Method.ALLOCATE, udp);
    const relayed = attr(res, XorRelayedAddress);
    expect(relayed.address).toBe('127.0.0.1');
    expect(relayed.port).toBeGreaterThan(0);
    expect(attr(res, Lifetime)).toBe(600);
    expect(attr(res, XorMappedAddress)).toEqual({ address: '127.0.0.1', port: c.port });
    expect(server.allocationCount).toBe(1);

    for (const [asked, given] of [
      [30, 600],
      [1200, 1200],
      [100_000, 3600],
    ]) {
      const other = await client();
      const r = await other.request(Method.ALLOCATE, (b) => udp(b).add(Lifetime, asked as number));
      expect(attr(r, Lifetime)).toBe(given);
    }
    // Refresh follows the same rule.
    expect(attr(await c.request(Method.REFRESH, (b) => b.add(Lifetime, 10)), Lifetime)).toBe(600);
    expect(attr(await c.request(Method.REFRESH, (b) => b.add(Lifetime, 7200)), Lifetime)).toBe(
      3600,
    );
    expect(attr(await c.request(Method.REFRESH), Lifetime)).toBe(600);
  });

  it('refuses what it does not do: no transport, TCP, IPv6, DONT-FRAGMENT', async () => {
    const c = await client();
    expect(codeOf(await c.request(Method.ALLOCATE))).toBe(400);
    expect(codeOf(await c.request(Method.ALLOCATE, (b) => b.add(RequestedTransport, 6)))).toBe(442);
    expect(
      codeOf(await c.request(Method.ALLOCATE, (b) => udp(b).add(RequestedAddressFamily, 'ipv6'))),
    ).toBe(440);
    expect(
      codeOf(await c.request(Method.ALLOCATE, (b) => udp(b).add(RequestedAddressFamily, 7))),
    ).toBe(440);
    const df = await c.request(Method.ALLOCATE, (b) => udp(b).add(DontFragment, true));
    expect(codeOf(df)).toBe(420);
    expect(df.get(UnknownAttributes)).toEqual([AttributeType.DONT_FRAGMENT]);
    expect(checkIntegrity(df, c.key)).toBe('sha1'); // errors after authentication are signed
    // A malformed attribute is a bad request.
    expect(
      codeOf(
        await c.request(Method.ALLOCATE, (b) =>
          udp(b).addRaw(AttributeType.LIFETIME, new Uint8Array(2)),
        ),
      ),
    ).toBe(400);
    expect(server.allocationCount).toBe(0);
  });

  it('answers a retransmitted Allocate the same, and another Allocate with 437', async () => {
    const c = await client();
    const challenge = await c.transact(udp(new MessageBuilder(Method.ALLOCATE, 'request')).build());
    c.learn(challenge);
    const request = c.signed(Method.ALLOCATE, udp);
    const first = await c.transact(request);
    const again = await c.transact(request);
    expect(codeOf(first)).toBe(0);
    expect(Buffer.from(again.raw).equals(Buffer.from(first.raw))).toBe(true);
    expect(codeOf(await c.request(Method.ALLOCATE, udp))).toBe(437);
    expect(server.allocationCount).toBe(1);
  });

  it('deletes with LIFETIME 0, expires without Refresh, and keeps one username per allocation', async () => {
    const c = await client();
    await allocate(c);
    const deleted = await c.request(Method.REFRESH, (b) => b.add(Lifetime, 0));
    expect(attr(deleted, Lifetime)).toBe(0);
    expect(server.allocationCount).toBe(0);
    expect(codeOf(await c.request(Method.REFRESH))).toBe(437);

    await allocate(c);
    // The same 5-tuple with other credentials: 441 Wrong Credentials.
    const own = { username: c.username, password: c.password };
    Object.assign(c, TestTurnClient.credentials(SECRET, 'node-b'));
    expect(codeOf(await c.request(Method.REFRESH))).toBe(441);
    Object.assign(c, own);

    clock += 599_000;
    expect(codeOf(await c.request(Method.REFRESH, (b) => b.add(Lifetime, 600)))).toBe(0);
    clock += 599_000;
    expect(server.allocationCount).toBe(1);
    clock += 2000;
    server.sweep();
    expect(server.allocationCount).toBe(0);
  });

  it('EVEN-PORT gives an even port, and with R the next one through RESERVATION-TOKEN', async () => {
    const c = await client();
    const even = await allocate(c, (b) => b.add(EvenPort, { reserveNext: false }));
    expect(even.port % 2).toBe(0);

    const rtp = await client();
    const res = await rtp.request(Method.ALLOCATE, (b) =>
      udp(b).add(EvenPort, { reserveNext: true }),
    );
    const rtpPort = attr(res, XorRelayedAddress).port;
    expect(rtpPort % 2).toBe(0);
    const token = attr(res, ReservationToken);
    const rtcp = await client();
    const reserved = await rtcp.request(Method.ALLOCATE, (b) =>
      udp(b).add(ReservationToken, token),
    );
    expect(attr(reserved, XorRelayedAddress).port).toBe(rtpPort + 1);
    // A token is good once, and not together with EVEN-PORT.
    const late = await client();
    expect(
      codeOf(await late.request(Method.ALLOCATE, (b) => udp(b).add(ReservationToken, token))),
    ).toBe(508);
    expect(
      codeOf(
        await late.request(Method.ALLOCATE, (b) =>
          udp(b).add(ReservationToken, token).add(EvenPort, { reserveNext: false }),
        ),
      ),
    ).toBe(400);
  });
});

describe('permissions and relaying (RFC 8656 §9–11)', () => {
  it('relays Send indications only to permitted peers, and answers as Data indications', async () => {
    const c = await client();
    const relayed = await allocate(c);
    const p = await peer();
    sendIndication(c, p.port, text('before permission'));
    expect(await p.next(300)).toBeUndefined();
    expect(server.stats.dropped['no-permission']).toBe(1);

    expect(codeOf(await permit(c, 9))).toBe(0); // the port does not matter: permissions are per IP
    sendIndication(c, p.port, text('hello peer'));
    const got = await p.next();
    expect(new TextDecoder().decode(got?.bytes)).toBe('hello peer');
    expect(got?.from).toEqual(relayed);

    p.socket.send(text('hello client'), relayed.port, relayed.address);
    const data = await c.next((d) => fromStun(d.bytes)?.method === Method.DATA);
    const indication = decodeMessage(data?.bytes ?? new Uint8Array());
    expect(indication.cls).toBe('indication');
    expect(attr(indication, XorPeerAddress)).toEqual({ address: '127.0.0.1', port: p.port });
    expect(new TextDecoder().decode(attr(indication, Data))).toBe('hello client');
    expect(server.stats.bytesToPeer).toBe(10);
    expect(server.stats.bytesToClient).toBe(12);
  });

  it('drops data from peers without a permission, and permissions end after 300 s', async () => {
    const c = await client();
    const relayed = await allocate(c);
    const p = await peer();
    const stranger = await peer('127.0.0.2');
    await permit(c, p.port);
    stranger.socket.send(text('let me in'), relayed.port, relayed.address);
    expect(await c.next((d) => fromStun(d.bytes)?.method === Method.DATA, 300)).toBeUndefined();

    clock += 301_000;
    sendIndication(c, p.port, text('too late'));
    p.socket.send(text('too late too'), relayed.port, relayed.address);
    expect(await p.next(300)).toBeUndefined();
    expect(await c.next((d) => fromStun(d.bytes)?.method === Method.DATA, 300)).toBeUndefined();
    expect(server.stats.dropped['no-permission']).toBe(3);
  });

  it('refuses bad and forbidden peers: 400, 403, 443', async () => {
    const c = await client();
    await allocate(c);
    expect(codeOf(await c.request(Method.CREATE_PERMISSION))).toBe(400);
    expect(codeOf(await permit(c, 1, '::1'))).toBe(443);
    expect(codeOf(await permit(c, 1, '224.0.0.1'))).toBe(403); // never, even with private allowed
    expect(codeOf(await permit(c, 1, '0.0.0.0'))).toBe(403);
    expect(codeOf(await permit(c, 1, '255.255.255.255'))).toBe(403);
    expect(codeOf(await permit(c, server.port, '127.0.0.1'))).toBe(403); // the server itself
  });

  it('refuses loopback, private and link-local peers by default (403)', async () => {
    const strict = await startServer({ allowPrivatePeers: false });
    try {
      const c = await client('node-a', strict);
      await allocate(c);
      for (const address of [
        '127.0.0.1',
        '10.1.2.3',
        '172.16.0.1',
        '192.168.1.1',
        '169.254.0.1',
        '100.64.0.1',
      ]) {
        expect(codeOf(await permit(c, 1000, address)), address).toBe(403);
        expect(codeOf(await bind(c, 0x4000, 1000, address)), address).toBe(403);
      }
      // Public addresses are fine (nothing is sent to them here).
      expect(codeOf(await permit(c, 1000, '192.0.2.1'))).toBe(0);
    } finally {
      await strict.close();
    }
  });
});

describe("the gateway's own WebRTC endpoint (a UDP-blocked browser's way to its gateway)", () => {
  it('is relayed to on a private address; other ports of that host and other private peers are not', async () => {
    const endpoint = await peer();
    const otherPort = await peer();
    const strict = await startServer({
      allowPrivatePeers: false,
      ownEndpoints: [{ address: '127.0.0.1', port: endpoint.port }],
    });
    try {
      const c = await client('node-a', strict);
      await allocate(c);
      expect(codeOf(await permit(c, endpoint.port))).toBe(0);
      expect(codeOf(await bind(c, 0x4000, endpoint.port))).toBe(0);
      expect(codeOf(await bind(c, 0x4001, otherPort.port))).toBe(403);
      expect(codeOf(await permit(c, 1000, '10.1.2.3'))).toBe(403);
      sendIndication(c, endpoint.port, text('to the gateway'));
      expect(new TextDecoder().decode((await endpoint.next(5000))?.bytes)).toBe('to the gateway');
      // The permission is for the IP; the port is checked on every datagram.
      sendIndication(c, otherPort.port, text('elsewhere'));
      expect(await otherPort.next(300)).toBeUndefined();
      expect(strict.stats.dropped['no-permission']).toBe(1);
    } finally {
      await strict.close();
    }
  });
});

describe('relaying between two allocations on this server', () => {
  it("hands datagrams over within the server, in order and whole, under both sides' permissions", async () => {
    const a = await client('node-a');
    const b = await client('node-b');
    const relayA = await allocate(a);
    const relayB = await allocate(b);
    // A may send to B's relay address, but B has not let A's in: nothing reaches B.
    expect(codeOf(await permit(a, relayB.port))).toBe(0);
    sendIndication(a, relayB.port, text('not yet'));
    await expect.poll(() => server.stats.dropped['no-permission']).toBe(1);
    expect(await b.next((d) => fromStun(d.bytes)?.method === Method.DATA, 300)).toBeUndefined();

    // B binds a channel to A's relay address (which permits it), A one to B's.
    expect(codeOf(await bind(b, 0x4001, relayA.port))).toBe(0);
    expect(codeOf(await bind(a, 0x4000, relayB.port))).toBe(0);
    // Many datagrams of a typical SCTP packet's size, each numbered, sent in bursts.
    const count = 2000;
    const size = 1200;
    const packet = (i: number) => new Uint8Array(size).fill(i & 0xff).fill(i >> 8, 0, 1);
    const received: Uint8Array[] = [];
    const done = new Promise<void>((resolve) => {
      b.socket.on('message', (msg: Buffer) => {
        if (msg[0] !== 0x40) return;
        received.push(decodeChannelData(new Uint8Array(msg)).data.slice());
        if (received.length === count) resolve();
      });
    });
    for (let i = 0; i < count; i++) {
      a.sendRaw(encodeChannelData({ channel: 0x4000, data: packet(i) }));
      // Bursts of 50: within any receive buffer, however small the system keeps them.
      if (i % 50 === 49) await new Promise((r) => setTimeout(r, 1));
    }
    await done;
    expect(received.map((d, i) => Buffer.compare(d, packet(i)) === 0).every(Boolean)).toBe(true);
    // Both ways: B's ChannelData reaches A from B's relay address, on A's channel.
    b.sendRaw(encodeChannelData({ channel: 0x4001, data: text('back to A') }));
    const frame = await a.next((d) => d.bytes[0] === 0x40);
    expect(decodeChannelData(frame?.bytes ?? new Uint8Array())).toEqual({
      channel: 0x4000,
      data: text('back to A'),
    });
    // 'not yet' was handed over too, and dropped on B's side.
    expect(server.stats.packetsWithinServer).toBe(count + 2);
    expect(server.stats.bytesToPeer).toBe(count * size + 7 + 9);
    expect(server.stats.bytesToClient).toBe(count * size + 9);
  });

  it('stops handing over once the receiving allocation is gone', async () => {
    const a = await client('node-a');
    const b = await client('node-b');
    await allocate(a);
    const relayB = await allocate(b);
    expect(codeOf(await bind(a, 0x4000, relayB.port))).toBe(0);
    expect(codeOf(await b.request(Method.REFRESH, (m) => m.add(Lifetime, 0)))).toBe(0);
    a.sendRaw(encodeChannelData({ channel: 0x4000, data: text('anyone there?') }));
    await expect.poll(() => server.stats.packetsToPeer).toBe(1);
    expect(server.stats.packetsWithinServer).toBe(0);
    expect(await b.next((d) => d.bytes[0] === 0x40, 300)).toBeUndefined();
  });
});

describe('channels (RFC 8656 §12)', () => {
  it('binds 0x4000–0x4FFF only, one peer per channel and one channel per peer', async () => {
    const c = await client();
    const relayed = await allocate(c);
    const a = await peer();
    const b = await peer();
    expect(codeOf(await bind(c, 0x3fff, a.port))).toBe(400);
    expect(codeOf(await bind(c, 0x5000, a.port))).toBe(400);
    expect(codeOf(await c.request(Method.CHANNEL_BIND, (m) => m.add(ChannelNumber, 0x4000)))).toBe(
      400,
    );
    expect(codeOf(await bind(c, 0x4000, a.port))).toBe(0);
    expect(codeOf(await bind(c, 0x4000, b.port))).toBe(400); // the channel is A's
    expect(codeOf(await bind(c, 0x4001, a.port))).toBe(400); // A has a channel
    expect(codeOf(await bind(c, 0x4000, a.port))).toBe(0); // refreshing is fine
    expect(codeOf(await bind(c, 0x4fff, b.port))).toBe(0);

    // ChannelBind installs the permission: data flows both ways as ChannelData.
    c.sendRaw(encodeChannelData({ channel: 0x4000, data: text('to A') }));
    c.sendRaw(encodeChannelData({ channel: 0x4fff, data: text('to B, padded') }, { pad: true }));
    expect(new TextDecoder().decode((await a.next())?.bytes)).toBe('to A');
    expect(new TextDecoder().decode((await b.next())?.bytes)).toBe('to B, padded');
    a.socket.send(text('from A'), relayed.port, relayed.address);
    const frame = await c.next((d) => d.bytes[0] === 0x40);
    expect(decodeChannelData(frame?.bytes ?? new Uint8Array())).toEqual({
      channel: 0x4000,
      data: text('from A'),
    });
    // An unbound channel carries nothing.
    c.sendRaw(encodeChannelData({ channel: 0x4002, data: text('nowhere') }));
    await expect.poll(() => server.stats.dropped['no-channel']).toBe(1);
  });

  it('binds RFC 5766 channels above 0x4FFF only when configured to', async () => {
    const p = await peer();
    const strict = await client();
    await allocate(strict);
    expect(codeOf(await bind(strict, 0x5d5a, p.port))).toBe(400);
    const legacy = await TurnServer.start({
      listen: { host: '127.0.0.1', port: 0 },
      relayIp: '127.0.0.1',
      secret: SECRET,
      allowPrivatePeers: true,
      rfc5766ChannelNumbers: true,
      now: () => clock,
    });
    try {
      const c = await client('node-a', legacy);
      const relayed = await allocate(c);
      expect(codeOf(await bind(c, 0x5d5a, p.port))).toBe(0);
      expect(codeOf(await bind(c, 0x8000, p.port))).toBe(400);
      c.sendRaw(encodeChannelData({ channel: 0x5d5a, data: text('old range') }, { rfc5766: true }));
      expect(new TextDecoder().decode((await p.next())?.bytes)).toBe('old range');
      p.socket.send(text('back'), relayed.port, relayed.address);
      const frame = await c.next((d) => d.bytes[0] === 0x5d);
      expect(decodeChannelData(frame?.bytes ?? new Uint8Array(), true).channel).toBe(0x5d5a);
    } finally {
      await legacy.close();
    }
  });

  it('a channel expires after 600 s and stays tied to its peer for 300 s more', async () => {
    const c = await client();
    const relayed = await allocate(c, (b) => b.add(Lifetime, 3600));
    const a = await peer();
    const b = await peer();
    expect(codeOf(await bind(c, 0x4100, a.port))).toBe(0);
    clock += 400_000;
    await permit(c, a.port); // keeps the permission, not the channel
    clock += 201_000;
    c.sendRaw(encodeChannelData({ channel: 0x4100, data: text('expired') }));
    await expect.poll(() => server.stats.dropped['no-channel']).toBe(1);
    // Without the channel, A's data comes as a Data indication.
    a.socket.send(text('still permitted'), relayed.port, relayed.address);
    const data = await c.next((d) => fromStun(d.bytes)?.method === Method.DATA);
    expect(data).toBeDefined();
    expect(codeOf(await bind(c, 0x4100, b.port))).toBe(400); // still A's during the cooldown
    clock += 300_000;
    expect(codeOf(await bind(c, 0x4100, b.port))).toBe(0);
  });
});

describe('quotas', () => {
  it('refuses allocations past the per-user quota with 486', async () => {
    await server.close();
    server = await startServer({ limits: { allocationsPerUser: 2 } });
    const [a, b, c] = [await client(), await client(), await client()];
    await allocate(a);
    await allocate(b);
    expect(codeOf(await c.request(Method.ALLOCATE, udp))).toBe(486);
    // Other users are not affected, and a freed allocation can be taken again.
    expect(codeOf(await (await client('node-b')).request(Method.ALLOCATE, udp))).toBe(0);
    await a.request(Method.REFRESH, (m) => m.add(Lifetime, 0));
    expect(codeOf(await c.request(Method.ALLOCATE, udp))).toBe(0);
  });

  it("frees a user's stalest quiet allocation for its new one (ICE agents leave theirs to expire)", async () => {
    await server.close();
    server = await startServer({ limits: { allocationsPerUser: 2 } });
    const [a, b, c] = [await client(), await client(), await client()];
    await allocate(a);
    await allocate(b);
    expect(codeOf(await c.request(Method.ALLOCATE, udp))).toBe(486); // both just made
    clock += 20_000;
    expect(codeOf(await b.request(Method.REFRESH, (m) => m.add(Lifetime, 600)))).toBe(0);
    // a has been quiet longest: it goes, b (just heard from) stays.
    expect(codeOf(await c.request(Method.ALLOCATE, udp))).toBe(0);
    expect(codeOf(await a.request(Method.REFRESH, (m) => m.add(Lifetime, 600)))).toBe(437);
    expect(codeOf(await b.request(Method.REFRESH, (m) => m.add(Lifetime, 600)))).toBe(0);
    // Another user's allocations are never taken for it.
    const other = await client('node-b');
    await allocate(other);
    clock += 20_000;
    const d = await client();
    await b.request(Method.REFRESH, (m) => m.add(Lifetime, 600));
    await c.request(Method.REFRESH, (m) => m.add(Lifetime, 600));
    expect(codeOf(await d.request(Method.ALLOCATE, udp))).toBe(486);
    expect(codeOf(await other.request(Method.REFRESH, (m) => m.add(Lifetime, 600)))).toBe(0);
  });

  it('counts a reserved port against the quota until it is used or expires', async () => {
    await server.close();
    server = await startServer({ limits: { allocationsPerUser: 2 } });
    const rtp = await client();
    const res = await rtp.request(Method.ALLOCATE, (b) =>
      udp(b).add(EvenPort, { reserveNext: true }),
    );
    expect(codeOf(res)).toBe(0);
    const other = await client();
    expect(codeOf(await other.request(Method.ALLOCATE, udp))).toBe(486);
    // The token's holder (any user) takes the reserved slot over.
    const rtcp = await client('node-b');
    const reserved = await rtcp.request(Method.ALLOCATE, (b) =>
      udp(b).add(ReservationToken, attr(res, ReservationToken)),
    );
    expect(codeOf(reserved)).toBe(0);
    expect(codeOf(await other.request(Method.ALLOCATE, udp))).toBe(0);
    // An unused reservation gives its slot back after 30 s.
    await other.request(Method.REFRESH, (b) => b.add(Lifetime, 0));
    const again = await client();
    await rtp.request(Method.REFRESH, (b) => b.add(Lifetime, 0));
    expect(
      codeOf(
        await again.request(Method.ALLOCATE, (b) => udp(b).add(EvenPort, { reserveNext: true })),
      ),
    ).toBe(0);
    expect(codeOf(await other.request(Method.ALLOCATE, udp))).toBe(486);
    clock += 31_000;
    server.sweep();
    expect(codeOf(await other.request(Method.ALLOCATE, udp))).toBe(0);
  });

  it('drops relayed data past the per-user bandwidth', async () => {
    await server.close();
    server = await startServer({ limits: { bytesPerSecondPerUser: 1000 } });
    const c = await client();
    await allocate(c);
    const p = await peer();
    await permit(c, p.port);
    for (let i = 0; i < 5; i++) sendIndication(c, p.port, new Uint8Array(400));
    await expect.poll(() => server.stats.dropped.quota).toBe(3);
    expect(p.received.length + ((await p.next(200)) ? 1 : 0)).toBeGreaterThanOrEqual(2);
    clock += 1000;
    sendIndication(c, p.port, new Uint8Array(400));
    await expect.poll(() => server.stats.packetsToPeer).toBe(3);
  });

  it('caps permissions and channels per allocation with 508', async () => {
    await server.close();
    server = await startServer({
      limits: { permissionsPerAllocation: 2, channelsPerAllocation: 1 },
    });
    const c = await client();
    await allocate(c);
    expect(codeOf(await permit(c, 1, '127.0.0.2'))).toBe(0);
    expect(codeOf(await permit(c, 1, '127.0.0.3'))).toBe(0);
    expect(codeOf(await permit(c, 1, '127.0.0.4'))).toBe(508);
    expect(codeOf(await permit(c, 1, '127.0.0.3'))).toBe(0); // a refresh is not a new one
    expect(codeOf(await bind(c, 0x4000, 5000, '127.0.0.2'))).toBe(0);
    expect(codeOf(await bind(c, 0x4001, 5001, '127.0.0.2'))).toBe(508);
  });
});

describe('bad input', () => {
  it('drops garbage, answers bad requests, and keeps serving', async () => {
    const c = await client();
    await allocate(c);
    const garbage = [
      new Uint8Array(0),
      new Uint8Array([0x40]), // ChannelData too short
      new Uint8Array([0x40, 0x00, 0xff, 0xff, 1, 2]), // ChannelData longer than the datagram
      new Uint8Array([0x16, 0xfe, 0xfd, 0, 0]), // DTLS: not ours
      new MessageBuilder(Method.BINDING, 'success').build(), // a response to nobody
      new MessageBuilder(Method.DATA, 'indication').build(), // Data indications go to clients
      new MessageBuilder(Method.SEND, 'indication').build(), // no peer, no data
      new MessageBuilder(Method.SEND, 'indication')
        .addRaw(AttributeType.XOR_PEER_ADDRESS, new Uint8Array(3))
        .add(Data, text('x'))
        .build(),
      new MessageBuilder(Method.BINDING, 'request')
        .build({ fingerprint: true })
        .map((x, i, a) => (i === a.length - 1 ? x ^ 1 : x)),
    ];
    for (const g of garbage) c.sendRaw(g);
    // An unknown method is a bad request.
    const unknownMethod = await c.transact(new MessageBuilder(0x0fff, 'request').build());
    expect(codeOf(unknownMethod)).toBe(400);
    // An authenticated request with a malformed attribute is a 400, signed.
    const malformed = await c.request(Method.CREATE_PERMISSION, (b) =>
      b.addRaw(AttributeType.XOR_PEER_ADDRESS, new Uint8Array([0, 1, 0, 0])),
    );
    expect(codeOf(malformed)).toBe(400);
    expect(checkIntegrity(malformed, c.key)).toBe('sha1');
    const ok = await c.transact(new MessageBuilder(Method.BINDING, 'request').build());
    expect(ok.cls).toBe('success');
    const d = server.stats.dropped;
    expect(d.malformed + d['not-stun'] + d.unexpected).toBe(garbage.length);
    expect(d.internal).toBe(0);
  });
});
