/** Attribute types (RFC 8489 §18.3, RFC 8656 §18) and the shape of an attribute codec. */

export const AttributeType = {
  MAPPED_ADDRESS: 0x0001,
  USERNAME: 0x0006,
  MESSAGE_INTEGRITY: 0x0008,
  ERROR_CODE: 0x0009,
  UNKNOWN_ATTRIBUTES: 0x000a,
  CHANNEL_NUMBER: 0x000c,
  LIFETIME: 0x000d,
  XOR_PEER_ADDRESS: 0x0012,
  DATA: 0x0013,
  REALM: 0x0014,
  NONCE: 0x0015,
  XOR_RELAYED_ADDRESS: 0x0016,
  REQUESTED_ADDRESS_FAMILY: 0x0017,
  EVEN_PORT: 0x0018,
  REQUESTED_TRANSPORT: 0x0019,
  DONT_FRAGMENT: 0x001a,
  MESSAGE_INTEGRITY_SHA256: 0x001c,
  XOR_MAPPED_ADDRESS: 0x0020,
  RESERVATION_TOKEN: 0x0022,
  SOFTWARE: 0x8022,
  FINGERPRINT: 0x8028,
} as const;

/** Types 0x0000–0x7FFF must be understood; a request carrying an unknown one gets 420. */
export function isComprehensionRequired(type: number): boolean {
  return type < 0x8000;
}

/** Turns an attribute's value into bytes and back. XOR addresses need the transaction ID. */
export interface AttributeCodec<T> {
  readonly type: number;
  readonly name: string;
  encode(value: T, transactionId: Uint8Array): Uint8Array;
  /** Throws StunError ('bad-attribute' or 'too-long') for a value it cannot read. */
  decode(value: Uint8Array, transactionId: Uint8Array): T;
}

/** An attribute as it sits in a message: `offset` is where its 4-byte header starts. */
export interface RawAttribute {
  type: number;
  value: Uint8Array;
  offset: number;
}

export function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
