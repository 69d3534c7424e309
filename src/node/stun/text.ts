/**
 * UTF-8 text attributes with their RFC 8489 limits: USERNAME (< 513 bytes), REALM, NONCE and
 * SOFTWARE (< 128 characters and at most 763 bytes).
 */
import { type AttributeCodec, AttributeType } from './attribute.ts';
import { StunError } from './errors.ts';

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

export function decodeUtf8(bytes: Uint8Array, name: string): string {
  try {
    return decoder.decode(bytes);
  } catch {
    throw new StunError('bad-attribute', `${name} is not UTF-8`);
  }
}

function textCodec(
  type: number,
  name: string,
  maxBytes: number,
  maxChars: number,
): AttributeCodec<string> {
  const check = (text: string, bytes: number): void => {
    if (bytes > maxBytes || [...text].length > maxChars)
      throw new StunError(
        'too-long',
        `${name} holds at most ${maxChars} characters in ${maxBytes} bytes`,
      );
  };
  return {
    type,
    name,
    encode(text) {
      const bytes = encoder.encode(text);
      check(text, bytes.length);
      return bytes;
    },
    decode(value) {
      const text = decodeUtf8(value, name);
      check(text, value.length);
      return text;
    },
  };
}

export const Username = textCodec(AttributeType.USERNAME, 'USERNAME', 512, 512);
export const Realm = textCodec(AttributeType.REALM, 'REALM', 763, 127);
export const Nonce = textCodec(AttributeType.NONCE, 'NONCE', 763, 127);
export const Software = textCodec(AttributeType.SOFTWARE, 'SOFTWARE', 763, 127);
