/** ERROR-CODE (RFC 8489 §14.8): class (3–6) and number (0–99), then a UTF-8 reason phrase. */
import { type AttributeCodec, AttributeType, view } from './attribute.ts';
import { StunError } from './errors.ts';
import { decodeUtf8 } from './text.ts';

export interface ErrorCodeValue {
  code: number;
  reason: string;
}

/** The reason phrases RFC 8489 §14.8 and RFC 8656 §18 suggest. */
export const ERROR_REASONS: Readonly<Record<number, string>> = {
  300: 'Try Alternate',
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  420: 'Unknown Attribute',
  437: 'Allocation Mismatch',
  438: 'Stale Nonce',
  440: 'Address Family not Supported',
  441: 'Wrong Credentials',
  442: 'Unsupported Transport Protocol',
  443: 'Peer Address Family Mismatch',
  486: 'Allocation Quota Reached',
  500: 'Server Error',
  508: 'Insufficient Capacity',
};

const encoder = new TextEncoder();

export const ErrorCode: AttributeCodec<ErrorCodeValue> = {
  type: AttributeType.ERROR_CODE,
  name: 'ERROR-CODE',
  encode({ code, reason }) {
    if (!Number.isInteger(code) || code < 300 || code > 699)
      throw new StunError('bad-attribute', `ERROR-CODE: ${code} is not in 300–699`);
    const text = encoder.encode(reason);
    if (text.length > 763 || [...reason].length > 127)
      throw new StunError('too-long', 'ERROR-CODE: the reason holds at most 127 characters');
    const out = new Uint8Array(4 + text.length);
    view(out).setUint8(2, Math.floor(code / 100));
    view(out).setUint8(3, code % 100);
    out.set(text, 4);
    return out;
  },
  decode(value) {
    if (value.length < 4) throw new StunError('bad-attribute', 'ERROR-CODE is too short');
    const cls = (value[2] ?? 0) & 0x07;
    const number = value[3] ?? 0;
    if (cls < 3 || cls > 6 || number > 99)
      throw new StunError('bad-attribute', `ERROR-CODE: class ${cls}, number ${number}`);
    const reason = decodeUtf8(value.subarray(4), 'ERROR-CODE reason');
    if (value.length - 4 > 763 || [...reason].length > 127)
      throw new StunError('too-long', 'ERROR-CODE: the reason holds at most 127 characters');
    return { code: cls * 100 + number, reason };
  },
};
