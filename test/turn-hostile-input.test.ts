/**
 * Input a real TurnServer must survive without a fault: requests and data naming peers that
 * no socket can send to. Each is counted as a drop, never thrown into the handler.
 */
import { afterEach, beforeEach, expect, it } from 'vitest';
import { MessageBuilder, Method, XorPeerAddress } from '../src/node/stun/index.ts';
import { ChannelNumber, Data, RequestedTransport } from '../src/node/turn/codec/attributes.ts';
import { encodeChannelData } from '../src/node/turn/codec/channel-data.ts';
import { TurnServer } from '../src/node/turn/server.ts';
import { codeOf, TestTurnClient } from './support/turn-client.ts';

const SECRET = 'test-secret';
let server: TurnServer;
let c: TestTurnClient;

beforeEach(async () => {
  server = await TurnServer.start({
    listen: { host: '127.0.0.1', port: 0 },
    relayIp: '127.0.0.1',
    secret: SECRET,
    allowPrivatePeers: true,
  });
  c = await TestTurnClient.open(
    { host: '127.0.0.1', port: server.port },
    TestTurnClient.credentials(SECRET, 'hostile'),
    '127.0.0.2',
  );
  const allocated = await c.request(Method.ALLOCATE, (b) => b.add(RequestedTransport, 17));
  expect(codeOf(allocated)).toBe(0);
});
afterEach(async () => {
  c.close();
  await server.close();
});

it('drops data for port 0 (a Send indication, and a channel bound to it) as a failed send', async () => {
  const portZero = { address: '127.0.0.1', port: 0 };
  expect(
    codeOf(await c.request(Method.CREATE_PERMISSION, (b) => b.add(XorPeerAddress, portZero))),
  ).toBe(0);
  c.sendRaw(
    new MessageBuilder(Method.SEND, 'indication')
      .add(XorPeerAddress, portZero)
      .add(Data, new Uint8Array(8))
      .build(),
  );
  await expect
    .poll(() => server.stats.dropped['send-failed'] + server.stats.dropped.internal)
    .toBe(1);
  expect(server.stats.dropped.internal).toBe(0);

  const bound = await c.request(Method.CHANNEL_BIND, (b) =>
    b.add(ChannelNumber, 0x4001).add(XorPeerAddress, portZero),
  );
  if (codeOf(bound) === 0) {
    c.sendRaw(encodeChannelData({ channel: 0x4001, data: new Uint8Array(8) }));
    await expect
      .poll(() => server.stats.dropped['send-failed'] + server.stats.dropped.internal)
      .toBe(2);
  }
  expect(server.stats.dropped.internal).toBe(0);
  // Still serving.
  const binding = await c.transact(new MessageBuilder(Method.BINDING, 'request').build());
  expect(codeOf(binding)).toBe(0);
});
