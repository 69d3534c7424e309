/**
 * A tiny DER (X.690) encoder: just what a self-signed X.509 certificate needs.
 * Every function returns one complete TLV. No I/O, no platform APIs.
 */

type Bytes = Uint8Array<ArrayBuffer>;

const TAG = {
  integer: 0x02,
  bitString: 0x03,
  octetString: 0x04,
  null: 0x05,
  oid: 0x06,
  utf8String: 0x0c,
  utcTime: 0x17,
  generalizedTime: 0x18,
  sequence: 0x30,
  set: 0x31,
} as const;

export function concat(parts: readonly Uint8Array[]): Bytes {
  let total = 0;
  for (const p of parts) total += p.length;
  const out = new Uint8Array(total);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Short form below 128, else 0x80|n followed by n big-endian length bytes (X.690 §8.1.3). */
export function encodeLength(length: number): Bytes {
  if (!Number.isSafeInteger(length) || length < 0) throw new RangeError(`bad DER length ${length}`);
  if (length < 0x80) return Uint8Array.of(length);
  const bytes: number[] = [];
  for (let n = length; n > 0; n = Math.floor(n / 256)) bytes.unshift(n % 256);
  return Uint8Array.of(0x80 | bytes.length, ...bytes);
}

/** One TLV with a single-byte tag. */
export function tlv(tag: number, content: Uint8Array): Bytes {
  return concat([Uint8Array.of(tag), encodeLength(content.length), content]);
}

export const sequence = (...items: Uint8Array[]): Bytes => tlv(TAG.sequence, concat(items));

/** SET OF: DER wants the encoded elements in ascending byte order (X.690 §11.6). */
export function set(...items: Uint8Array[]): Bytes {
  const sorted = [...items].sort(compareBytes);
  return tlv(TAG.set, concat(sorted));
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const d = (a[i] ?? 0) - (b[i] ?? 0);
    if (d !== 0) return d;
  }
  return a.length - b.length;
}

/**
 * INTEGER from an unsigned big-endian magnitude: redundant leading zeros go, and one
 * 0x00 comes back when the top bit is set, or the value would read as negative.
 */
export function integer(magnitude: Uint8Array): Bytes {
  let start = 0;
  while (start < magnitude.length - 1 && magnitude[start] === 0) start++;
  const body = magnitude.length === 0 ? Uint8Array.of(0) : magnitude.subarray(start);
  const content = (body[0] ?? 0) & 0x80 ? concat([Uint8Array.of(0), body]) : body;
  return tlv(TAG.integer, content);
}

/** OBJECT IDENTIFIER from dotted text, e.g. "1.2.840.10045.4.3.2" (X.690 §8.19). */
export function oid(dotted: string): Bytes {
  if (!/^[0-2](\.(0|[1-9][0-9]*))+$/.test(dotted)) throw new RangeError(`bad OID ${dotted}`);
  const arcs = dotted.split('.').map(Number);
  const [first = 0, second = 0, ...rest] = arcs;
  if (first < 2 && second > 39) throw new RangeError(`bad OID ${dotted}`);
  const out: number[] = [];
  for (const arc of [first * 40 + second, ...rest]) {
    if (!Number.isSafeInteger(arc)) throw new RangeError(`OID arc too large in ${dotted}`);
    // Base 128, most significant group first, bit 8 set on all but the last.
    const groups = [arc % 128];
    for (let n = Math.floor(arc / 128); n > 0; n = Math.floor(n / 128)) {
      groups.unshift((n % 128) | 0x80);
    }
    out.push(...groups);
  }
  return tlv(TAG.oid, Uint8Array.from(out));
}

const encoder = new TextEncoder();

export const utf8String = (text: string): Bytes => tlv(TAG.utf8String, encoder.encode(text));

export const octetString = (content: Uint8Array): Bytes => tlv(TAG.octetString, content);

/** BIT STRING of whole bytes: the leading octet says no bits are unused. */
export const bitString = (content: Uint8Array): Bytes =>
  tlv(TAG.bitString, concat([Uint8Array.of(0), content]));

export const nullValue = (): Bytes => Uint8Array.of(TAG.null, 0);

/** [n] EXPLICIT: a constructed context-specific tag around one complete TLV. */
export function explicit(tagNumber: number, inner: Uint8Array): Bytes {
  if (!Number.isInteger(tagNumber) || tagNumber < 0 || tagNumber > 30) {
    throw new RangeError(`context tag ${tagNumber} needs the multi-byte form`);
  }
  return tlv(0xa0 | tagNumber, inner);
}

/**
 * An X.509 Time (RFC 5280 §4.1.2.5): UTCTime for years 1950 through 2049, GeneralizedTime
 * otherwise; always UTC with 'Z' and whole seconds, as the profile requires.
 */
export function time(ms: number): Bytes {
  const date = new Date(ms);
  if (Number.isNaN(date.getTime())) throw new RangeError(`bad time ${ms}`);
  const year = date.getUTCFullYear();
  if (year < 0 || year > 9999) throw new RangeError(`year ${year} cannot be encoded`);
  const two = (n: number): string => n.toString().padStart(2, '0');
  const rest =
    two(date.getUTCMonth() + 1) +
    two(date.getUTCDate()) +
    two(date.getUTCHours()) +
    two(date.getUTCMinutes()) +
    two(date.getUTCSeconds()) +
    'Z';
  if (year >= 1950 && year <= 2049) {
    return tlv(TAG.utcTime, encoder.encode(two(year % 100) + rest));
  }
  return tlv(TAG.generalizedTime, encoder.encode(year.toString().padStart(4, '0') + rest));
}
