/**
 * Identity (DESIGN §1) against values computed here independently with node:crypto,
 * and every way a record or request token can be bad.
 */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  certificateNeedsRenewal,
  createAuthorization,
  createNodeRecord,
  decodeBase32,
  decodeBase64url,
  encodeBase32,
  encodeBase64url,
  fingerprintsInSdp,
  formatIp6,
  generateNodeKeyPair,
  IdentityError,
  type IdentityErrorCode,
  identityOf,
  MemoryReplayGuard,
  type NodeIdentity,
  nodeKeyFromCryptoKeys,
  parseIp6,
  parseNodeId,
  RecordCache,
  verifyAuthorization,
  verifyNodeRecord,
} from '../src/core/identity/index.ts';
import { signJws } from '../src/core/identity/jws.ts';
import { identityFromPrivateKey } from './support/fixed-identity.ts';

// RFC 6979 A.2.5: the P-256 test key.
const FIXED_D = 'c9afa9d845ba75166b5c215767b1d6934e50c3db36e89b127b8a622b120f6721';
const FIXED_ID = 'wgfyntqtrhsg32d2ussrghhihqiwb6rtycd2wfnymnlu2moy746a';
const FIXED_IP6 = 'fdb1:8b86:ce13:89e4:6de8:7aa4:a513:1ce8';
const FP_A = `sha-256 ${'AB:'.repeat(31)}CD`;
const FP_B = `sha-256 ${'12:'.repeat(31)}34`;

/** Independent base32: via a bit string, not the shift register the module uses. */
function base32ByBits(bytes: Uint8Array): string {
  let bits = [...bytes].map((b) => b.toString(2).padStart(8, '0')).join('');
  while (bits.length % 5) bits += '0';
  const alphabet = 'abcdefghijklmnopqrstuvwxyz234567';
  let out = '';
  for (let i = 0; i < bits.length; i += 5)
    out += alphabet[Number.parseInt(bits.slice(i, i + 5), 2)];
  return out;
}

/** Independent IPv6 text: the WHATWG URL parser serializes per RFC 5952. */
function ip6ByUrl(bytes: Uint8Array): string {
  const full = Buffer.from(bytes).toString('hex').match(/.{4}/g)?.join(':');
  return new URL(`http://[${full}]/`).hostname.slice(1, -1);
}

const fixedIdentity = () => identityFromPrivateKey(FIXED_D);

async function newIdentity(): Promise<NodeIdentity> {
  const pair = await generateNodeKeyPair();
  return identityOf(await nodeKeyFromCryptoKeys(pair.privateKey, pair.publicKey));
}

async function expectCode(p: Promise<unknown>, code: IdentityErrorCode): Promise<IdentityError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(IdentityError);
  expect((err as IdentityError).code).toBe(code);
  expect((err as IdentityError).message.length).toBeGreaterThan(code.length + 10);
  return err as IdentityError;
}

describe('node ID and mesh IPv6', () => {
  it('a fixed key gives a known ID and IPv6', async () => {
    const identity = await fixedIdentity();
    expect(identity.id).toBe(FIXED_ID);
    expect(identity.ip6).toBe(FIXED_IP6);
  });

  it('matches an independent computation for random keys', async () => {
    for (let i = 0; i < 20; i++) {
      const identity = await newIdentity();
      const digest = createHash('sha256').update(identity.key.publicKey).digest();
      expect(identity.id).toBe(base32ByBits(digest));
      expect(identity.id).toHaveLength(52);
      expect(identity.ip6).toBe(
        ip6ByUrl(Buffer.concat([Buffer.from([0xfd]), digest.subarray(0, 15)])),
      );
    }
  });

  it('parses IDs in either case and refuses anything else', () => {
    expect(parseNodeId(FIXED_ID.toUpperCase())).toBe(FIXED_ID);
    expect(parseNodeId(` ${FIXED_ID} `)).toBe(FIXED_ID);
    expect(parseNodeId(FIXED_ID.slice(1))).toBeUndefined();
    expect(parseNodeId(`${FIXED_ID.slice(0, 51)}1`)).toBeUndefined();
    expect(parseNodeId('')).toBeUndefined();
  });
});

