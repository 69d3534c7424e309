/**
 * TURN's pure parts: its attributes and ChannelData framing round-trip and fail with the exact
 * StunError; shared-secret credentials match coturn's scheme computed independently; nonces
 * expire and do not move between clients; the peer address policy.
 */
import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  decodeMessage,
  MessageBuilder,
  Method,
  StunError,
  type StunErrorReason,
} from '../src/node/stun/index.ts';
import { classifyPeerAddress, peerAllowed } from '../src/node/turn/address-policy.ts';
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
import {
  decodeChannelData,
  encodeChannelData,
  looksLikeChannelData,
} from '../src/node/turn/codec/channel-data.ts';
import { issueCredentials, parseRestUsername, restPassword } from '../src/node/turn/credentials.ts';
import { NonceIssuer } from '../src/node/turn/nonce.ts';

function expectStunError(fn: () => unknown, reason: StunErrorReason): void {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(StunError);
    expect((err as StunError).reason).toBe(reason);
    return;
  }
  expect.fail(`expected a StunError (${reason}), nothing was thrown`);
}

const tid = new Uint8Array(12).fill(7);

describe('TURN attributes', () => {
  const roundTrip = <T>(codec: Parameters<MessageBuilder['add']>[0], value: T): T =>
    decodeMessage(
      new MessageBuilder(Method.ALLOCATE, 'request', tid).add(codec, value).build(),
    ).get(codec) as T;

  it('round-trip', () => {
    expect(roundTrip(ChannelNumber, 0x4000)).toBe(0x4000);
    expect(roundTrip(ChannelNumber, 0x4fff)).toBe(0x4fff);
    expect(roundTrip(Lifetime, 0)).toBe(0);
    expect(roundTrip(Lifetime, 0xffffffff)).toBe(0xffffffff);
    expect(roundTrip(Data, new Uint8Array([1, 2, 3, 4, 5]))).toEqual(
      new Uint8Array([1, 2, 3, 4, 5]),
    );
    expect(roundTrip(Data, new Uint8Array(0))).toEqual(new Uint8Array(0));
    expect(roundTrip(RequestedTransport, 17)).toBe(17);
    expect(roundTrip(RequestedAddressFamily, 'ipv4')).toBe('ipv4');
    expect(roundTrip(RequestedAddressFamily, 'ipv6')).toBe('ipv6');
    expect(roundTrip(RequestedAddressFamily, 9)).toBe(9);
    expect(roundTrip(EvenPort, { reserveNext: true })).toEqual({ reserveNext: true });
    expect(roundTrip(EvenPort, { reserveNext: false })).toEqual({ reserveNext: false });
    const token = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(roundTrip(ReservationToken, token)).toEqual(token);
    expect(roundTrip(DontFragment, true)).toBe(true);
    // Wire forms from RFC 8656 §18.
    expect(Buffer.from(ChannelNumber.encode(0x4001, tid)).toString('hex')).toBe('40010000');
    expect(Buffer.from(RequestedTransport.encode(17, tid)).toString('hex')).toBe('11000000');
    expect(Buffer.from(EvenPort.encode({ reserveNext: true }, tid)).toString('hex')).toBe('80');
  });

  it('bad values give bad-attribute', () => {
    const bad = (codec: { decode(v: Uint8Array, t: Uint8Array): unknown }, size: number) =>
      expectStunError(() => codec.decode(new Uint8Array(size), tid), 'bad-attribute');
    bad(ChannelNumber, 2);
    bad(ChannelNumber, 8);
    bad(Lifetime, 3);
    bad(RequestedTransport, 1);
    bad(RequestedAddressFamily, 0);
    bad(EvenPort, 0);
    bad(EvenPort, 4);
    bad(ReservationToken, 4);
    bad(DontFragment, 1);
    expectStunError(() => ChannelNumber.encode(0x10000, tid), 'bad-attribute');
    expectStunError(() => Lifetime.encode(-1, tid), 'bad-attribute');
    expectStunError(() => RequestedTransport.encode(256, tid), 'bad-attribute');
    expectStunError(() => ReservationToken.encode(new Uint8Array(7), tid), 'bad-attribute');
  });
});

