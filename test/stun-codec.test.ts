/**
 * The STUN codec (src/node/stun): RFC 5769's test vectors, decoded, checked and re-encoded
 * byte for byte; every attribute round-trips; each kind of bad input gives its own StunError.
 */
import { createHash, createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  AttributeType,
  checkFingerprint,
  checkIntegrity,
  crc32,
  decodeMessage,
  ErrorCode,
  formatIp,
  longTermKey,
  MappedAddress,
  MessageBuilder,
  Method,
  messageType,
  Nonce,
  parseIp,
  Realm,
  Software,
  StunError,
  type StunErrorReason,
  type StunMessage,
  shortTermKey,
  splitMessageType,
  UnknownAttributes,
  Username,
  XorMappedAddress,
  XorPeerAddress,
  XorRelayedAddress,
} from '../src/node/stun/index.ts';

const hex = (text: string): Uint8Array =>
  new Uint8Array(Buffer.from(text.replace(/\s+/g, ''), 'hex'));

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

// RFC 5769 §2.1: a Binding request with short-term credentials and a fingerprint.
const SAMPLE_REQUEST = hex(`
  00 01 00 58 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
  80 22 00 10 53 54 55 4e 20 74 65 73 74 20 63 6c 69 65 6e 74
  00 24 00 04 6e 00 01 ff
  80 29 00 08 93 2f f9 b1 51 26 3b 36
  00 06 00 09 65 76 74 6a 3a 68 36 76 59 20 20 20
  00 08 00 14 9a ea a7 0c bf d8 cb 56 78 1e f2 b5 b2 d3 f2 49 c1 b5 71 a2
  80 28 00 04 e5 7a 3b cf`);
// §2.2: the IPv4 success response.
const SAMPLE_IPV4_RESPONSE = hex(`
  01 01 00 3c 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
  80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
  00 20 00 08 00 01 a1 47 e1 12 a6 43
  00 08 00 14 2b 91 f5 99 fd 9e 90 c3 8c 74 89 f9 2a f9 ba 53 f0 6b e7 d7
  80 28 00 04 c0 7d 4c 96`);
// §2.3: the IPv6 success response.
const SAMPLE_IPV6_RESPONSE = hex(`
  01 01 00 48 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
  80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
  00 20 00 14 00 02 a1 47 01 13 a9 fa a5 d3 f1 79 bc 25 f4 b5 be d2 b9 d9
  00 08 00 14 a3 82 95 4e 4b e6 7b f1 17 84 c9 7c 82 92 c2 75 bf e3 ed 41
  80 28 00 04 c8 fb 0b 4c`);
// §2.4: a request with long-term credentials (no fingerprint).
const SAMPLE_LONG_TERM_REQUEST = hex(`
  00 01 00 60 21 12 a4 42 78 ad 34 33 c6 ad 72 c0 29 da 41 2e
  00 06 00 12 e3 83 9e e3 83 88 e3 83 aa e3 83 83 e3 82 af e3 82 b9 00 00
  00 15 00 1c 66 2f 2f 34 39 39 6b 39 35 34 64 36 4f 4c 33 34 6f 4c 39 46 53 54 76 79 36 34 73 41
  00 14 00 0b 65 78 61 6d 70 6c 65 2e 6f 72 67 00
  00 08 00 14 f6 70 24 65 6d d6 4a 3e 02 b8 e0 71 2e 85 c9 a2 8c a8 96 66`);

const SHORT_TERM_PASSWORD = 'VOkJxbRl1RmTxUk/WvJxBt';
const MATRIX_USERNAME = '\u30DE\u30C8\u30EA\u30C3\u30AF\u30B9';
// The password as RFC 5769 gives it, before SASLprep (which makes it "TheMatrIX").
const MATRIX_PASSWORD = 'The\u00ADM\u00AAtr\u2168';

