/**
 * Who a request comes from, for limits a stranger cannot turn against honest users
 * (issue #12, docs/design.md §8): an IPv4 address counts as itself, an IPv6 address by its
 * /64 (one host is usually given a whole /64), and behind a trusted reverse proxy the
 * address the proxy saw.
 */
import type { IncomingMessage } from 'node:http';
import { formatIp, parseIp } from '../stun/ip.ts';

/** The key per-address limits use: IPv4 as is, IPv6 as its /64 prefix (`2001:db8::/64`). */
export function addressKey(ip: string): string {
  const bytes = parseIp(ip);
  if (!bytes) return ip.slice(0, 64);
  if (bytes.length === 4) return formatIp(bytes);
  // IPv4-mapped IPv6 (::ffff:a.b.c.d): the IPv4 address.
  if (bytes.subarray(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff)
    return formatIp(bytes.subarray(12));
  const prefix = new Uint8Array(16);
  prefix.set(bytes.subarray(0, 8));
  return `${formatIp(prefix)}/64`;
}

/**
 * The client's address: the socket's peer, or with `trustProxy` the last address in
 * `X-Forwarded-For` (the one the proxy in front of us appended; earlier ones are whatever
 * the client claimed).
 */
export function clientAddress(req: IncomingMessage, trustProxy: boolean): string {
  const peer = req.socket.remoteAddress ?? 'unknown';
  if (!trustProxy) return peer;
  const header = req.headers['x-forwarded-for'];
  const text = Array.isArray(header) ? header.join(',') : header;
  const last = text
    ?.split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .pop();
  return last && parseIp(last) ? last : peer;
}
