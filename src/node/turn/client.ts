/**
 * A TURN client as the server knows it: the address and port it speaks from, and, over TCP or
 * TLS (stream-transport.ts), the connection that carries its messages. Over UDP there is no
 * connection: answers go out of the server's socket to the address.
 */
import type { TransportAddress } from '../stun/address.ts';

export type ClientTransport = 'udp' | 'tcp' | 'tls';
export const CLIENT_TRANSPORTS: readonly ClientTransport[] = ['udp', 'tcp', 'tls'];

/** The connection of a client over TCP or TLS. */
export interface StreamLink {
  readonly transport: 'tcp' | 'tls';
  /** Queues one STUN message or ChannelData frame; false when the connection is full or gone. */
  send(bytes: Uint8Array): boolean;
  /** Ends the connection once what is queued is written. */
  end(): void;
}

export interface TurnClient extends TransportAddress {
  stream?: StreamLink;
}

export const transportOf = (client: TurnClient): ClientTransport =>
  client.stream?.transport ?? 'udp';

/**
 * The key of a client's 5-tuple: a TCP client and a UDP client on the same address and port
 * are different clients.
 */
export const clientKey = (c: TurnClient): string =>
  `${c.stream ? `${c.stream.transport}:` : ''}${c.address}|${c.port}`;
