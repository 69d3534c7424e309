/**
 * What one source address can take from a real TurnServer on real UDP sockets, however many
 * identities it makes (credentials are free: every node that connects gets some). Sources are
 * loopback addresses 127.0.0.2, 127.0.0.3, …; the server's clock is the test's, so token
 * buckets refill when the test says, never with the wall clock.
 */
import { createSocket, type Socket } from 'node:dgram';
import { afterEach, describe, expect, it } from 'vitest';
import {
  AttributeType,
  ErrorCode,
  MessageBuilder,
  Method,
  Nonce,
  Realm,
  XorMappedAddress,
} from '../src/node/stun/index.ts';
import { addressKey } from '../src/node/stun/ip.ts';
import {
  EvenPort,
  Lifetime,
  RequestedAddressFamily,
  RequestedTransport,
  ReservationToken,
} from '../src/node/turn/codec/attributes.ts';
import { type TurnLimits, TurnServer } from '../src/node/turn/server.ts';
import { attr, codeOf, TestTurnClient } from './support/turn-client.ts';

const SECRET = 'test-secret';
let clock = Date.now();
const opened: { close(): void }[] = [];
let server: TurnServer | undefined;

async function startServer(limits: Partial<TurnLimits>): Promise<TurnServer> {
  server = await TurnServer.start({
    listen: { host: '127.0.0.1', port: 0 },
    relayIp: '127.0.0.1',
    secret: SECRET,
    allowPrivatePeers: true,
    limits,
    now: () => clock,
  });
  return server;
}

async function client(on: TurnServer, user: string, from: string): Promise<TestTurnClient> {
  const c = await TestTurnClient.open(
    { host: '127.0.0.1', port: on.port },
    TestTurnClient.credentials(SECRET, user),
    from,
  );
  opened.push(c);
  return c;
}

const udp = (b: MessageBuilder) => b.add(RequestedTransport, 17);

afterEach(async () => {
  for (const o of opened.splice(0)) o.close();
  await server?.close();
  server = undefined;
});

