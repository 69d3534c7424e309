/**
 * The STUN message (RFC 8489 §5): a 20-byte header (type, length, magic cookie, transaction
 * ID) and TLV attributes padded to 4 bytes. Decoding checks the framing only and keeps each
 * attribute's bytes; typed values are read through attribute codecs. No I/O here.
 */
import { type AttributeCodec, AttributeType, type RawAttribute, view } from './attribute.ts';
import { StunError } from './errors.ts';

export const MAGIC_COOKIE = 0x2112a442;
export const HEADER_LENGTH = 20;

export type StunClass = 'request' | 'indication' | 'success' | 'error';

export const Method = {
  BINDING: 0x001,
  ALLOCATE: 0x003,
  REFRESH: 0x004,
  SEND: 0x006,
  DATA: 0x007,
  CREATE_PERMISSION: 0x008,
  CHANNEL_BIND: 0x009,
} as const;

const CLASS_BITS: Record<StunClass, number> = {
  request: 0x0000,
  indication: 0x0010,
  success: 0x0100,
  error: 0x0110,
};
const CLASSES: readonly StunClass[] = ['request', 'indication', 'success', 'error'];

/** Interleaves the 12 method bits with the 2 class bits (RFC 8489 §5, figure 3). */
export function messageType(method: number, cls: StunClass): number {
  return (method & 0x000f) | ((method & 0x0070) << 1) | ((method & 0x0f80) << 2) | CLASS_BITS[cls];
}

export function splitMessageType(type: number): { method: number; cls: StunClass } {
  const method = (type & 0x000f) | ((type & 0x00e0) >> 1) | ((type & 0x3e00) >> 2);
  const cls = CLASSES[((type >> 4) & 1) | ((type >> 7) & 2)] ?? 'request';
  return { method, cls };
}

export function randomTransactionId(): Uint8Array {
  return crypto.getRandomValues(new Uint8Array(12));
}

/** A decoded message. Attributes after MESSAGE-INTEGRITY are not trusted (§14.5). */
export class StunMessage {
  /** Attributes covered by the integrity check, plus the integrity and fingerprint ones. */
  private readonly trusted: readonly RawAttribute[];

  constructor(
    readonly method: number,
    readonly cls: StunClass,
    readonly transactionId: Uint8Array,
    readonly attributes: readonly RawAttribute[],
    readonly raw: Uint8Array,
  ) {
    const integrity = attributes.findIndex(
      (a) =>
        a.type === AttributeType.MESSAGE_INTEGRITY ||
        a.type === AttributeType.MESSAGE_INTEGRITY_SHA256,
    );
    this.trusted =
      integrity < 0
        ? attributes
        : attributes.filter(
            (a, i) =>
              i <= integrity ||
              a.type === AttributeType.MESSAGE_INTEGRITY_SHA256 ||
              a.type === AttributeType.FINGERPRINT,
          );
  }

  /** The first attribute of this type (later duplicates are ignored, as RFC 8489 says). */
  find(type: number): RawAttribute | undefined {
    return this.trusted.find((a) => a.type === type);
  }

  has(type: number): boolean {
    return this.find(type) !== undefined;
  }

  /** The attribute's value, or undefined if absent; StunError if present but malformed. */
  get<T>(codec: AttributeCodec<T>): T | undefined {
    const raw = this.find(codec.type);
    return raw ? codec.decode(raw.value, this.transactionId) : undefined;
  }

  /** Every instance of a repeatable attribute (XOR-PEER-ADDRESS in CreatePermission). */
  getAll<T>(codec: AttributeCodec<T>): T[] {
    return this.trusted
      .filter((a) => a.type === codec.type)
      .map((a) => codec.decode(a.value, this.transactionId));
  }

  /** Attribute types present that are trusted, in order. */
  get types(): number[] {
    return this.trusted.map((a) => a.type);
  }
}

/** Is this datagram STUN at all (RFC 7983: first byte 0–3, and the cookie)? */
export function looksLikeStun(bytes: Uint8Array): boolean {
  return (
    bytes.length >= HEADER_LENGTH &&
    ((bytes[0] ?? 0xff) & 0xc0) === 0 &&
    view(bytes).getUint32(4) === MAGIC_COOKIE
  );
}

export function decodeMessage(bytes: Uint8Array): StunMessage {
  if (bytes.length < HEADER_LENGTH)
    throw new StunError('too-short', `${bytes.length} bytes is shorter than a STUN header`);
  const v = view(bytes);
  const type = v.getUint16(0);
  if (type & 0xc000) throw new StunError('not-stun', 'the first two bits of a STUN message are 0');
  if (v.getUint32(4) !== MAGIC_COOKIE)
    throw new StunError('bad-cookie', 'the magic cookie is not 0x2112A442');
  const length = v.getUint16(2);
  if (length % 4 !== 0)
    throw new StunError('bad-length', `the length ${length} is not a multiple of 4`);
  if (HEADER_LENGTH + length !== bytes.length)
    throw new StunError(
      'bad-length',
      `the header says ${length} bytes of attributes, the datagram has ${bytes.length - HEADER_LENGTH}`,
    );
  const attributes: RawAttribute[] = [];
  let offset = HEADER_LENGTH;
  while (offset < bytes.length) {
    if (attributes.at(-1)?.type === AttributeType.FINGERPRINT)
      throw new StunError('fingerprint-not-last', 'an attribute follows FINGERPRINT');
    if (bytes.length - offset < 4)
      throw new StunError('truncated-attribute', `an attribute header is cut off at ${offset}`);
    const attrType = v.getUint16(offset);
    const attrLength = v.getUint16(offset + 2);
    const start = offset + 4;
    const padded = (attrLength + 3) & ~3;
    if (start + padded > bytes.length)
      throw new StunError(
        'truncated-attribute',
        `attribute 0x${attrType.toString(16)} of ${attrLength} bytes runs past the message`,
      );
    attributes.push({
      type: attrType,
      value: bytes.subarray(start, start + attrLength),
      offset,
    });
    offset = start + padded;
  }
  const { method, cls } = splitMessageType(type);
  return new StunMessage(method, cls, bytes.subarray(8, 20), attributes, bytes);
}

/** Writes the header for `bodyLength` bytes of attributes into the first 20 bytes of `out`. */
export function writeHeader(
  out: Uint8Array,
  type: number,
  bodyLength: number,
  transactionId: Uint8Array,
): void {
  const v = view(out);
  v.setUint16(0, type);
  v.setUint16(2, bodyLength);
  v.setUint32(4, MAGIC_COOKIE);
  out.set(transactionId, 8);
}
