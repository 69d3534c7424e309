/** Encodes a STUN message: attributes in order, then MESSAGE-INTEGRITY(-SHA256), then FINGERPRINT. */
import { type AttributeCodec, AttributeType, view } from './attribute.ts';
import { StunError } from './errors.ts';
import { fingerprintOf } from './fingerprint.ts';
import { type IntegrityAlgorithm, integrityOf } from './integrity.ts';
import {
  HEADER_LENGTH,
  messageType,
  randomTransactionId,
  type StunClass,
  writeHeader,
} from './message.ts';

export interface BuildOptions {
  /** Adds MESSAGE-INTEGRITY (sha1) or MESSAGE-INTEGRITY-SHA256 computed with this key. */
  integrity?: { key: Uint8Array; algorithm?: IntegrityAlgorithm };
  fingerprint?: boolean;
  /** The byte that pads values to 4 bytes: receivers ignore it (RFC 5769's vectors use spaces). */
  paddingByte?: number;
}

const MAX_ATTRIBUTE_LENGTH = 0xffff;

export class MessageBuilder {
  private readonly parts: { type: number; value: Uint8Array }[] = [];

  constructor(
    readonly method: number,
    readonly cls: StunClass,
    readonly transactionId: Uint8Array = randomTransactionId(),
  ) {
    if (transactionId.length !== 12)
      throw new StunError('bad-attribute', 'a transaction ID has 12 bytes');
  }

  add<T>(codec: AttributeCodec<T>, value: T): this {
    return this.addRaw(codec.type, codec.encode(value, this.transactionId));
  }

  addRaw(type: number, value: Uint8Array): this {
    if (value.length > MAX_ATTRIBUTE_LENGTH)
      throw new StunError('too-long', `an attribute value holds at most 65535 bytes`);
    this.parts.push({ type, value });
    return this;
  }

  build(options: BuildOptions = {}): Uint8Array {
    const algorithm = options.integrity?.algorithm ?? 'sha1';
    const integritySize = options.integrity ? (algorithm === 'sha1' ? 20 : 32) : 0;
    const body = this.parts.reduce((n, p) => n + 4 + ((p.value.length + 3) & ~3), 0);
    const total =
      HEADER_LENGTH +
      body +
      (integritySize ? 4 + integritySize : 0) +
      (options.fingerprint ? 8 : 0);
    if (total - HEADER_LENGTH > 0xffff)
      throw new StunError('too-long', 'a STUN message holds at most 65535 bytes of attributes');
    const out = new Uint8Array(total);
    const v = view(out);
    const type = messageType(this.method, this.cls);
    let offset = HEADER_LENGTH;
    const put = (attrType: number, value: Uint8Array) => {
      v.setUint16(offset, attrType);
      v.setUint16(offset + 2, value.length);
      out.set(value, offset + 4);
      const padded = (value.length + 3) & ~3;
      if (options.paddingByte !== undefined)
        out.fill(options.paddingByte, offset + 4 + value.length, offset + 4 + padded);
      offset += 4 + padded;
    };
    for (const p of this.parts) put(p.type, p.value);
    if (options.integrity) {
      // The HMAC covers the header with a length that already counts the integrity attribute.
      writeHeader(out, type, offset - HEADER_LENGTH + 4 + integritySize, this.transactionId);
      const mac = integrityOf(out.subarray(0, offset), options.integrity.key, algorithm);
      put(
        algorithm === 'sha1'
          ? AttributeType.MESSAGE_INTEGRITY
          : AttributeType.MESSAGE_INTEGRITY_SHA256,
        mac,
      );
    }
    if (options.fingerprint) {
      writeHeader(out, type, offset - HEADER_LENGTH + 8, this.transactionId);
      const crc = new Uint8Array(4);
      view(crc).setUint32(0, fingerprintOf(out.subarray(0, offset)));
      put(AttributeType.FINGERPRINT, crc);
    }
    writeHeader(out, type, offset - HEADER_LENGTH, this.transactionId);
    return out;
  }
}
