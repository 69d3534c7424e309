/**
 * Self-signed X.509 v3 certificates for a node's DTLS certificate (DESIGN §1), signed by a
 * `NodeKey`. Node.js hands the PEM to node-datachannel; WebCrypto alone does the signing,
 * so the module also runs in a browser.
 */
import { encodeBase64url } from './base64url.ts';
import { toHex } from './bytes.ts';
import { formatFingerprint } from './certificate.ts';
import {
  bitString,
  explicit,
  integer,
  octetString,
  oid,
  sequence,
  set,
  time,
  utf8String,
} from './der.ts';
import { sha256 } from './identity-crypto.ts';
import { assertRawPublicKey } from './node-id.ts';
import type { NodeKey } from './node-key.ts';

export interface SelfSignedCertificate {
  der: Uint8Array;
  pem: string;
  /** "sha-256 AB:CD:…" of the DER, the form records and SDP use. */
  fingerprint: string;
  /** The expiry as encoded: whole seconds, in ms. */
  notAfter: number;
}

export interface SelfSignedCertificateOptions {
  commonName: string;
  /** Default: a day ago, as WebRTC does, so peers with a slow clock accept it too. */
  notBefore?: number;
  notAfter: number;
  /** Unsigned big-endian; default 16 random bytes. */
  serial?: Uint8Array;
}

const OID_ECDSA_WITH_SHA256 = '1.2.840.10045.4.3.2';
const OID_EC_PUBLIC_KEY = '1.2.840.10045.2.1';
const OID_PRIME256V1 = '1.2.840.10045.3.1.7';
const OID_COMMON_NAME = '2.5.4.3';
const OID_BASIC_CONSTRAINTS = '2.5.29.19';

const NOT_BEFORE_BACKDATE_MS = 24 * 60 * 60 * 1000;
/** RFC 5280 §4.1.2.2: a serial is at most 20 octets. */
const MAX_SERIAL_OCTETS = 20;

export async function createSelfSignedCertificate(
  key: NodeKey,
  options: SelfSignedCertificateOptions,
): Promise<SelfSignedCertificate> {
  assertRawPublicKey(key.publicKey);
  if (options.commonName.length === 0) throw new RangeError('the common name must not be empty');
  // X.509 times have whole seconds; round down so what we report is what the DER says.
  const notBefore = wholeSeconds(options.notBefore ?? Date.now() - NOT_BEFORE_BACKDATE_MS);
  const notAfter = wholeSeconds(options.notAfter);
  if (!(notAfter > notBefore)) throw new RangeError('notAfter must be after notBefore');

  const signatureAlgorithm = sequence(oid(OID_ECDSA_WITH_SHA256)); // no parameters (RFC 5758)
  const name = sequence(set(sequence(oid(OID_COMMON_NAME), utf8String(options.commonName))));
  const tbs = sequence(
    explicit(0, integer(Uint8Array.of(2))), // v3
    serialNumber(options.serial ?? randomSerial()),
    signatureAlgorithm,
    name, // issuer
    sequence(time(notBefore), time(notAfter)),
    name, // subject: the same, as it is self-signed
    sequence(sequence(oid(OID_EC_PUBLIC_KEY), oid(OID_PRIME256V1)), bitString(key.publicKey)),
    // basicConstraints cA=FALSE (the DEFAULT, so an empty SEQUENCE): not a CA.
    explicit(3, sequence(sequence(oid(OID_BASIC_CONSTRAINTS), octetString(sequence())))),
  );
  const signature = p1363ToDer(await key.sign(tbs));
  const der = sequence(tbs, signatureAlgorithm, bitString(signature));

  const digest = toHex(await sha256(der)).match(/../g) ?? [];
  return {
    der,
    pem: toPem(der),
    fingerprint: formatFingerprint('sha-256', digest.join(':')),
    notAfter,
  };
}

/** JOSE/WebCrypto r||s to the ECDSA-Sig-Value SEQUENCE { r INTEGER, s INTEGER } X.509 wants. */
export function p1363ToDer(signature: Uint8Array): Uint8Array {
  if (signature.length === 0 || signature.length % 2 !== 0) {
    throw new RangeError(`an r||s signature has an even, non-zero length, not ${signature.length}`);
  }
  const half = signature.length / 2;
  return sequence(integer(signature.subarray(0, half)), integer(signature.subarray(half)));
}

function wholeSeconds(ms: number): number {
  if (!Number.isFinite(ms)) throw new RangeError(`bad time ${ms}`);
  return Math.floor(ms / 1000) * 1000;
}

/** RFC 5280 §4.1.2.2: positive, non-zero, at most 20 octets as encoded. */
function serialNumber(magnitude: Uint8Array): Uint8Array {
  if (magnitude.every((b) => b === 0)) throw new RangeError('the serial must be positive');
  const encoded = integer(magnitude);
  // Short-form length here, so the content is everything after tag and length.
  if (encoded.length - 2 > MAX_SERIAL_OCTETS) {
    throw new RangeError(`the serial must fit ${MAX_SERIAL_OCTETS} octets`);
  }
  return encoded;
}

/** 16 random bytes, top bit clear and first byte non-zero: positive, exactly 16 octets. */
function randomSerial(): Uint8Array {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[0] = ((bytes[0] ?? 0) & 0x7f) | 0x01;
  return bytes;
}

function toPem(der: Uint8Array): string {
  // Standard base64 with padding (RFC 7468), from the base64url the module already has.
  const b64url = encodeBase64url(der);
  const b64 =
    b64url.replaceAll('-', '+').replaceAll('_', '/') + '='.repeat((4 - (b64url.length % 4)) % 4);
  const lines = b64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN CERTIFICATE-----\n${lines.join('\n')}\n-----END CERTIFICATE-----\n`;
}
