/**
 * The server's sending side and its books: answers to requests (signed for the authenticated;
 * within a per-source rate, and as small as RFC 8489 allows, for everyone else), datagrams to
 * clients and peers that never throw, and the counters /metrics reads.
 */
import type { Socket } from 'node:dgram';
import { RateLimiter } from '../rate-limit.ts';
import type { TransportAddress } from '../stun/address.ts';
import { AttributeType } from '../stun/attribute.ts';
import { MessageBuilder } from '../stun/builder.ts';
import { ERROR_REASONS, ErrorCode } from '../stun/error-code.ts';
import { addressKey } from '../stun/ip.ts';
import type { StunMessage } from '../stun/message.ts';
import { UnknownAttributes } from '../stun/unknown-attributes.ts';
import { CLIENT_TRANSPORTS, type ClientTransport, type TurnClient } from './client.ts';
import type { TurnLimits } from './limits.ts';
import type { Authenticated } from './refusal.ts';
import type { UdpListener } from './udp-listener.ts';

export type DropReason =
  | 'not-stun' // neither STUN nor ChannelData by its first byte
  | 'malformed' // failed to decode, or a bad fingerprint
  | 'unexpected' // a response or indication a server has no use for
  | 'no-allocation' // data or an indication from a client without an allocation
  | 'no-permission' // to or from a peer without a permission
  | 'no-channel' // ChannelData on a channel that is not bound
  | 'unsupported' // a Send indication asking for DONT-FRAGMENT
  | 'quota' // over the user's bandwidth
  | 'rate-limited' // an unauthenticated request beyond its source's answer rate
  | 'send-failed' // the socket refused to send
  | 'congested' // a TCP/TLS client's connection had too much queued to take more
  | 'internal'; // a bug: logged

export interface TurnStats {
  allocationsTotal: number;
  requests: number;
  errorResponses: number;
  bytesToPeer: number;
  bytesToClient: number;
  packetsToPeer: number;
  packetsToClient: number;
  /** Of packetsToPeer, those whose peer was another allocation here (handed over, no socket). */
  packetsWithinServer: number;
  dropped: Record<DropReason, number>;
  /** Relayed bytes and allocations by the transport between client and server. */
  byTransport: Record<ClientTransport, TransportStats>;
}

export interface TransportStats {
  allocationsTotal: number;
  bytesToPeer: number;
  bytesToClient: number;
  /** TCP and TLS: connections accepted, and open now. */
  connectionsTotal: number;
  connections: number;
}

export function newTurnStats(): TurnStats {
  return {
    allocationsTotal: 0,
    requests: 0,
    errorResponses: 0,
    bytesToPeer: 0,
    bytesToClient: 0,
    packetsToPeer: 0,
    packetsToClient: 0,
    packetsWithinServer: 0,
    dropped: {
      'not-stun': 0,
      malformed: 0,
      unexpected: 0,
      'no-allocation': 0,
      'no-permission': 0,
      'no-channel': 0,
      unsupported: 0,
      quota: 0,
      'rate-limited': 0,
      'send-failed': 0,
      congested: 0,
      internal: 0,
    },
    byTransport: Object.fromEntries(
      CLIENT_TRANSPORTS.map((t) => [
        t,
        {
          allocationsTotal: 0,
          bytesToPeer: 0,
          bytesToClient: 0,
          connectionsTotal: 0,
          connections: 0,
        },
      ]),
    ) as Record<ClientTransport, TransportStats>,
  };
}

const MAX_LOGGED_FAULTS = 20;

type Fill = (b: MessageBuilder) => void;

export class Outbox {
  readonly stats: TurnStats = newTurnStats();
  private readonly unauthenticatedAnswers: RateLimiter;
  private faultsLogged = 0;
  private closed = false;

  constructor(
    private readonly listener: UdpListener,
    limits: TurnLimits,
    private readonly now: () => number,
  ) {
    this.unauthenticatedAnswers = new RateLimiter(
      {
        perSecond: limits.unauthenticatedPerSecondPerSource,
        burst: limits.unauthenticatedBurstPerSource,
      },
      limits.unauthenticatedSources,
      now(),
    );
  }

  /** Sends nothing more to clients from now on. */
  close(): void {
    this.closed = true;
  }

  /**
   * Answers a request: signed with the requester's key when it authenticated; otherwise only
   * within the source's answer rate (undefined when over it, and nothing is sent).
   */
  reply(
    m: StunMessage,
    client: TurnClient,
    cls: 'success' | 'error',
    auth: Authenticated,
    fill?: Fill,
  ): Uint8Array;
  reply(
    m: StunMessage,
    client: TurnClient,
    cls: 'success' | 'error',
    auth: Authenticated | undefined,
    fill?: Fill,
  ): Uint8Array | undefined;
  reply(
    m: StunMessage,
    client: TurnClient,
    cls: 'success' | 'error',
    auth: Authenticated | undefined,
    fill?: Fill,
  ): Uint8Array | undefined {
    if (!auth && !this.unauthenticatedAnswers.take(addressKey(client.address), this.now())) {
      this.drop('rate-limited');
      return undefined;
    }
    const b = new MessageBuilder(m.method, cls, m.transactionId);
    fill?.(b);
    const bytes = b.build({
      ...(auth ? { integrity: { key: auth.key, algorithm: auth.algorithm } } : {}),
      // Mirrored, except on errors anyone can get: those stay as small as RFC 8489 allows.
      fingerprint: m.has(AttributeType.FINGERPRINT) && (auth !== undefined || cls === 'success'),
    });
    this.send(bytes, client);
    return bytes;
  }

  refuse(
    m: StunMessage,
    client: TurnClient,
    code: number,
    auth: Authenticated | undefined,
    unknown: number[] = [],
    fill?: Fill,
  ): void {
    const sent = this.reply(m, client, 'error', auth, (b) => {
      // The reason phrase is for people reading logs: only signed answers spend bytes on it.
      b.add(ErrorCode, { code, reason: auth ? (ERROR_REASONS[code] ?? 'Error') : '' });
      if (unknown.length > 0) b.add(UnknownAttributes, unknown);
      fill?.(b);
    });
    if (sent) this.stats.errorResponses++;
  }

  /** A message to a client: on its TCP/TLS connection, or a datagram from the STUN/TURN socket. */
  send(bytes: Uint8Array, to: TurnClient): boolean {
    if (this.closed) return false;
    if (!to.stream) {
      if (this.listener.send(bytes, to.port, to.address)) return true;
      this.drop('send-failed');
      return false;
    }
    if (to.stream.send(bytes)) return true;
    this.drop('congested');
    return false;
  }

  /** One callback for every send: relaying allocates nothing per datagram for it. */
  private readonly afterSend = (err: Error | null): void => {
    if (err) this.drop('send-failed');
  };

  /**
   * Sends from a relay socket without throwing: a closed socket or a port nobody can have is
   * a failed send. The bytes are copied: they may be lent by the listener (udp-listener.ts),
   * and dgram keeps them until a send that would block completes.
   */
  sendFrom(socket: Socket, bytes: Uint8Array, to: TransportAddress): boolean {
    try {
      socket.send(Buffer.from(bytes), to.port, to.address, this.afterSend);
      return true;
    } catch {
      this.drop('send-failed');
      return false;
    }
  }

  drop(reason: DropReason): void {
    this.stats.dropped[reason]++;
  }

  fault(what: string, err: unknown): void {
    if (this.faultsLogged >= MAX_LOGGED_FAULTS) return;
    this.faultsLogged++;
    console.error(`rtcmesh: TURN: ${what}:`, err);
  }
}