describe('ChannelData', () => {
  it('round-trips, padded or not, and is told apart by its first byte', () => {
    for (const length of [0, 1, 3, 4, 5, 1200]) {
      const data = crypto.getRandomValues(new Uint8Array(length));
      for (const pad of [false, true]) {
        const bytes = encodeChannelData({ channel: 0x4abc, data }, { pad });
        expect(bytes.length).toBe(4 + (pad ? (length + 3) & ~3 : length));
        expect(looksLikeChannelData(bytes)).toBe(true);
        expect(decodeChannelData(bytes)).toEqual({ channel: 0x4abc, data });
      }
    }
    expect(
      Buffer.from(encodeChannelData({ channel: 0x4000, data: new Uint8Array([9]) })).toString(
        'hex',
      ),
    ).toBe('4000000109');
    expect(looksLikeChannelData(new Uint8Array([0x00, 0x01]))).toBe(false);
    expect(looksLikeChannelData(new Uint8Array([0x50]))).toBe(false);
  });

  it('bad framing gives the exact error', () => {
    expectStunError(() => decodeChannelData(new Uint8Array([0x40, 0])), 'too-short');
    expectStunError(
      () => decodeChannelData(new Uint8Array([0x3f, 0xff, 0, 0])),
      'bad-channel-number',
    );
    expectStunError(
      () => decodeChannelData(new Uint8Array([0x50, 0x00, 0, 0])),
      'bad-channel-number',
    );
    expectStunError(
      () => decodeChannelData(new Uint8Array([0x40, 0, 0, 5, 1, 2, 3])),
      'bad-length',
    );
    // More than the padding after the data.
    expectStunError(
      () => decodeChannelData(new Uint8Array([0x40, 0, 0, 1, 1, 0, 0, 0, 0])),
      'bad-length',
    );
    expectStunError(
      () => encodeChannelData({ channel: 0x5000, data: new Uint8Array(1) }),
      'bad-channel-number',
    );
    expectStunError(
      () => encodeChannelData({ channel: 0x4000, data: new Uint8Array(70_000) }),
      'too-long',
    );
  });

  it('takes RFC 5766 channels (0x4000–0x7FFF) only when asked', () => {
    const legacy = new Uint8Array([0x5d, 0x5a, 0, 1, 9]);
    expect(looksLikeChannelData(legacy)).toBe(false);
    expectStunError(() => decodeChannelData(legacy), 'bad-channel-number');
    expect(looksLikeChannelData(legacy, true)).toBe(true);
    expect(decodeChannelData(legacy, true)).toEqual({ channel: 0x5d5a, data: new Uint8Array([9]) });
    expect(
      encodeChannelData({ channel: 0x7fff, data: new Uint8Array(0) }, { rfc5766: true }),
    ).toEqual(new Uint8Array([0x7f, 0xff, 0, 0]));
    expect(looksLikeChannelData(new Uint8Array([0x80]), true)).toBe(false);
  });
});

describe('credentials (coturn use-auth-secret / TURN REST API)', () => {
  it('username <expiry>:<user>, password base64(HMAC-SHA1(secret, username))', () => {
    const creds = issueCredentials('s3cret', 'abc', 3600, 1_700_000_000_000);
    expect(creds.username).toBe('1700003600:abc');
    expect(creds.credential).toBe(
      createHmac('sha1', 's3cret').update('1700003600:abc').digest('base64'),
    );
    // Computed with `openssl dgst -sha1 -hmac north -binary | base64`.
    expect(restPassword('north', '1600000000:node')).toBe('5ceFold3+FlHJ9ArXhaRYQR4CZE=');
  });

  it('parses the username', () => {
    expect(parseRestUsername('1700003600:abc')).toEqual({ expiresAtS: 1700003600, user: 'abc' });
    expect(parseRestUsername('1700003600')).toEqual({ expiresAtS: 1700003600, user: '' });
    expect(parseRestUsername('1700003600:a:b')).toEqual({ expiresAtS: 1700003600, user: 'a:b' });
    for (const bad of ['', 'abc', 'abc:1700003600', ':1', '-5:x', '1234567890123:x'])
      expect(parseRestUsername(bad), bad).toBeUndefined();
  });
});