describe('allocations per source', () => {
  it('many IDs from one address get 508 past its share; another address still allocates', async () => {
    const s = await startServer({ allocations: 8, allocationsPerSource: 4 });
    // Fresh identities from one address, one allocation each: within every per-user quota.
    const codes: number[] = [];
    for (let i = 0; i < 8; i++) {
      const attacker = await client(s, `self-made-${i}`, '127.0.0.2');
      codes.push(codeOf(await attacker.request(Method.ALLOCATE, udp)));
    }
    expect(codes).toEqual([0, 0, 0, 0, 508, 508, 508, 508]);
    expect(s.allocationCount).toBe(4);
    // An honest user elsewhere is not locked out by the global cap.
    const honest = await client(s, 'honest', '127.0.0.3');
    expect(codeOf(await honest.request(Method.ALLOCATE, udp))).toBe(0);
  });

  it('counts a reserved next port (EVEN-PORT R) against the share until it expires', async () => {
    const s = await startServer({ allocationsPerSource: 3 });
    const rtp = await client(s, 'rtp', '127.0.0.2');
    const res = await rtp.request(Method.ALLOCATE, (b) =>
      udp(b).add(EvenPort, { reserveNext: true }),
    );
    expect(codeOf(res)).toBe(0);
    // Two slots held: one more allocation fits, and not another pair.
    const pair = await client(s, 'pair', '127.0.0.2');
    expect(
      codeOf(
        await pair.request(Method.ALLOCATE, (b) => udp(b).add(EvenPort, { reserveNext: true })),
      ),
    ).toBe(508);
    const third = await client(s, 'third', '127.0.0.2');
    expect(codeOf(await third.request(Method.ALLOCATE, udp))).toBe(0);
    const fourth = await client(s, 'fourth', '127.0.0.2');
    expect(codeOf(await fourth.request(Method.ALLOCATE, udp))).toBe(508);
    // At its share, the source may still take over its own reservation: the slot moves.
    const rtcp = await client(s, 'rtcp', '127.0.0.2');
    const token = attr(res, ReservationToken);
    expect(
      codeOf(await rtcp.request(Method.ALLOCATE, (b) => udp(b).add(ReservationToken, token))),
    ).toBe(0);
    expect(codeOf(await fourth.request(Method.ALLOCATE, udp))).toBe(508);
    // A reservation nobody uses gives its slot back when it expires (30 s).
    const spare = await client(s, 'spare', '127.0.0.3');
    const spareRes = await spare.request(Method.ALLOCATE, (b) =>
      udp(b).add(EvenPort, { reserveNext: true }),
    );
    expect(codeOf(spareRes)).toBe(0);
    await rtcp.request(Method.REFRESH, (b) => b.add(Lifetime, 0));
    expect(codeOf(await fourth.request(Method.ALLOCATE, udp))).toBe(0);
    const sparePartner = await client(s, 'spare-partner', '127.0.0.3');
    expect(codeOf(await sparePartner.request(Method.ALLOCATE, udp))).toBe(0);
    const spareThird = await client(s, 'spare-third', '127.0.0.3');
    expect(codeOf(await spareThird.request(Method.ALLOCATE, udp))).toBe(508);
    clock += 31_000;
    s.sweep();
    expect(codeOf(await spareThird.request(Method.ALLOCATE, udp))).toBe(0);
  });

  it('gives a slot back when an allocation is deleted', async () => {
    const s = await startServer({ allocationsPerSource: 1 });
    const a = await client(s, 'a', '127.0.0.2');
    const b = await client(s, 'b', '127.0.0.2');
    expect(codeOf(await a.request(Method.ALLOCATE, udp))).toBe(0);
    expect(codeOf(await b.request(Method.ALLOCATE, udp))).toBe(508);
    expect(codeOf(await a.request(Method.REFRESH, (m) => m.add(Lifetime, 0)))).toBe(0);
    expect(codeOf(await b.request(Method.ALLOCATE, udp))).toBe(0);
  });

  it('a source is an IPv4 address, or an IPv6 /64', () => {
    expect(addressKey('192.0.2.7')).toBe('192.0.2.7');
    expect(addressKey('::ffff:192.0.2.7')).toBe('192.0.2.7');
    expect(addressKey('2001:db8:1:2::1')).toBe(addressKey('2001:db8:1:2:ffff:ffff:ffff:ffff'));
    expect(addressKey('2001:db8:1:2::1')).not.toBe(addressKey('2001:db8:1:3::1'));
  });
});

/** A plain socket on `from` that counts the datagrams it gets. */
async function rawSocket(from: string): Promise<{ socket: Socket; received: Uint8Array[] }> {
  const socket = createSocket('udp4');
  await new Promise<void>((resolve) => socket.bind(0, from, () => resolve()));
  const received: Uint8Array[] = [];
  socket.on('message', (msg) => received.push(new Uint8Array(msg)));
  opened.push(socket);
  return { socket, received };
}