describe('RFC 5769 test vectors', () => {
  it('§2.1 sample request: decodes, checks, and re-encodes to the same bytes', () => {
    const m = decodeMessage(SAMPLE_REQUEST);
    expect(m.method).toBe(Method.BINDING);
    expect(m.cls).toBe('request');
    expect(Buffer.from(m.transactionId).toString('hex')).toBe('b7e7a701bc34d686fa87dfae');
    expect(m.get(Software)).toBe('STUN test client');
    expect(m.get(Username)).toBe('evtj:h6vY');
    expect(m.types).toEqual([0x8022, 0x0024, 0x8029, 0x0006, 0x0008, 0x8028]);
    expect(checkFingerprint(m)).toBe(true);
    expect(checkIntegrity(m, shortTermKey(SHORT_TERM_PASSWORD))).toBe('sha1');
    expectStunError(() => checkIntegrity(m, shortTermKey('wrong')), 'integrity-mismatch');

    const again = new MessageBuilder(Method.BINDING, 'request', m.transactionId)
      .add(Software, 'STUN test client')
      .addRaw(0x0024, hex('6e0001ff'))
      .addRaw(0x8029, hex('932ff9b151263b36'))
      .add(Username, 'evtj:h6vY')
      .build({
        integrity: { key: shortTermKey(SHORT_TERM_PASSWORD) },
        fingerprint: true,
        paddingByte: 0x20,
      });
    expect(Buffer.from(again).toString('hex')).toBe(Buffer.from(SAMPLE_REQUEST).toString('hex'));
  });

  for (const [name, bytes, address] of [
    ['§2.2 IPv4 response', SAMPLE_IPV4_RESPONSE, '192.0.2.1'],
    ['§2.3 IPv6 response', SAMPLE_IPV6_RESPONSE, '2001:db8:1234:5678:11:2233:4455:6677'],
  ] as const) {
    it(`${name}: decodes, checks, and re-encodes to the same bytes`, () => {
      const m = decodeMessage(bytes);
      expect(m.cls).toBe('success');
      expect(m.method).toBe(Method.BINDING);
      expect(m.get(Software)).toBe('test vector');
      expect(m.get(XorMappedAddress)).toEqual({ address, port: 32853 });
      expect(checkFingerprint(m)).toBe(true);
      expect(checkIntegrity(m, shortTermKey(SHORT_TERM_PASSWORD))).toBe('sha1');
      const again = new MessageBuilder(Method.BINDING, 'success', m.transactionId)
        .add(Software, 'test vector')
        .add(XorMappedAddress, { address, port: 32853 })
        .build({
          integrity: { key: shortTermKey(SHORT_TERM_PASSWORD) },
          fingerprint: true,
          paddingByte: 0x20,
        });
      expect(Buffer.from(again).toString('hex')).toBe(Buffer.from(bytes).toString('hex'));
    });
  }

  it('§2.4 long-term request: SASLprep of the password, MD5 key, same bytes again', () => {
    const m = decodeMessage(SAMPLE_LONG_TERM_REQUEST);
    expect(m.get(Username)).toBe(MATRIX_USERNAME);
    expect(m.get(Nonce)).toBe('f//499k954d6OL34oL9FSTvy64sA');
    expect(m.get(Realm)).toBe('example.org');
    expect(checkFingerprint(m)).toBe(false);
    const key = longTermKey(MATRIX_USERNAME, 'example.org', MATRIX_PASSWORD);
    // The key, computed independently from the prepared password.
    expect(Buffer.from(key).toString('hex')).toBe(
      createHash('md5').update(`${MATRIX_USERNAME}:example.org:TheMatrIX`).digest('hex'),
    );
    expect(checkIntegrity(m, key)).toBe('sha1');
    const again = new MessageBuilder(Method.BINDING, 'request', m.transactionId)
      .add(Username, MATRIX_USERNAME)
      .add(Nonce, 'f//499k954d6OL34oL9FSTvy64sA')
      .add(Realm, 'example.org')
      .build({ integrity: { key } });
    expect(Buffer.from(again).toString('hex')).toBe(
      Buffer.from(SAMPLE_LONG_TERM_REQUEST).toString('hex'),
    );
  });
});

describe('header', () => {
  it('interleaves method and class bits both ways', () => {
    // RFC 8489 §6: Binding request 0x0001, success 0x0101, error 0x0111; Send indication 0x0016.
    expect(messageType(Method.BINDING, 'request')).toBe(0x0001);
    expect(messageType(Method.BINDING, 'success')).toBe(0x0101);
    expect(messageType(Method.BINDING, 'error')).toBe(0x0111);
    expect(messageType(Method.SEND, 'indication')).toBe(0x0016);
    expect(messageType(Method.DATA, 'indication')).toBe(0x0017);
    expect(messageType(Method.ALLOCATE, 'request')).toBe(0x0003);
    expect(messageType(Method.CHANNEL_BIND, 'success')).toBe(0x0109);
    for (let method = 0; method < 0x1000; method += 0x35) {
      for (const cls of ['request', 'indication', 'success', 'error'] as const) {
        expect(splitMessageType(messageType(method, cls))).toEqual({ method, cls });
      }
    }
  });

  it('CRC-32 is the zlib one', () => {
    expect(crc32(new TextEncoder().encode('123456789'))).toBe(0xcbf43926);
  });
});