describe('codecs', () => {
  it('base32 follows RFC 4648 §10 (lower case, unpadded)', () => {
    const vectors: [string, string][] = [
      ['', ''],
      ['f', 'my'],
      ['fo', 'mzxq'],
      ['foo', 'mzxw6'],
      ['foob', 'mzxw6yq'],
      ['fooba', 'mzxw6ytb'],
      ['foobar', 'mzxw6ytboi'],
    ];
    for (const [plain, encoded] of vectors) {
      expect(encodeBase32(Buffer.from(plain))).toBe(encoded);
      expect(Buffer.from(decodeBase32(encoded.toUpperCase()) ?? []).toString()).toBe(plain);
    }
    expect(decodeBase32('mzxw6y!')).toBeUndefined();
    expect(decodeBase32('mzxw6yr')).toBeUndefined(); // non-zero trailing bits
  });

  it('base64url round-trips and refuses padding and foreign characters', () => {
    for (let n = 0; n < 70; n++) {
      const bytes = crypto.getRandomValues(new Uint8Array(n));
      const text = encodeBase64url(bytes);
      expect(text).toBe(Buffer.from(bytes).toString('base64url'));
      expect(decodeBase64url(text)).toEqual(bytes);
    }
    expect(decodeBase64url('Zg==')).toBeUndefined();
    expect(decodeBase64url('Z+8')).toBeUndefined();
    expect(decodeBase64url('Zh')).toBeUndefined(); // non-canonical trailing bits
  });

  it('formats and parses IPv6 text per RFC 5952', () => {
    const cases: [string, string][] = [
      ['2001:0db8:0000:0000:0000:0000:0000:0001', '2001:db8::1'],
      ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
      ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'],
      ['0:0:0:0:0:0:0:0', '::'],
      ['fd00::', 'fd00::'],
      ['[FD12:3456::AB]', 'fd12:3456::ab'],
    ];
    for (const [input, canonical] of cases) {
      const bytes = parseIp6(input);
      expect(bytes, input).toBeDefined();
      expect(formatIp6(bytes as Uint8Array)).toBe(canonical);
      expect(formatIp6(bytes as Uint8Array)).toBe(ip6ByUrl(bytes as Uint8Array));
    }
    for (const bad of [
      '1::2::3',
      '1:2:3:4:5:6:7',
      '1:2:3:4:5:6:7:8:9',
      'g::1',
      '12345::',
      '1:2:3:4:5:6:7::8',
    ]) {
      expect(parseIp6(bad), bad).toBeUndefined();
    }
  });

  it('reads DTLS fingerprints from SDP in record form', () => {
    const sdp =
      'v=0\r\na=fingerprint:sha-256 ab:cd:ef\r\nm=application 9\r\na=fingerprint:sha-256 AB:CD:EF\r\n';
    expect(fingerprintsInSdp(sdp)).toEqual(['sha-256 AB:CD:EF']);
  });

  it('renews a certificate with less than 30 days to live', () => {
    const day = 86_400_000;
    expect(certificateNeedsRenewal(Date.now() + 365 * day, Date.now())).toBe(false);
    expect(certificateNeedsRenewal(Date.now() + 31 * day, Date.now())).toBe(false);
    expect(certificateNeedsRenewal(Date.now() + 29 * day, Date.now())).toBe(true);
    expect(certificateNeedsRenewal(Date.now() - day, Date.now())).toBe(true);
  });
});