describe('answers to unauthenticated requests', () => {
  it('a flood from one source gets at most the burst of answers; another source is answered', async () => {
    const s = await startServer({
      unauthenticatedBurstPerSource: 5,
      unauthenticatedPerSecondPerSource: 1,
    });
    const flooder = await rawSocket('127.0.0.2');
    const flood = 60;
    for (let i = 0; i < flood; i++) {
      const request =
        i % 2 === 0
          ? udp(new MessageBuilder(Method.ALLOCATE, 'request')).build()
          : new MessageBuilder(Method.BINDING, 'request').build();
      flooder.socket.send(request, s.port, '127.0.0.1');
    }
    await expect.poll(() => s.stats.requests, { timeout: 10_000 }).toBe(flood);
    expect(s.stats.dropped['rate-limited']).toBe(flood - 5);

    // Another source is answered meanwhile.
    const other = await client(s, 'other', '127.0.0.3');
    const challenge = await other.transact(
      udp(new MessageBuilder(Method.ALLOCATE, 'request')).build(),
    );
    expect(codeOf(challenge)).toBe(401);

    // A second later the flooder has one answer more. Datagrams from one socket to another on
    // loopback keep their order, so once this one is in, every earlier answer is too.
    clock += 1000;
    const probe = new MessageBuilder(Method.BINDING, 'request').build();
    flooder.socket.send(probe, s.port, '127.0.0.1');
    await expect
      .poll(() =>
        flooder.received.some((d) => Buffer.from(d).subarray(8, 20).equals(probe.subarray(8, 20))),
      )
      .toBe(true);
    expect(flooder.received).toHaveLength(5 + 1);
  });

  it('authenticated requests are not limited by their source rate', async () => {
    const s = await startServer({
      unauthenticatedBurstPerSource: 2,
      unauthenticatedPerSecondPerSource: 1,
    });
    const c = await client(s, 'busy', '127.0.0.2');
    expect(codeOf(await c.request(Method.ALLOCATE, udp))).toBe(0); // spends one answer on the 401
    for (let i = 0; i < 5; i++)
      expect(codeOf(await c.request(Method.REFRESH, (b) => b.add(Lifetime, 600)))).toBe(0);
  });

  it('keeps its table of sources bounded, and sources past it share one bucket', async () => {
    const s = await startServer({
      unauthenticatedBurstPerSource: 1,
      unauthenticatedPerSecondPerSource: 1,
      unauthenticatedSources: 2,
    });
    const answered: boolean[] = [];
    for (const from of ['127.0.0.2', '127.0.0.3', '127.0.0.4', '127.0.0.5']) {
      const c = await client(s, 'x', from);
      const [requests, limited] = [s.stats.requests, s.stats.dropped['rate-limited']];
      c.sendRaw(new MessageBuilder(Method.BINDING, 'request').build());
      await expect.poll(() => s.stats.requests).toBe(requests + 1);
      answered.push(s.stats.dropped['rate-limited'] === limited);
    }
    // Two tracked sources get their burst; the other two share the overflow bucket's one.
    expect(answered).toEqual([true, true, true, false]);
  });
});

describe('the 401 challenge', () => {
  /**
   * coturn's turnutils_uclient's first Allocate, as captured on loopback (4.6):
   * REQUESTED-TRANSPORT, LIFETIME, REQUESTED-ADDRESS-FAMILY, FINGERPRINT: 52 bytes.
   */
  const uclientAllocate = () =>
    udp(new MessageBuilder(Method.ALLOCATE, 'request'))
      .add(Lifetime, 800)
      .add(RequestedAddressFamily, 'ipv4')
      .build({ fingerprint: true });

  it('is no larger than the Allocate that caused it, and holds what RFC 8489 asks', async () => {
    const s = await startServer({});
    const c = await client(s, 'any', '127.0.0.2');
    const request = uclientAllocate();
    expect(request.length).toBe(52);
    c.sendRaw(request);
    const reply = await c.next();
    expect(reply).toBeDefined();
    const bytes = reply?.bytes ?? new Uint8Array(0);
    expect(bytes.length).toBeLessThanOrEqual(request.length);
    const challenge = await c.transact(uclientAllocate()); // decoded, to check its content
    expect(codeOf(challenge)).toBe(401);
    expect(challenge.get(ErrorCode)?.code).toBe(401);
    expect(attr(challenge, Realm)).toBe('rtcmesh');
    expect(attr(challenge, Nonce).length).toBeGreaterThan(0);
    expect(challenge.has(AttributeType.SOFTWARE)).toBe(false);
    // The client can go on with it.
    c.learn(challenge);
    expect(codeOf(await c.transact(c.signed(Method.ALLOCATE, udp)))).toBe(0);
  });

  it('a stale nonce (438) is as small', async () => {
    const s = await startServer({});
    const c = await client(s, 'any', '127.0.0.2');
    c.learn(await c.transact(uclientAllocate()));
    clock += 601_000;
    const signed = c.signed(Method.ALLOCATE, udp);
    c.sendRaw(signed);
    const reply = await c.next();
    expect(reply?.bytes.length).toBeLessThanOrEqual(52);
  });

  it('a Binding answer carries only XOR-MAPPED-ADDRESS (and FINGERPRINT when asked)', async () => {
    const s = await startServer({});
    const c = await client(s, 'any', '127.0.0.2');
    const res = await c.transact(new MessageBuilder(Method.BINDING, 'request').build());
    expect(res.types).toEqual([AttributeType.XOR_MAPPED_ADDRESS]);
    expect(attr(res, XorMappedAddress).address).toBe('127.0.0.2');
  });
});