describe('attributes round-trip', () => {
  const tid = hex('0102030405060708090a0b0c');
  const roundTrip = <T>(codec: Parameters<MessageBuilder['add']>[0], value: T): T => {
    const bytes = new MessageBuilder(Method.ALLOCATE, 'request', tid)
      .add(codec, value)
      .build({ fingerprint: true });
    const m = decodeMessage(bytes);
    expect(checkFingerprint(m)).toBe(true);
    return m.get(codec) as T;
  };

  it('addresses, plain and XOR, IPv4 and IPv6', () => {
    for (const codec of [MappedAddress, XorMappedAddress, XorPeerAddress, XorRelayedAddress]) {
      for (const a of [
        { address: '192.0.2.1', port: 32853 },
        { address: '0.0.0.0', port: 0 },
        { address: '255.255.255.255', port: 65535 },
        { address: '2001:db8::1', port: 3478 },
        { address: '::1', port: 1 },
        { address: 'fe80::1:2:3:4', port: 50000 },
      ]) {
        expect(roundTrip(codec, a)).toEqual(a);
      }
    }
    // XOR really XORs: the IPv4 bytes on the wire are not the address.
    const wire = XorMappedAddress.encode({ address: '192.0.2.1', port: 32853 }, tid);
    expect(Buffer.from(wire).toString('hex')).toBe('0001a147e112a643');
  });

  it('text: USERNAME, REALM, NONCE, SOFTWARE, with non-ASCII text', () => {
    expect(roundTrip(Username, '1800000000:abc')).toBe('1800000000:abc');
    expect(roundTrip(Username, MATRIX_USERNAME)).toBe(MATRIX_USERNAME);
    expect(roundTrip(Realm, 'rtcmesh')).toBe('rtcmesh');
    expect(roundTrip(Nonce, 'x'.repeat(127))).toBe('x'.repeat(127));
    expect(roundTrip(Software, 'rtcmesh 0.1 ✓')).toBe('rtcmesh 0.1 ✓');
    expect(roundTrip(Username, 'u'.repeat(512))).toBe('u'.repeat(512));
  });

  it('ERROR-CODE and UNKNOWN-ATTRIBUTES', () => {
    for (const e of [
      { code: 300, reason: 'Try Alternate' },
      { code: 438, reason: 'Stale Nonce' },
      { code: 699, reason: '' },
      { code: 508, reason: 'Insufficient Capacity ✓' },
    ]) {
      expect(roundTrip(ErrorCode, e)).toEqual(e);
    }
    expect(Buffer.from(ErrorCode.encode({ code: 401, reason: 'x' }, tid)).toString('hex')).toBe(
      '0000040178',
    );
    expect(roundTrip(UnknownAttributes, [0x001a, 0x7fff])).toEqual([0x001a, 0x7fff]);
    expect(roundTrip(UnknownAttributes, [0x0018])).toEqual([0x0018]);
    expect(roundTrip(UnknownAttributes, [])).toEqual([]);
  });

  it('MESSAGE-INTEGRITY, MESSAGE-INTEGRITY-SHA256 and FINGERPRINT', () => {
    const key = longTermKey('1800000000:node', 'rtcmesh', 'secret');
    for (const algorithm of ['sha1', 'sha256'] as const) {
      const bytes = new MessageBuilder(Method.REFRESH, 'request', tid)
        .add(Username, '1800000000:node')
        .build({ integrity: { key, algorithm }, fingerprint: true });
      const m = decodeMessage(bytes);
      expect(checkIntegrity(m, key)).toBe(algorithm);
      expect(checkFingerprint(m)).toBe(true);
      expect(m.has(AttributeType.MESSAGE_INTEGRITY)).toBe(algorithm === 'sha1');
      // Independently: HMAC over the message up to the attribute, length counting it.
      const at = bytes.length - 8 - (algorithm === 'sha1' ? 24 : 36);
      const prefix = Buffer.from(bytes.subarray(0, at));
      prefix.writeUInt16BE(at - 20 + (algorithm === 'sha1' ? 24 : 36), 2);
      expect(Buffer.from(bytes.subarray(at + 4, bytes.length - 8)).toString('hex')).toBe(
        createHmac(algorithm, key).update(prefix).digest('hex'),
      );
    }
  });

  it('keeps attributes it does not know, and ignores those after MESSAGE-INTEGRITY', () => {
    const key = shortTermKey('pw');
    const bytes = new MessageBuilder(Method.BINDING, 'request', tid)
      .addRaw(0x7777, hex('0102'))
      .build({ integrity: { key } });
    const m = decodeMessage(bytes);
    expect(m.find(0x7777)?.value).toEqual(hex('0102'));
    // A SOFTWARE appended after the integrity is neither trusted nor covered.
    const extended = new Uint8Array(bytes.length + 8);
    extended.set(bytes);
    extended.set(hex('80220003616263 00'), bytes.length);
    new DataView(extended.buffer).setUint16(2, extended.length - 20);
    const m2 = decodeMessage(extended);
    expect(m2.attributes).toHaveLength(3);
    expect(m2.get(Software)).toBeUndefined();
  });

  it('IP text: parses and formats the RFC 5952 way', () => {
    for (const [text, canonical] of [
      ['2001:0db8:0000:0000:0000:0000:0000:0001', '2001:db8::1'],
      ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
      ['::', '::'],
      ['::ffff:192.0.2.1', '::ffff:c000:201'],
      ['1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7:8'],
      ['10.0.0.1', '10.0.0.1'],
    ] as const) {
      const bytes = parseIp(text);
      expect(bytes, text).toBeDefined();
      expect(formatIp(bytes as Uint8Array)).toBe(canonical);
    }
    for (const bad of [
      '1.2.3',
      '256.1.1.1',
      '1::2::3',
      '1:2:3:4:5:6:7:8:9',
      'x',
      '',
      '1.2.3.4.5',
    ]) {
      expect(parseIp(bad), bad).toBeUndefined();
    }
  });
});

