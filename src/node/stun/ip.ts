/** IPv4 and IPv6 addresses as text and as bytes, without I/O (the codec stays pure). */
import { formatIp6 } from '../../core/identity/index.ts';
import { StunError } from './errors.ts';

/** Parses dotted IPv4 or RFC 4291 IPv6 text into 4 or 16 bytes; undefined if it is neither. */
export function parseIp(text: string): Uint8Array | undefined {
  return text.includes(':') ? parseIpv6(text) : parseIpv4(text);
}

function parseIpv4(text: string): Uint8Array | undefined {
  const parts = text.split('.');
  if (parts.length !== 4) return undefined;
  const bytes = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const part = parts[i] ?? '';
    if (!/^\d{1,3}$/.test(part) || Number(part) > 255) return undefined;
    bytes[i] = Number(part);
  }
  return bytes;
}

function parseIpv6(text: string): Uint8Array | undefined {
  const zoneless = text.replace(/%.*$/, '');
  const halves = zoneless.split('::');
  if (halves.length > 2) return undefined;
  const groups = (half: string | undefined): number[] | undefined => {
    if (!half) return [];
    const out: number[] = [];
    const parts = half.split(':');
    for (let i = 0; i < parts.length; i++) {
      const part = parts[i] ?? '';
      if (i === parts.length - 1 && part.includes('.')) {
        const v4 = parseIpv4(part);
        if (!v4) return undefined;
        out.push(((v4[0] ?? 0) << 8) | (v4[1] ?? 0), ((v4[2] ?? 0) << 8) | (v4[3] ?? 0));
      } else {
        if (!/^[0-9a-fA-F]{1,4}$/.test(part)) return undefined;
        out.push(Number.parseInt(part, 16));
      }
    }
    return out;
  };
  const head = groups(halves[0]);
  const tail = groups(halves[1]);
  if (!head || !tail) return undefined;
  const missing = 8 - head.length - tail.length;
  if (halves.length === 1 ? missing !== 0 : missing < 1) return undefined;
  const all = [...head, ...new Array<number>(halves.length === 1 ? 0 : missing).fill(0), ...tail];
  const bytes = new Uint8Array(16);
  all.forEach((g, i) => {
    bytes[2 * i] = g >> 8;
    bytes[2 * i + 1] = g & 0xff;
  });
  return bytes;
}

/** Formats 4 or 16 bytes as text (IPv6 in RFC 5952 form: lower case, longest zero run as ::). */
export function formatIp(bytes: Uint8Array): string {
  if (bytes.length === 4) return bytes.join('.');
  if (bytes.length !== 16)
    throw new StunError('bad-attribute', `an IP address has 4 or 16 bytes, not ${bytes.length}`);
  return formatIp6(bytes); // the one RFC 5952 formatter (src/core/identity)
}

/** `::ffff:a.b.c.d` (what a dual-stack socket reports for IPv4 senders) as plain IPv4. */
export function unmapIpv4(address: string): string {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  return m?.[1] ?? address;
}

/**
 * What one party cannot cheaply multiply, as a key for per-address limits (the gateway's and
 * the TURN server's): an IPv4 address as itself (IPv4-mapped IPv6 too), an IPv6 address as its
 * /64 (one subscriber's network, `2001:db8::/64`). Text that is no address is its own key.
 */
export function addressKey(address: string): string {
  const bytes = parseIp(unmapIpv4(address));
  if (!bytes) return address.slice(0, 64);
  if (bytes.length === 4) return formatIp(bytes);
  const prefix = new Uint8Array(16);
  prefix.set(bytes.subarray(0, 8));
  return `${formatIp(prefix)}/64`;
}
