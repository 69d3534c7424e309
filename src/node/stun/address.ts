/**
 * Address attributes: MAPPED-ADDRESS (RFC 8489 §14.1) and the XOR-obfuscated ones
 * (XOR-MAPPED-ADDRESS §14.2; TURN's XOR-PEER-ADDRESS and XOR-RELAYED-ADDRESS, RFC 8656 §18):
 * a family (1 IPv4, 2 IPv6), a port and the address, XORed with the cookie and transaction ID.
 */
import { type AttributeCodec, AttributeType, view } from './attribute.ts';
import { StunError } from './errors.ts';
import { formatIp, parseIp } from './ip.ts';
import { MAGIC_COOKIE } from './message.ts';

export interface TransportAddress {
  /** IPv4 dotted or IPv6 text. */
  address: string;
  port: number;
}

const FAMILY_IPV4 = 0x01;
const FAMILY_IPV6 = 0x02;

function addressCodec(type: number, name: string, xor: boolean): AttributeCodec<TransportAddress> {
  // The XOR mask: the cookie for the port and IPv4, cookie + transaction ID for IPv6.
  const mask = (transactionId: Uint8Array): Uint8Array => {
    const m = new Uint8Array(16);
    view(m).setUint32(0, MAGIC_COOKIE);
    m.set(transactionId, 4);
    return m;
  };
  return {
    type,
    name,
    encode({ address, port }, transactionId) {
      const ip = parseIp(address);
      if (!ip) throw new StunError('bad-attribute', `${name}: "${address}" is not an IP address`);
      if (!Number.isInteger(port) || port < 0 || port > 0xffff)
        throw new StunError('bad-attribute', `${name}: port ${port} is out of range`);
      const out = new Uint8Array(4 + ip.length);
      const v = view(out);
      v.setUint8(1, ip.length === 4 ? FAMILY_IPV4 : FAMILY_IPV6);
      v.setUint16(2, xor ? port ^ (MAGIC_COOKIE >>> 16) : port);
      const m = xor ? mask(transactionId) : undefined;
      for (let i = 0; i < ip.length; i++) out[4 + i] = (ip[i] ?? 0) ^ (m?.[i] ?? 0);
      return out;
    },
    decode(value, transactionId) {
      if (value.length < 4) throw new StunError('bad-attribute', `${name} is too short`);
      const v = view(value);
      const family = v.getUint8(1);
      const size = family === FAMILY_IPV4 ? 4 : family === FAMILY_IPV6 ? 16 : 0;
      if (!size) throw new StunError('bad-attribute', `${name}: unknown address family ${family}`);
      if (value.length !== 4 + size)
        throw new StunError(
          'bad-attribute',
          `${name}: an ${size === 4 ? 'IPv4' : 'IPv6'} address takes ${4 + size} bytes, not ${value.length}`,
        );
      const m = xor ? mask(transactionId) : undefined;
      const ip = new Uint8Array(size);
      for (let i = 0; i < size; i++) ip[i] = (value[4 + i] ?? 0) ^ (m?.[i] ?? 0);
      const port = xor ? v.getUint16(2) ^ (MAGIC_COOKIE >>> 16) : v.getUint16(2);
      return { address: formatIp(ip), port };
    },
  };
}

export const MappedAddress = addressCodec(AttributeType.MAPPED_ADDRESS, 'MAPPED-ADDRESS', false);
export const XorMappedAddress = addressCodec(
  AttributeType.XOR_MAPPED_ADDRESS,
  'XOR-MAPPED-ADDRESS',
  true,
);
export const XorPeerAddress = addressCodec(
  AttributeType.XOR_PEER_ADDRESS,
  'XOR-PEER-ADDRESS',
  true,
);
export const XorRelayedAddress = addressCodec(
  AttributeType.XOR_RELAYED_ADDRESS,
  'XOR-RELAYED-ADDRESS',
  true,
);
