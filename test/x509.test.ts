/**
 * Self-signed DTLS certificates (DESIGN §1) checked by parsers we did not write:
 * node:crypto's X509Certificate and, when it is installed, the openssl binary.
 */
import { spawnSync } from 'node:child_process';
import {
  createHash,
  generateKeyPairSync,
  randomBytes,
  sign,
  verify,
  X509Certificate,
} from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  bitString,
  encodeLength,
  explicit,
  integer,
  nullValue,
  octetString,
  oid,
  sequence,
  set,
  time,
  utf8String,
} from '../src/core/identity/der.ts';
import {
  createSelfSignedCertificate,
  decodeBase64url,
  type NodeKey,
  nodeKeyFromCryptoKeys,
} from '../src/core/identity/index.ts';
import { p1363ToDer } from '../src/core/identity/x509.ts';

const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex');
const fromHex = (text: string): Uint8Array => new Uint8Array(Buffer.from(text, 'hex'));
const ascii = (bytes: Uint8Array): string => Buffer.from(bytes).toString('latin1');

async function makeKey(): Promise<NodeKey> {
  const pair = await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, [
    'sign',
    'verify',
  ]);
  return nodeKeyFromCryptoKeys(pair.privateKey, pair.publicKey);
}

/** A minimal DER reader, independent of the encoder, to look inside what we made. */
interface Tlv {
  tag: number;
  content: Uint8Array;
  /** The whole TLV. */
  raw: Uint8Array;
}

function readTlv(bytes: Uint8Array, at = 0): Tlv {
  const tag = bytes[at] ?? -1;
  let length = bytes[at + 1] ?? 0;
  let start = at + 2;
  if (length & 0x80) {
    const n = length & 0x7f;
    length = 0;
    for (let i = 0; i < n; i++) length = length * 256 + (bytes[start + i] ?? 0);
    start += n;
  }
  if (start + length > bytes.length) throw new Error('TLV runs past its container');
  return {
    tag,
    content: bytes.subarray(start, start + length),
    raw: bytes.subarray(at, start + length),
  };
}

function children(parent: Tlv): Tlv[] {
  const out: Tlv[] = [];
  for (let at = 0; at < parent.content.length; ) {
    const child = readTlv(parent.content, at);
    out.push(child);
    at += child.raw.length;
  }
  return out;
}

/** The TBSCertificate's fields, by position (v3 with a version tag first). */
function tbsFields(der: Uint8Array) {
  const [tbs] = children(readTlv(der));
  if (!tbs) throw new Error('no TBSCertificate');
  const [version, serial, , , validity] = children(tbs);
  if (!version || !serial || !validity) throw new Error('short TBSCertificate');
  const [notBefore, notAfter] = children(validity);
  if (!notBefore || !notAfter) throw new Error('short Validity');
  return { version, serial, notBefore, notAfter };
}

/** The uncompressed point of a KeyObject, via JWK rather than SPKI bytes. */
function rawPoint(key: X509Certificate['publicKey']): Uint8Array {
  const jwk = key.export({ format: 'jwk' });
  const x = decodeBase64url(jwk.x ?? '');
  const y = decodeBase64url(jwk.y ?? '');
  if (!x || !y) throw new Error('no point in the JWK');
  return Uint8Array.of(0x04, ...x, ...y);
}

