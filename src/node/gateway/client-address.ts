/**
 * Who a request comes from, for limits a stranger cannot turn against honest users
 * (docs/design.md §8): the socket's peer, or behind a trusted reverse proxy the address the
 * proxy saw. Limits key it with `addressKey` (stun/ip.ts).
 */
import type { IncomingMessage } from 'node:http';
import { parseIp } from '../stun/ip.ts';

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