describe('nonces', () => {
  it('are valid for their lifetime, for their client only, and cannot be forged', () => {
    let now = 1_000_000;
    const nonces = new NonceIssuer(600_000, () => now);
    const n = nonces.issue('127.0.0.1|5000');
    expect(n.length).toBeLessThan(128);
    expect(nonces.check(n, '127.0.0.1|5000')).toBe('valid');
    expect(nonces.check(n, '127.0.0.1|5001')).toBe('stale');
    expect(nonces.check(`${n.slice(0, -1)}A`, '127.0.0.1|5000')).toBe('stale');
    // Another expiry under the same MAC: a nonce cannot be made to live longer.
    const later = Buffer.from(n, 'base64url');
    later.writeUInt16BE((later.readUInt16BE(0) + 1) % 0x10000, 0);
    expect(nonces.check(later.toString('base64url'), '127.0.0.1|5000')).toBe('stale');
    expect(nonces.check('', '127.0.0.1|5000')).toBe('stale');
    expect(new NonceIssuer(600_000, () => now).check(n, '127.0.0.1|5000')).toBe('stale');
    now += 599_000;
    expect(nonces.check(n, '127.0.0.1|5000')).toBe('valid');
    now += 2000;
    expect(nonces.check(n, '127.0.0.1|5000')).toBe('stale');
  });
});

describe('peer address policy', () => {
  it('classifies', () => {
    const table: [string, ReturnType<typeof classifyPeerAddress>][] = [
      ['192.0.2.1', 'public'],
      ['8.8.8.8', 'public'],
      ['127.0.0.1', 'loopback'],
      ['127.255.0.9', 'loopback'],
      ['10.0.0.1', 'private'],
      ['172.16.0.1', 'private'],
      ['172.31.255.255', 'private'],
      ['172.32.0.1', 'public'],
      ['192.168.0.1', 'private'],
      ['100.64.0.1', 'private'],
      ['169.254.1.1', 'link-local'],
      ['0.0.0.0', 'unspecified'],
      ['224.0.0.1', 'multicast'],
      ['255.255.255.255', 'reserved'],
      ['::1', 'loopback'],
      ['::', 'unspecified'],
      ['fe80::1', 'link-local'],
      ['fd00::1', 'private'],
      ['fec0::1', 'private'],
      ['ff02::1', 'multicast'],
      ['::ffff:127.0.0.1', 'loopback'],
      ['::ffff:192.0.2.1', 'public'],
      ['64:ff9b::10.0.0.1', 'private'],
      ['2001:db8::1', 'public'],
      ['not an address', 'reserved'],
    ];
    for (const [address, expected] of table)
      expect(classifyPeerAddress(address), address).toBe(expected);
  });

  it('allows private peers only when told, and never the impossible ones', () => {
    expect(peerAllowed('192.0.2.1', false)).toBe(true);
    for (const a of ['127.0.0.1', '10.0.0.1', '169.254.0.1', '::1', 'fd00::1']) {
      expect(peerAllowed(a, false), a).toBe(false);
      expect(peerAllowed(a, true), a).toBe(true);
    }
    for (const a of ['0.0.0.0', '224.0.0.1', '255.255.255.255', '::', 'ff02::1'])
      expect(peerAllowed(a, true), a).toBe(false);
  });
});