describe('node records', () => {
  it('a record made by a node verifies, with its fingerprint in use', async () => {
    const a = await fixedIdentity();
    const jws = await createNodeRecord(a, { fingerprints: [FP_A], name: 'laptop' });
    const record = await verifyNodeRecord(jws, { expectedId: a.id, fingerprintsInUse: [FP_A] });
    expect(record.id).toBe(FIXED_ID);
    expect(record.ip6).toBe(FIXED_IP6);
    expect(record.name).toBe('laptop');
    expect(record.fingerprints).toEqual([FP_A]);
  });

  it('signed by another key than the one it names: bad-signature', async () => {
    const a = await fixedIdentity();
    const b = await newIdentity();
    const now = Math.floor(Date.now() / 1000);
    const payload = {
      v: 1,
      id: a.id,
      key: encodeBase64url(a.key.publicKey),
      ip6: a.ip6,
      fp: [FP_A],
      iat: now,
      exp: now + 60,
    };
    await expectCode(
      verifyNodeRecord(await signJws(b.key, { alg: 'ES256' }, payload)),
      'bad-signature',
    );
  });

  it('claiming an ID its key does not hash to: id-mismatch', async () => {
    const a = await fixedIdentity();
    const b = await newIdentity();
    const now = Math.floor(Date.now() / 1000);
    const payload = {
      v: 1,
      id: b.id,
      key: encodeBase64url(a.key.publicKey),
      ip6: b.ip6,
      fp: [FP_A],
      iat: now,
      exp: now + 60,
    };
    await expectCode(
      verifyNodeRecord(await signJws(a.key, { alg: 'ES256' }, payload)),
      'id-mismatch',
    );
  });

  it('an IPv6 address that is not the ID’s: ip6-mismatch', async () => {
    const a = await fixedIdentity();
    const b = await newIdentity();
    const now = Math.floor(Date.now() / 1000);
    const payload = {
      v: 1,
      id: a.id,
      key: encodeBase64url(a.key.publicKey),
      ip6: b.ip6,
      fp: [FP_A],
      iat: now,
      exp: now + 60,
    };
    await expectCode(
      verifyNodeRecord(await signJws(a.key, { alg: 'ES256' }, payload)),
      'ip6-mismatch',
    );
  });

  it('expired, or issued in the future', async () => {
    const a = await fixedIdentity();
    const old = await createNodeRecord(a, { fingerprints: [FP_A], nowS: 1_000_000, lifetimeS: 60 });
    await expectCode(verifyNodeRecord(old), 'expired');
    const future = await createNodeRecord(a, {
      fingerprints: [FP_A],
      nowS: Math.floor(Date.now() / 1000) + 3600,
    });
    await expectCode(verifyNodeRecord(future), 'not-yet-valid');
  });

  it('a tampered payload or signature: bad-signature', async () => {
    const a = await fixedIdentity();
    const jws = await createNodeRecord(a, { fingerprints: [FP_A], name: 'alice' });
    const [h, p, s] = jws.split('.') as [string, string, string];
    const payload = JSON.parse(Buffer.from(p, 'base64url').toString());
    payload.fp = [FP_B];
    const swapped = `${h}.${Buffer.from(JSON.stringify(payload)).toString('base64url')}.${s}`;
    await expectCode(verifyNodeRecord(swapped), 'bad-signature');
    const sig = Buffer.from(s, 'base64url');
    sig[10] = (sig[10] ?? 0) ^ 1;
    await expectCode(verifyNodeRecord(`${h}.${p}.${sig.toString('base64url')}`), 'bad-signature');
  });

  it('a fingerprint in use that the record does not list: fingerprint-not-listed', async () => {
    const a = await fixedIdentity();
    const jws = await createNodeRecord(a, { fingerprints: [FP_A] });
    await expectCode(
      verifyNodeRecord(jws, { fingerprintsInUse: [FP_B] }),
      'fingerprint-not-listed',
    );
    await expectCode(verifyNodeRecord(jws, { fingerprintsInUse: [] }), 'fingerprint-not-listed');
  });

  it('a record cache verifies the signature once and the claims on every use', async () => {
    const a = await fixedIdentity();
    const b = await newIdentity();
    const cache = new RecordCache(2);
    const now = Math.floor(Date.now() / 1000);
    const jws = await createNodeRecord(a, { fingerprints: [FP_A], nowS: now, lifetimeS: 60 });
    const first = await cache.verify(jws, { expectedId: a.id, fingerprintsInUse: [FP_A] });
    expect(await cache.verify(jws, { expectedId: a.id })).toBe(first);
    expect(cache.size).toBe(1);
    await expectCode(cache.verify(jws, { fingerprintsInUse: [FP_B] }), 'fingerprint-not-listed');
    await expectCode(cache.verify(jws, { expectedId: b.id }), 'wrong-peer');
    await expectCode(cache.verify(jws, { nowS: now + 60 }), 'expired');
    // A bad record is never remembered; the oldest entry goes beyond the bound.
    const [h, p, sig] = jws.split('.') as [string, string, string];
    const forged = `${h}.${p}.${sig.slice(0, -4)}AAAA`;
    await expectCode(cache.verify(forged), 'bad-signature');
    await expectCode(cache.verify(forged), 'bad-signature');
    await cache.verify(await createNodeRecord(b, { fingerprints: [FP_B] }));
    await cache.verify(await createNodeRecord(b, { fingerprints: [FP_A] }));
    expect(cache.size).toBe(2);
  });

  it('a valid record of another node than the one dialed: wrong-peer', async () => {
    const a = await fixedIdentity();
    const b = await newIdentity();
    const jws = await createNodeRecord(b, { fingerprints: [FP_B] });
    await expectCode(
      verifyNodeRecord(jws, { expectedId: a.id, fingerprintsInUse: [FP_B] }),
      'wrong-peer',
    );
  });

  it('garbage: malformed, never a crash', async () => {
    const a = await fixedIdentity();
    const good = await createNodeRecord(a, { fingerprints: [FP_A] });
    const [, p, s] = good.split('.');
    for (const bad of [
      '',
      'a.b',
      'a.b.c.d',
      '!!!.x.y',
      `${Buffer.from('{"alg":"none"}').toString('base64url')}.${p}.${s}`,
      `${Buffer.from('not json').toString('base64url')}.${p}.${s}`,
      'x'.repeat(10_000),
    ]) {
      await expectCode(verifyNodeRecord(bad), 'malformed');
    }
  });

  it('a key that is not a P-256 point: bad-key', async () => {
    const a = await fixedIdentity();
    const now = Math.floor(Date.now() / 1000);
    const notAPoint = new Uint8Array(65).fill(7);
    notAPoint[0] = 4;
    const payload = {
      v: 1,
      id: a.id,
      key: encodeBase64url(notAPoint),
      ip6: a.ip6,
      fp: [FP_A],
      iat: now,
      exp: now + 60,
    };
    await expectCode(verifyNodeRecord(await signJws(a.key, { alg: 'ES256' }, payload)), 'bad-key');
  });
});

