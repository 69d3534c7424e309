/**
 * TURN's own attributes (RFC 8656 §18): CHANNEL-NUMBER, LIFETIME, DATA, REQUESTED-TRANSPORT,
 * REQUESTED-ADDRESS-FAMILY, EVEN-PORT, RESERVATION-TOKEN and DONT-FRAGMENT. The address ones
 * (XOR-PEER-ADDRESS, XOR-RELAYED-ADDRESS) live with the other addresses in stun/address.ts.
 */
import { type AttributeCodec, AttributeType, view } from '../../stun/attribute.ts';
import { StunError } from '../../stun/errors.ts';

function fixedSize(name: string, value: Uint8Array, size: number): DataView {
  if (value.length !== size)
    throw new StunError('bad-attribute', `${name} has ${size} bytes, not ${value.length}`);
  return view(value);
}

/** A channel number and 16 reserved bits. Whether it is in range is the server's call (400). */
export const ChannelNumber: AttributeCodec<number> = {
  type: AttributeType.CHANNEL_NUMBER,
  name: 'CHANNEL-NUMBER',
  encode(channel) {
    if (!Number.isInteger(channel) || channel < 0 || channel > 0xffff)
      throw new StunError('bad-attribute', `CHANNEL-NUMBER: ${channel} is not a 16-bit number`);
    const out = new Uint8Array(4);
    view(out).setUint16(0, channel);
    return out;
  },
  decode: (value) => fixedSize('CHANNEL-NUMBER', value, 4).getUint16(0),
};

/** Seconds until the allocation expires. */
export const Lifetime: AttributeCodec<number> = {
  type: AttributeType.LIFETIME,
  name: 'LIFETIME',
  encode(seconds) {
    if (!Number.isInteger(seconds) || seconds < 0 || seconds > 0xffffffff)
      throw new StunError('bad-attribute', `LIFETIME: ${seconds} is not a 32-bit number`);
    const out = new Uint8Array(4);
    view(out).setUint32(0, seconds);
    return out;
  },
  decode: (value) => fixedSize('LIFETIME', value, 4).getUint32(0),
};

/** The application data of Send and Data indications, as is. */
export const Data: AttributeCodec<Uint8Array> = {
  type: AttributeType.DATA,
  name: 'DATA',
  encode: (data) => data,
  decode: (value) => value,
};

export const PROTOCOL_UDP = 17;

/** The IP protocol number of the relayed transport (17, UDP, is the one this server has). */
export const RequestedTransport: AttributeCodec<number> = {
  type: AttributeType.REQUESTED_TRANSPORT,
  name: 'REQUESTED-TRANSPORT',
  encode(protocol) {
    if (!Number.isInteger(protocol) || protocol < 0 || protocol > 0xff)
      throw new StunError('bad-attribute', `REQUESTED-TRANSPORT: ${protocol} is not a protocol`);
    return new Uint8Array([protocol, 0, 0, 0]);
  },
  decode: (value) => fixedSize('REQUESTED-TRANSPORT', value, 4).getUint8(0),
};

export type AddressFamily = 'ipv4' | 'ipv6';

/** 0x01 IPv4, 0x02 IPv6; any other value decodes as the number itself (the server says 440). */
export const RequestedAddressFamily: AttributeCodec<AddressFamily | number> = {
  type: AttributeType.REQUESTED_ADDRESS_FAMILY,
  name: 'REQUESTED-ADDRESS-FAMILY',
  encode(family) {
    const byte = family === 'ipv4' ? 1 : family === 'ipv6' ? 2 : family;
    if (typeof byte !== 'number' || !Number.isInteger(byte) || byte < 0 || byte > 0xff)
      throw new StunError('bad-attribute', `REQUESTED-ADDRESS-FAMILY: ${family}`);
    return new Uint8Array([byte, 0, 0, 0]);
  },
  decode(value) {
    const byte = fixedSize('REQUESTED-ADDRESS-FAMILY', value, 4).getUint8(0);
    return byte === 1 ? 'ipv4' : byte === 2 ? 'ipv6' : byte;
  },
};

/** Asks for an even relay port; `reserveNext` (the R bit) also reserves the port above it. */
export const EvenPort: AttributeCodec<{ reserveNext: boolean }> = {
  type: AttributeType.EVEN_PORT,
  name: 'EVEN-PORT',
  encode: ({ reserveNext }) => new Uint8Array([reserveNext ? 0x80 : 0]),
  decode: (value) => ({ reserveNext: (fixedSize('EVEN-PORT', value, 1).getUint8(0) & 0x80) !== 0 }),
};

/** 8 opaque bytes naming a reserved relay port. */
export const ReservationToken: AttributeCodec<Uint8Array> = {
  type: AttributeType.RESERVATION_TOKEN,
  name: 'RESERVATION-TOKEN',
  encode(token) {
    fixedSize('RESERVATION-TOKEN', token, 8);
    return token;
  },
  decode(value) {
    fixedSize('RESERVATION-TOKEN', value, 8);
    return value;
  },
};

/** No value: its presence asks for the DF bit. */
export const DontFragment: AttributeCodec<true> = {
  type: AttributeType.DONT_FRAGMENT,
  name: 'DONT-FRAGMENT',
  encode: () => new Uint8Array(0),
  decode(value) {
    fixedSize('DONT-FRAGMENT', value, 0);
    return true;
  },
};