describe('bad input gives the exact StunError', () => {
  const valid = new MessageBuilder(Method.BINDING, 'request').add(Software, 'abc').build();

  it('framing', () => {
    expectStunError(() => decodeMessage(new Uint8Array(0)), 'too-short');
    expectStunError(() => decodeMessage(valid.subarray(0, 19)), 'too-short');
    const top = valid.slice();
    top[0] = 0x40;
    expectStunError(() => decodeMessage(top), 'not-stun');
    const cookie = valid.slice();
    cookie[4] = 0x22;
    expectStunError(() => decodeMessage(cookie), 'bad-cookie');
    const odd = valid.slice();
    odd[3] = 7;
    expectStunError(() => decodeMessage(odd), 'bad-length');
    expectStunError(() => decodeMessage(valid.subarray(0, valid.length - 4)), 'bad-length');
    const longer = new Uint8Array(valid.length + 4);
    longer.set(valid);
    expectStunError(() => decodeMessage(longer), 'bad-length');
    // An attribute whose length runs past the end.
    const overflow = valid.slice();
    overflow[23] = 0x40;
    expectStunError(() => decodeMessage(overflow), 'truncated-attribute');
    // Two bytes of an attribute header left at the end.
    const cut = new Uint8Array(24);
    cut.set(valid.subarray(0, 20));
    cut[3] = 4;
    cut.set([0x80, 0x22, 0x00, 0x01], 20);
    expectStunError(() => decodeMessage(cut), 'truncated-attribute');
    const afterFingerprint = new MessageBuilder(Method.BINDING, 'request').build({
      fingerprint: true,
    });
    const extended = new Uint8Array(afterFingerprint.length + 8);
    extended.set(afterFingerprint);
    extended.set(hex('8022000361626300'), afterFingerprint.length);
    new DataView(extended.buffer).setUint16(2, extended.length - 20);
    expectStunError(() => decodeMessage(extended), 'fingerprint-not-last');
  });

  it('attribute values', () => {
    const tid = new Uint8Array(12);
    const decode = (codec: { decode(v: Uint8Array, t: Uint8Array): unknown }, v: string) => () =>
      codec.decode(hex(v), tid);
    expectStunError(decode(XorMappedAddress, '0001'), 'bad-attribute');
    expectStunError(decode(XorMappedAddress, '0003a1470000000000'), 'bad-attribute');
    expectStunError(decode(XorMappedAddress, '0001a147e112a643ff'), 'bad-attribute');
    expectStunError(decode(XorPeerAddress, `0002a147${'00'.repeat(12)}`), 'bad-attribute');
    expectStunError(decode(Username, 'ff fe'), 'bad-attribute');
    expectStunError(decode(Username, '61'.repeat(513)), 'too-long');
    expectStunError(decode(Realm, '61'.repeat(128)), 'too-long');
    expectStunError(decode(ErrorCode, '0000'), 'bad-attribute');
    expectStunError(decode(ErrorCode, '00000264'), 'bad-attribute');
    expectStunError(decode(ErrorCode, '00000700'), 'bad-attribute');
    expectStunError(decode(UnknownAttributes, '001a00'), 'bad-attribute');
    expectStunError(
      () => XorMappedAddress.encode({ address: 'localhost', port: 1 }, tid),
      'bad-attribute',
    );
    expectStunError(
      () => XorMappedAddress.encode({ address: '1.2.3.4', port: 70000 }, tid),
      'bad-attribute',
    );
    expectStunError(() => Nonce.encode('n'.repeat(128), tid), 'too-long');
    expectStunError(() => ErrorCode.encode({ code: 200, reason: '' }, tid), 'bad-attribute');
    expectStunError(
      () => new MessageBuilder(Method.BINDING, 'request', new Uint8Array(3)),
      'bad-attribute',
    );
  });

  it('integrity and fingerprint', () => {
    const key = shortTermKey('pw');
    expectStunError(() => checkIntegrity(decodeMessage(valid), key), 'integrity-missing');
    const signed = new MessageBuilder(Method.BINDING, 'request')
      .add(Software, 'abc')
      .build({ integrity: { key }, fingerprint: true });
    const flipped = signed.slice();
    flipped[25] = (flipped[25] ?? 0) ^ 1; // inside SOFTWARE: the fingerprint catches it first
    expectStunError(() => checkFingerprint(decodeMessage(flipped)), 'fingerprint-mismatch');
    // Flip a SOFTWARE byte and fix the fingerprint: now the HMAC catches it.
    const resigned = new MessageBuilder(
      Method.BINDING,
      'request',
      decodeMessage(signed).transactionId,
    )
      .add(Software, 'abd')
      .build({ fingerprint: true });
    const tampered = signed.slice();
    tampered.set(resigned.subarray(20, 28), 20);
    const fp = Buffer.from(tampered);
    const crc = crc32(fp.subarray(0, fp.length - 8));
    fp.writeUInt32BE((crc ^ 0x5354554e) >>> 0, fp.length - 4);
    const m = decodeMessage(new Uint8Array(fp));
    expect(checkFingerprint(m)).toBe(true);
    expectStunError(() => checkIntegrity(m, key), 'integrity-mismatch');
    // A MESSAGE-INTEGRITY of the wrong size.
    const short = new MessageBuilder(Method.BINDING, 'request')
      .addRaw(AttributeType.MESSAGE_INTEGRITY, new Uint8Array(16))
      .build();
    expectStunError(() => checkIntegrity(decodeMessage(short), key), 'bad-attribute');
    const badFp = new MessageBuilder(Method.BINDING, 'request')
      .addRaw(AttributeType.FINGERPRINT, new Uint8Array(2))
      .build();
    expectStunError(() => checkFingerprint(decodeMessage(badFp)), 'bad-attribute');
  });

  it('never throws anything but StunError on random and mutated bytes', () => {
    const seeds = [
      SAMPLE_REQUEST,
      SAMPLE_IPV4_RESPONSE,
      SAMPLE_IPV6_RESPONSE,
      SAMPLE_LONG_TERM_REQUEST,
    ];
    const reads = [
      (m: StunMessage) => m.get(XorMappedAddress),
      (m: StunMessage) => m.get(Username),
      (m: StunMessage) => m.get(Realm),
      (m: StunMessage) => m.get(Nonce),
      (m: StunMessage) => m.get(Software),
      (m: StunMessage) => m.get(ErrorCode),
      (m: StunMessage) => m.get(UnknownAttributes),
    ];
    let decoded = 0;
    for (let i = 0; i < 20_000; i++) {
      const seed = seeds[i % seeds.length] as Uint8Array;
      const bytes = i % 5 === 0 ? crypto.getRandomValues(new Uint8Array(i % 120)) : seed.slice();
      if (i % 5 !== 0) {
        for (let f = 0; f <= i % 4; f++) {
          const bit = Math.floor(Math.random() * bytes.length * 8);
          bytes[bit >> 3] = (bytes[bit >> 3] ?? 0) ^ (1 << (bit & 7));
        }
      }
      try {
        const m = decodeMessage(bytes);
        decoded++;
        for (const read of reads) read(m);
        checkFingerprint(m);
        checkIntegrity(m, shortTermKey(SHORT_TERM_PASSWORD));
      } catch (err) {
        if (!(err instanceof StunError)) throw err;
      }
    }
    expect(decoded).toBeGreaterThan(0);
  });
});