describe('request tokens (Authorization: vapid t=…, k=…)', () => {
  const gateway = 'http://127.0.0.1:8080';

  it('a fresh token verifies and names the caller', async () => {
    const a = await fixedIdentity();
    const header = await createAuthorization(a.key, `${gateway}/v1/connect`);
    expect(header).toMatch(/^vapid t=[\w-]+\.[\w-]+\.[\w-]+, k=[\w-]{87}$/);
    const verified = await verifyAuthorization(header, {
      audience: gateway,
      replayGuard: new MemoryReplayGuard(),
    });
    expect(verified.id).toBe(FIXED_ID);
  });

  it('for another gateway: wrong-audience', async () => {
    const a = await fixedIdentity();
    const header = await createAuthorization(a.key, 'https://other.example');
    await expectCode(
      verifyAuthorization(header, { audience: gateway, replayGuard: new MemoryReplayGuard() }),
      'wrong-audience',
    );
  });

  it('expired, or living too long', async () => {
    const a = await fixedIdentity();
    const now = Math.floor(Date.now() / 1000);
    const old = await createAuthorization(a.key, gateway, { nowS: now - 700, lifetimeS: 600 });
    await expectCode(
      verifyAuthorization(old, { audience: gateway, replayGuard: new MemoryReplayGuard() }),
      'expired',
    );
    const long = await createAuthorization(a.key, gateway, { lifetimeS: 3600 });
    await expectCode(
      verifyAuthorization(long, { audience: gateway, replayGuard: new MemoryReplayGuard() }),
      'lifetime-too-long',
    );
  });

  it('used twice: replayed', async () => {
    const a = await fixedIdentity();
    const guard = new MemoryReplayGuard();
    const header = await createAuthorization(a.key, gateway);
    await verifyAuthorization(header, { audience: gateway, replayGuard: guard });
    await expectCode(
      verifyAuthorization(header, { audience: gateway, replayGuard: guard }),
      'replayed',
    );
  });

  it('k= of another key than the signer: bad-signature; tampered claims too', async () => {
    const a = await fixedIdentity();
    const b = await newIdentity();
    const header = await createAuthorization(a.key, gateway);
    const forged = header.replace(/k=.*$/, `k=${encodeBase64url(b.key.publicKey)}`);
    await expectCode(
      verifyAuthorization(forged, { audience: gateway, replayGuard: new MemoryReplayGuard() }),
      'bad-signature',
    );
    const [, t = ''] = /t=([^,]+)/.exec(header) ?? [];
    const [h, p, s] = t.split('.') as [string, string, string];
    const claims = JSON.parse(Buffer.from(p, 'base64url').toString());
    claims.exp += 60;
    const tampered = header.replace(
      t,
      `${h}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.${s}`,
    );
    await expectCode(
      verifyAuthorization(tampered, { audience: gateway, replayGuard: new MemoryReplayGuard() }),
      'bad-signature',
    );
  });

  it('no header, another scheme, or missing parts: malformed', async () => {
    for (const bad of [
      undefined,
      '',
      'Bearer abc',
      'vapid t=abc',
      'vapid k=abc',
      'vapid t=a.b.c, k=',
    ]) {
      await expectCode(
        verifyAuthorization(bad, { audience: gateway, replayGuard: new MemoryReplayGuard() }),
        'malformed',
      );
    }
  });
});
