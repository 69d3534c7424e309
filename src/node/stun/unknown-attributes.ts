/** UNKNOWN-ATTRIBUTES (RFC 8489 §14.9): the 16-bit types a 420 response did not understand. */
import { type AttributeCodec, AttributeType, view } from './attribute.ts';
import { StunError } from './errors.ts';

export const UnknownAttributes: AttributeCodec<number[]> = {
  type: AttributeType.UNKNOWN_ATTRIBUTES,
  name: 'UNKNOWN-ATTRIBUTES',
  encode(types) {
    const out = new Uint8Array(2 * types.length);
    types.forEach((t, i) => {
      if (!Number.isInteger(t) || t < 0 || t > 0xffff)
        throw new StunError('bad-attribute', `UNKNOWN-ATTRIBUTES: ${t} is not a 16-bit type`);
      view(out).setUint16(2 * i, t);
    });
    return out;
  },
  decode(value) {
    if (value.length % 2 !== 0)
      throw new StunError('bad-attribute', 'UNKNOWN-ATTRIBUTES has an odd number of bytes');
    const types: number[] = [];
    for (let i = 0; i < value.length; i += 2) types.push(view(value).getUint16(i));
    return types;
  },
};