describe('der', () => {
  it('encodes lengths in short and long form', () => {
    expect(hex(encodeLength(0))).toBe('00');
    expect(hex(encodeLength(127))).toBe('7f');
    expect(hex(encodeLength(128))).toBe('8180');
    expect(hex(encodeLength(255))).toBe('81ff');
    expect(hex(encodeLength(256))).toBe('820100');
    expect(hex(encodeLength(65535))).toBe('82ffff');
    expect(hex(encodeLength(65536))).toBe('83010000');
    expect(() => encodeLength(-1)).toThrow(RangeError);
    const long = octetString(new Uint8Array(300));
    expect(hex(long.subarray(0, 4))).toBe('0482012c');
    expect(long.length).toBe(304);
  });

  it('encodes integers from unsigned bytes, minimal and positive', () => {
    expect(hex(integer(new Uint8Array(0)))).toBe('020100');
    expect(hex(integer(Uint8Array.of(0)))).toBe('020100');
    expect(hex(integer(Uint8Array.of(0, 0, 0)))).toBe('020100');
    expect(hex(integer(Uint8Array.of(2)))).toBe('020102');
    expect(hex(integer(Uint8Array.of(0x7f)))).toBe('02017f');
    expect(hex(integer(Uint8Array.of(0x80)))).toBe('02020080');
    expect(hex(integer(Uint8Array.of(0xff, 0x01)))).toBe('020300ff01');
    expect(hex(integer(Uint8Array.of(0, 0, 0x7f, 0xff)))).toBe('02027fff');
    expect(hex(integer(Uint8Array.of(0, 0, 0x80, 0)))).toBe('0203008000');
    expect(hex(integer(Uint8Array.of(0, 0x01, 0)))).toBe('02020100');
  });

  it('encodes object identifiers', () => {
    expect(hex(oid('1.2.840.10045.4.3.2'))).toBe('06082a8648ce3d040302');
    expect(hex(oid('1.2.840.10045.2.1'))).toBe('06072a8648ce3d0201');
    expect(hex(oid('1.2.840.10045.3.1.7'))).toBe('06082a8648ce3d030107');
    expect(hex(oid('2.5.4.3'))).toBe('0603550403');
    expect(hex(oid('1.2.840.113549.1.1.11'))).toBe('06092a864886f70d01010b');
    expect(hex(oid('2.999.3'))).toBe('0603883703');
    expect(hex(oid('0.0'))).toBe('060100');
    for (const bad of ['', '1', '3.1', '1.40', '1.2.', '1..2', '1.02', 'a.b']) {
      expect(() => oid(bad), bad).toThrow(RangeError);
    }
  });

  it('encodes times as UTCTime through 2049 and GeneralizedTime from 2050', () => {
    const at = (ms: number) => {
      const t = readTlv(time(ms));
      return [t.tag, ascii(t.content)];
    };
    expect(at(Date.UTC(1950, 0, 1))).toEqual([0x17, '500101000000Z']);
    expect(at(Date.UTC(1999, 11, 31, 23, 59, 59))).toEqual([0x17, '991231235959Z']);
    expect(at(Date.UTC(2024, 1, 29, 1, 2, 3, 999))).toEqual([0x17, '240229010203Z']);
    expect(at(Date.UTC(2049, 11, 31, 23, 59, 59, 999))).toEqual([0x17, '491231235959Z']);
    expect(at(Date.UTC(2050, 0, 1))).toEqual([0x18, '20500101000000Z']);
    expect(at(Date.UTC(2051, 6, 4, 5, 6, 7))).toEqual([0x18, '20510704050607Z']);
    expect(at(Date.UTC(1949, 11, 31, 23, 59, 59))).toEqual([0x18, '19491231235959Z']);
    expect(() => time(Number.NaN)).toThrow(RangeError);
  });

  it('encodes the remaining types', () => {
    expect(hex(sequence())).toBe('3000');
    expect(hex(sequence(nullValue(), nullValue()))).toBe('300405000500');
    // SET OF sorts its encoded elements.
    expect(hex(set(integer(Uint8Array.of(3)), integer(Uint8Array.of(1))))).toBe('3106020101020103');
    expect(hex(utf8String('hé'))).toBe('0c0368c3a9');
    expect(hex(bitString(Uint8Array.of(0xab)))).toBe('030200ab');
    expect(hex(octetString(Uint8Array.of(1, 2)))).toBe('04020102');
    expect(hex(explicit(0, integer(Uint8Array.of(2))))).toBe('a003020102');
    expect(hex(explicit(3, sequence()))).toBe('a3023000');
    expect(() => explicit(31, sequence())).toThrow(RangeError);
  });
});

