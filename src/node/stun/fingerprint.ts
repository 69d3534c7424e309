/** FINGERPRINT (RFC 8489 §14.7): CRC-32 of the message up to it, XORed with 0x5354554E. */
import { AttributeType, view } from './attribute.ts';
import { StunError } from './errors.ts';
import type { StunMessage } from './message.ts';

const FINGERPRINT_XOR = 0x5354554e;

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/** CRC-32 as in ISO 3309 / zlib (the one FINGERPRINT uses). */
export function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) c = (CRC_TABLE[(c ^ b) & 0xff] ?? 0) ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** The FINGERPRINT value for `prefix`, whose header length must already count the fingerprint. */
export function fingerprintOf(prefix: Uint8Array): number {
  return (crc32(prefix) ^ FINGERPRINT_XOR) >>> 0;
}

/** True if the message has a FINGERPRINT; StunError if it has one that does not match. */
export function checkFingerprint(message: StunMessage): boolean {
  const attr = message.attributes.find((a) => a.type === AttributeType.FINGERPRINT);
  if (!attr) return false;
  if (attr.value.length !== 4)
    throw new StunError('bad-attribute', `FINGERPRINT has 4 bytes, not ${attr.value.length}`);
  // FINGERPRINT is last (decodeMessage enforces it), so the header length already covers it.
  if (view(attr.value).getUint32(0) !== fingerprintOf(message.raw.subarray(0, attr.offset)))
    throw new StunError('fingerprint-mismatch', 'the CRC-32 does not match the message');
  return true;
}
