/** RFC 4648 §6 base32, lower case, no padding: the text form of node IDs. */

const ALPHABET = 'abcdefghijklmnopqrstuvwxyz234567';
const LOOKUP = new Map([...ALPHABET].map((c, i) => [c, i]));

export function encodeBase32(bytes: Uint8Array): string {
  let out = '';
  let bits = 0;
  let value = 0;
  for (const b of bytes) {
    value = ((value << 8) | b) & 0xffff;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      out += ALPHABET[(value >> bits) & 31];
    }
  }
  if (bits > 0) out += ALPHABET[(value << (5 - bits)) & 31];
  return out;
}

/** Accepts either case; returns undefined for any other character or non-zero trailing bits. */
export function decodeBase32(text: string): Uint8Array<ArrayBuffer> | undefined {
  const out = new Uint8Array(Math.floor((text.length * 5) / 8));
  let bits = 0;
  let value = 0;
  let o = 0;
  for (const c of text.toLowerCase()) {
    const v = LOOKUP.get(c);
    if (v === undefined) return undefined;
    value = ((value << 5) | v) & 0xffff;
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (value >> bits) & 0xff;
    }
  }
  if (bits >= 5 || (value & ((1 << bits) - 1)) !== 0) return undefined;
  return out;
}