describe('createSelfSignedCertificate', () => {
  const notBefore = Date.UTC(2025, 2, 4, 5, 6, 7, 890);
  const notAfter = Date.UTC(2026, 2, 4, 5, 6, 7, 123);

  it('makes a certificate node:crypto parses and verifies', async () => {
    const key = await makeKey();
    const cert = await createSelfSignedCertificate(key, {
      commonName: 'rtcmesh node',
      notBefore,
      notAfter,
    });
    const x = new X509Certificate(cert.der);
    expect(x.subject).toBe('CN=rtcmesh node');
    expect(x.issuer).toBe('CN=rtcmesh node');
    expect(Date.parse(x.validFrom)).toBe(Math.floor(notBefore / 1000) * 1000);
    expect(Date.parse(x.validTo)).toBe(Math.floor(notAfter / 1000) * 1000);
    expect(cert.notAfter).toBe(Math.floor(notAfter / 1000) * 1000);
    expect(hex(rawPoint(x.publicKey))).toBe(hex(key.publicKey));
    expect(x.publicKey.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
    expect(x.verify(x.publicKey)).toBe(true);
    expect(x.checkIssued(x)).toBe(true);
    expect(x.ca).toBe(false);
    // Node gives "AB:CD:…"; ours is the record form "sha-256 AB:CD:…".
    expect(cert.fingerprint).toBe(`sha-256 ${x.fingerprint256}`);
    const digest = createHash('sha256').update(cert.der).digest('hex').toUpperCase();
    expect(cert.fingerprint).toBe(`sha-256 ${digest.match(/../g)?.join(':')}`);
    expect(hex(tbsFields(cert.der).version.raw)).toBe('a003020102');
  });

  it('does not verify when signed by another key than the one it names', async () => {
    const key = await makeKey();
    const other = await makeKey();
    const forged: NodeKey = { publicKey: key.publicKey, sign: (data) => other.sign(data) };
    const cert = await createSelfSignedCertificate(forged, {
      commonName: 'x',
      notBefore,
      notAfter,
    });
    const x = new X509Certificate(cert.der);
    expect(x.verify(x.publicKey)).toBe(false);
  });

  it('writes PEM with 64-character lines that decodes to the DER', async () => {
    const cert = await createSelfSignedCertificate(await makeKey(), {
      commonName: 'pem',
      notBefore,
      notAfter,
    });
    const lines = cert.pem.trimEnd().split('\n');
    expect(lines[0]).toBe('-----BEGIN CERTIFICATE-----');
    expect(lines.at(-1)).toBe('-----END CERTIFICATE-----');
    const body = lines.slice(1, -1);
    for (const line of body.slice(0, -1)) expect(line).toMatch(/^[A-Za-z0-9+/]{64}$/);
    expect(body.at(-1)).toMatch(/^[A-Za-z0-9+/]{1,63}={0,2}$|^[A-Za-z0-9+/]{64}$/);
    expect(hex(Buffer.from(body.join(''), 'base64'))).toBe(hex(cert.der));
    expect(new X509Certificate(cert.pem).fingerprint256).toBe(
      new X509Certificate(cert.der).fingerprint256,
    );
  });

  it('uses GeneralizedTime from 2050 and UTCTime through 2049', async () => {
    const key = await makeKey();
    const from = Date.UTC(2049, 11, 31, 23, 59, 59);
    const until = Date.UTC(2051, 5, 1, 2, 3, 4, 500);
    const cert = await createSelfSignedCertificate(key, {
      commonName: 'long',
      notBefore: from,
      notAfter: until,
    });
    const x = new X509Certificate(cert.pem);
    expect(Date.parse(x.validFrom)).toBe(from);
    expect(Date.parse(x.validTo)).toBe(Date.UTC(2051, 5, 1, 2, 3, 4));
    expect(x.validTo).toContain('2051');
    const fields = tbsFields(cert.der);
    expect(fields.notBefore.tag).toBe(0x17);
    expect(ascii(fields.notBefore.content)).toBe('491231235959Z');
    expect(fields.notAfter.tag).toBe(0x18);
    expect(ascii(fields.notAfter.content)).toBe('20510601020304Z');
    expect(x.verify(x.publicKey)).toBe(true);
  });

  it('backdates notBefore by a day when not given', async () => {
    const before = Date.now();
    const cert = await createSelfSignedCertificate(await makeKey(), {
      commonName: 'now',
      notAfter: before + 3_600_000,
    });
    const from = Date.parse(new X509Certificate(cert.der).validFrom);
    const day = 24 * 3_600_000;
    expect(from).toBeGreaterThanOrEqual(Math.floor((before - day) / 1000) * 1000);
    expect(from).toBeLessThanOrEqual(Date.now() - day);
  });

  it('picks random, positive, 16-octet serials', async () => {
    const key = await makeKey();
    const seen = new Set<string>();
    for (let i = 0; i < 32; i++) {
      const cert = await createSelfSignedCertificate(key, { commonName: 's', notBefore, notAfter });
      const serial = tbsFields(cert.der).serial;
      expect(serial.tag).toBe(0x02);
      expect(serial.content.length).toBe(16);
      expect(serial.content[0]).toBeGreaterThan(0);
      expect(serial.content[0]).toBeLessThan(0x80);
      const x = new X509Certificate(cert.der);
      expect(x.serialNumber.toLowerCase()).toBe(hex(serial.content));
      seen.add(hex(serial.content));
    }
    expect(seen.size).toBe(32);
  });

  it('keeps a given serial positive and minimal', async () => {
    const key = await makeKey();
    const serialOf = async (serial: Uint8Array) => {
      const cert = await createSelfSignedCertificate(key, {
        commonName: 's',
        notBefore,
        notAfter,
        serial,
      });
      return [hex(tbsFields(cert.der).serial.content), new X509Certificate(cert.der).serialNumber];
    };
    // The top bit set: a 0x00 goes in front, or it would be read as negative.
    expect(await serialOf(Uint8Array.of(0xff, 0x01))).toEqual(['00ff01', 'FF01']);
    expect(await serialOf(Uint8Array.of(0x80, ...new Uint8Array(18)))).toEqual([
      `0080${'00'.repeat(18)}`,
      `80${'00'.repeat(18)}`,
    ]);
    // Leading zeros go.
    expect(await serialOf(Uint8Array.of(0, 0, 0x01, 0x02))).toEqual(['0102', '0102']);
    expect(await serialOf(Uint8Array.of(0, 0x90))).toEqual(['0090', '90']);
    // 20 octets is the limit, counted as encoded.
    expect((await serialOf(new Uint8Array(20).fill(0x7f)))[0]).toBe('7f'.repeat(20));
    await expect(serialOf(new Uint8Array(20).fill(0x80))).rejects.toThrow(RangeError);
    await expect(serialOf(new Uint8Array(21).fill(1))).rejects.toThrow(RangeError);
    await expect(serialOf(Uint8Array.of(0, 0))).rejects.toThrow(RangeError);
    await expect(serialOf(new Uint8Array(0))).rejects.toThrow(RangeError);
  });

  it('uses long-form lengths for a long common name', async () => {
    const commonName = `rtcmesh ${'ü'.repeat(150)}`;
    const cert = await createSelfSignedCertificate(await makeKey(), {
      commonName,
      notBefore,
      notAfter,
    });
    const x = new X509Certificate(cert.der);
    expect(x.subject).toBe(`CN=${commonName}`);
    expect(x.verify(x.publicKey)).toBe(true);
  });

  it('refuses bad input', async () => {
    const key = await makeKey();
    await expect(
      createSelfSignedCertificate(key, { commonName: '', notBefore, notAfter }),
    ).rejects.toThrow(RangeError);
    await expect(
      createSelfSignedCertificate(key, { commonName: 'x', notBefore, notAfter: notBefore }),
    ).rejects.toThrow(RangeError);
    // Within the same second is the same time once encoded.
    await expect(
      createSelfSignedCertificate(key, { commonName: 'x', notBefore, notAfter: notBefore + 50 }),
    ).rejects.toThrow(RangeError);
    await expect(
      createSelfSignedCertificate(key, { commonName: 'x', notBefore, notAfter: Number.NaN }),
    ).rejects.toThrow(RangeError);
    const badKey: NodeKey = { publicKey: key.publicKey.subarray(1), sign: key.sign };
    await expect(
      createSelfSignedCertificate(badKey, { commonName: 'x', notBefore, notAfter }),
    ).rejects.toThrow(/bad-key/);
  });

  it('is accepted by openssl x509', async () => {
    const cert = await createSelfSignedCertificate(await makeKey(), {
      commonName: 'rtcmesh openssl',
      notBefore,
      notAfter: Date.UTC(2051, 0, 2, 3, 4, 5),
      serial: Uint8Array.of(0xc0, 0xff, 0xee),
    });
    const run = spawnSync('openssl', ['x509', '-noout', '-text'], {
      input: cert.pem,
      encoding: 'utf8',
    });
    // Only where the binary exists; node:crypto covered the rest above.
    if (!run.error) {
      expect(run.status, run.stderr).toBe(0);
      expect(run.stdout).toContain('Version: 3 (0x2)');
      expect(run.stdout).toMatch(/Serial Number: 12648430 \(0xc0ffee\)|c0:ff:ee/);
      expect(run.stdout).not.toContain('Negative');
      expect(run.stdout).toContain('ecdsa-with-SHA256');
      expect(run.stdout).toContain('id-ecPublicKey');
      expect(run.stdout).toContain('prime256v1');
      expect(run.stdout).toContain('CN = rtcmesh openssl');
      expect(run.stdout).toContain('Not After : Jan  2 03:04:05 2051 GMT');
      expect(run.stdout).toContain('CA:FALSE');
    }
  });
});

describe('p1363ToDer', () => {
  it('encodes known values', () => {
    const r = new Uint8Array(32);
    const s = new Uint8Array(32);
    r[31] = 1;
    s[0] = 0x80;
    expect(hex(p1363ToDer(Uint8Array.of(...r, ...s)))).toBe(
      `3026020101022100${'80'}${'00'.repeat(31)}`,
    );
    const zeros = fromHex(`0000${'7f'.repeat(30)}${'ff'.repeat(32)}`);
    expect(hex(p1363ToDer(zeros))).toBe(`3043021e${'7f'.repeat(30)}022100${'ff'.repeat(32)}`);
    expect(() => p1363ToDer(new Uint8Array(63))).toThrow(RangeError);
    expect(() => p1363ToDer(new Uint8Array(0))).toThrow(RangeError);
  });

  it('converts signatures node:crypto then verifies, whatever their first bytes are', () => {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const hits = { rHigh: 0, sHigh: 0, rZero: 0, sZero: 0, rZeroThenHigh: 0, sZeroThenHigh: 0 };
    let count = 0;
    const done = () => count >= 500 && Object.values(hits).every((n) => n > 0);
    for (; !done() && count < 50_000; count++) {
      const data = randomBytes(16);
      const p1363 = new Uint8Array(
        sign('sha256', data, { key: privateKey, dsaEncoding: 'ieee-p1363' }),
      );
      expect(p1363.length).toBe(64);
      const [r0 = 0, r1 = 0] = p1363.subarray(0, 2);
      const [s0 = 0, s1 = 0] = p1363.subarray(32, 34);
      if (r0 >= 0x80) hits.rHigh++;
      if (s0 >= 0x80) hits.sHigh++;
      if (r0 === 0) hits.rZero++;
      if (s0 === 0) hits.sZero++;
      if (r0 === 0 && r1 >= 0x80) hits.rZeroThenHigh++;
      if (s0 === 0 && s1 >= 0x80) hits.sZeroThenHigh++;
      const der = p1363ToDer(p1363);
      if (!verify('sha256', data, publicKey, der)) {
        throw new Error(`converted signature ${hex(p1363)} does not verify: ${hex(der)}`);
      }
    }
    expect(hits.rHigh).toBeGreaterThan(0);
    expect(hits.sHigh).toBeGreaterThan(0);
    expect(hits.rZero).toBeGreaterThan(0);
    expect(hits.sZero).toBeGreaterThan(0);
    expect(hits.rZeroThenHigh).toBeGreaterThan(0);
    expect(hits.sZeroThenHigh).toBeGreaterThan(0);
  });

  it('matches the DER node:crypto writes for the same signature', () => {
    // ECDSA is randomised, so convert node's DER to P1363 and back through ours.
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    for (let i = 0; i < 200; i++) {
      const data = randomBytes(16);
      const der = new Uint8Array(sign('sha256', data, privateKey));
      const [r, s] = children(readTlv(der));
      if (!r || !s) throw new Error('not a SEQUENCE of two INTEGERs');
      const toFixed = (n: Uint8Array) => {
        const out = new Uint8Array(32);
        const trimmed = n[0] === 0 ? n.subarray(1) : n;
        out.set(trimmed, 32 - trimmed.length);
        return out;
      };
      expect(hex(p1363ToDer(Uint8Array.of(...toFixed(r.content), ...toFixed(s.content))))).toBe(
        hex(der),
      );
    }
  });
});
