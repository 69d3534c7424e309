/**
 * MESSAGE-INTEGRITY (HMAC-SHA1, RFC 8489 §14.5) and MESSAGE-INTEGRITY-SHA256 (§14.6), and the
 * keys they use: short-term (the password) and long-term (MD5 of username:realm:password).
 * node:crypto keeps them synchronous, which a codec needs.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { AttributeType, type RawAttribute, view } from './attribute.ts';
import { StunError } from './errors.ts';
import { HEADER_LENGTH, type StunMessage } from './message.ts';

export type IntegrityAlgorithm = 'sha1' | 'sha256';

const encoder = new TextEncoder();

// SASLprep (RFC 4013), the parts that change real passwords: non-ASCII spaces become spaces,
// "commonly mapped to nothing" characters go, then NFKC. RFC 5769's long-term vector needs it.
const NON_ASCII_SPACE = /[\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]/g;
const mappedToNothing = (c: number): boolean =>
  c === 0x00ad ||
  c === 0x034f ||
  c === 0x1806 ||
  (c >= 0x180b && c <= 0x180d) ||
  (c >= 0x200b && c <= 0x200d) ||
  c === 0x2060 ||
  (c >= 0xfe00 && c <= 0xfe0f) ||
  c === 0xfeff;

export function saslprep(text: string): string {
  return [...text.replace(NON_ASCII_SPACE, ' ')]
    .filter((ch) => !mappedToNothing(ch.codePointAt(0) ?? 0))
    .join('')
    .normalize('NFKC');
}

export function shortTermKey(password: string): Uint8Array {
  return encoder.encode(saslprep(password));
}

export function longTermKey(username: string, realm: string, password: string): Uint8Array {
  return new Uint8Array(
    createHash('md5')
      .update(`${username}:${realm}:${saslprep(password)}`, 'utf8')
      .digest(),
  );
}

/** HMAC over `prefix` (the message up to the integrity attribute, header length adjusted). */
export function integrityOf(
  prefix: Uint8Array,
  key: Uint8Array,
  algorithm: IntegrityAlgorithm,
): Uint8Array {
  return new Uint8Array(createHmac(algorithm, key).update(prefix).digest());
}

/** The message up to `attr`, with the header length counting through the end of `attr`. */
function coveredPrefix(message: StunMessage, attr: RawAttribute): Uint8Array {
  const prefix = message.raw.slice(0, attr.offset);
  view(prefix).setUint16(2, attr.offset - HEADER_LENGTH + 4 + attr.value.length);
  return prefix;
}

/**
 * Checks the message's integrity with `key`: MESSAGE-INTEGRITY-SHA256 when present (it is
 * the stronger one), else MESSAGE-INTEGRITY. Returns the algorithm that checked, so the
 * response can use the same one.
 */
export function checkIntegrity(message: StunMessage, key: Uint8Array): IntegrityAlgorithm {
  const sha256 = message.find(AttributeType.MESSAGE_INTEGRITY_SHA256);
  const sha1 = message.find(AttributeType.MESSAGE_INTEGRITY);
  const attr = sha256 ?? sha1;
  if (!attr) throw new StunError('integrity-missing', 'the message has no MESSAGE-INTEGRITY');
  const algorithm: IntegrityAlgorithm = sha256 ? 'sha256' : 'sha1';
  const size = attr.value.length;
  if (algorithm === 'sha1' ? size !== 20 : size < 16 || size > 32 || size % 4 !== 0)
    throw new StunError(
      'bad-attribute',
      `${algorithm === 'sha1' ? 'MESSAGE-INTEGRITY' : 'MESSAGE-INTEGRITY-SHA256'} cannot have ${size} bytes`,
    );
  const expected = integrityOf(coveredPrefix(message, attr), key, algorithm).subarray(0, size);
  if (!timingSafeEqual(expected, attr.value))
    throw new StunError('integrity-mismatch', 'the message integrity does not check with this key');
  return algorithm;
}
