/**
 * The gateway's STUN/TURN server (RFC 8489 Binding; RFC 8656 TURN over UDP): Allocate,
 * Refresh, CreatePermission, ChannelBind, Send and Data indications, ChannelData. Users are
 * authenticated with long-term credentials made from a shared secret (credentials.ts), and
 * hold allocations and relay bandwidth within per-user quotas. Relaying is UDP-level: DTLS
 * between the two nodes stays end to end.
 *
 * Every datagram is parsed under a guard: bad input is counted and dropped (or answered
 * with an error), never thrown out of the socket handler.
 *
 * Identities, and so credentials, are free to make: besides the per-user quotas, every client
 * address counts against its source (IPv4 address, IPv6 /64), which holds at most a share of
 * the allocations. Answers to requests without valid credentials (Binding, the 401 challenge)
 * go out within a token bucket per source and are as small as RFC 8489 lets them be, so the
 * server is a poor amplifier toward spoofed addresses.
 *
 * The parts follow pion/turn's lines: this file has the socket and the dispatch;
 * requests.ts the request handlers; allocation-manager.ts the allocation table; relay.ts the
 * relaying path; outbox.ts what goes out, and the counters. The codecs are in codec/.
 */

import type { Socket as NetSocket } from 'node:net';
import { StunError } from '../stun/errors.ts';
import { checkFingerprint } from '../stun/fingerprint.ts';
import { parseIp } from '../stun/ip.ts';
import { decodeMessage, looksLikeStun, Method, type StunMessage } from '../stun/message.ts';
import { familyOf, PeerNetworks, PeerPolicy } from './address-policy.ts';
import { AllocationManager } from './allocation-manager.ts';
import type { TurnClient } from './client.ts';
import { looksLikeChannelData } from './codec/channel-data.ts';
import { DEFAULT_TURN_LIMITS, type TurnLimits, type TurnServerOptions } from './limits.ts';
import { NonceIssuer } from './nonce.ts';
import { Outbox, type TurnStats } from './outbox.ts';
import { RelayPath } from './relay.ts';
import { RequestHandlers, unknownAttributes } from './requests.ts';
import { serveStream } from './stream-transport.ts';
import { bindUdp, closeQuietly, SERVER_SOCKET_BUFFER } from './udp.ts';
import { listenUdp, type UdpIo, type UdpListener } from './udp-listener.ts';

export { DEFAULT_TURN_LIMITS, type TurnLimits, type TurnServerOptions } from './limits.ts';
export type { DropReason, TurnStats } from './outbox.ts';

const SWEEP_EVERY_MS = 5000;

export class TurnServer {
  readonly limits: TurnLimits;
  readonly realm: string;
  private readonly outbox: Outbox;
  private readonly allocations: AllocationManager;
  private readonly requests: RequestHandlers;
  private readonly relay: RelayPath;
  private readonly now: () => number;
  private readonly rfc5766: boolean;
  private readonly sweeper: ReturnType<typeof setInterval>;
  private closed = false;

  private constructor(
    private readonly listener: UdpListener,
    options: TurnServerOptions,
  ) {
    this.limits = { ...DEFAULT_TURN_LIMITS, ...options.limits };
    this.realm = options.realm ?? 'rtcmesh';
    this.now = options.now ?? Date.now;
    this.rfc5766 = options.rfc5766ChannelNumbers ?? false;
    this.outbox = new Outbox(listener, this.limits, this.now);
    this.allocations = new AllocationManager(
      this.limits,
      options.relayIp,
      this.now,
      this.outbox,
      (allocation, data, from) => this.relay.fromPeer(allocation, data, from),
    );
    const peers = new PeerPolicy(
      options.allowPrivatePeers ?? false,
      options.ownEndpoints,
      new PeerNetworks(options.peerNetworks),
    );
    this.relay = new RelayPath(
      this.allocations,
      this.outbox,
      this.now,
      this.rfc5766,
      (m) => unknownAttributes(m).length === 0,
      peers,
    );
    this.requests = new RequestHandlers({
      limits: this.limits,
      options,
      realm: this.realm,
      relayFamily: familyOf(options.relayIp),
      rfc5766: this.rfc5766,
      now: this.now,
      outbox: this.outbox,
      allocations: this.allocations,
      nonces: new NonceIssuer(this.limits.nonceLifetimeS * 1000, this.now),
      peers,
      listenPort: () => this.port,
    });
    this.sweeper = setInterval(() => {
      try {
        this.sweep();
      } catch (err) {
        this.outbox.fault('a sweep failed', err);
      }
    }, SWEEP_EVERY_MS);
    this.sweeper.unref();
  }

  static async start(options: TurnServerOptions): Promise<TurnServer> {
    if (!parseIp(options.relayIp))
      throw new Error(`the TURN relay address must be an IP address, not "${options.relayIp}"`);
    // A relay address this host does not have would fail every Allocate: fail now instead.
    closeQuietly(await bindUdp(options.relayIp, 0));
    let server: TurnServer | undefined;
    const listener = await listenUdp({
      host: options.listen.host,
      port: options.listen.port,
      bufferBytes: SERVER_SOCKET_BUFFER,
      io: options.udpIo,
      onDatagram: (bytes, address, port) => server?.receiveDatagram(bytes, address, port),
      onError: (err) => server?.outbox.fault('socket error', err),
      onSendFailed: () => server?.outbox.drop('send-failed'),
    });
    server = new TurnServer(listener, options);
    return server;
  }

  get stats(): TurnStats {
    return this.outbox.stats;
  }

  get port(): number {
    return this.listener.port;
  }

  /** How the STUN/TURN socket does its I/O (udp-listener.ts). */
  get udpIo(): UdpIo {
    return this.listener.io;
  }

  get allocationCount(): number {
    return this.allocations.size;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.sweeper);
    this.outbox.close();
    this.allocations.close();
    await this.listener.close();
  }

  /** Expires allocations, reservations, permissions and channels; runs every few seconds. */
  sweep(): void {
    this.allocations.sweep();
  }

  // ---- datagrams in ----

  /**
   * Serves TURN over a TCP or TLS connection someone else accepted (the gateway's front door,
   * which may have read its first bytes and put them back).
   */
  acceptStream(socket: NetSocket, transport: 'tcp' | 'tls'): void {
    if (this.closed) {
      socket.destroy();
      return;
    }
    const stats = this.outbox.stats.byTransport[transport];
    stats.connectionsTotal++;
    stats.connections++;
    serveStream(socket, transport, this.limits.streamIdleMs, {
      frame: (bytes, client) => this.receive(bytes, client),
      garbage: () => this.outbox.drop('not-stun'),
      hasAllocation: (client) => this.allocations.peek(client) !== undefined,
      closed: (client) => {
        stats.connections--;
        const allocation = this.allocations.peek(client);
        if (allocation) this.allocations.remove(allocation);
      },
    });
  }

  private receiveDatagram(bytes: Uint8Array, address: string, port: number): void {
    // The listener only lends the bytes. ChannelData is relayed before this returns; a STUN
    // request is answered after an await (today only ones that settle within the batch's
    // callback, but one that waits on I/O would read the next batch), so it gets a copy.
    const own = looksLikeChannelData(bytes, this.rfc5766) ? bytes : bytes.slice();
    this.receive(own, { address, port });
  }

  /** One datagram, or one frame of a stream. */
  private receive(bytes: Uint8Array, client: TurnClient): void {
    try {
      if (looksLikeChannelData(bytes, this.rfc5766)) this.relay.fromClientChannel(bytes, client);
      else if (looksLikeStun(bytes)) this.fromClientStun(bytes, client);
      else this.outbox.drop('not-stun');
    } catch (err) {
      this.outbox.drop('internal');
      this.outbox.fault('a datagram could not be handled', err);
    }
  }

  private fromClientStun(bytes: Uint8Array, client: TurnClient): void {
    let m: StunMessage;
    try {
      m = decodeMessage(bytes);
      checkFingerprint(m);
    } catch (err) {
      if (err instanceof StunError) {
        this.outbox.drop('malformed');
        return;
      }
      throw err;
    }
    if (m.cls === 'request') {
      this.outbox.stats.requests++;
      this.requests.handle(m, client).catch((err: unknown) => {
        this.outbox.drop('internal');
        this.outbox.fault('a request failed', err);
      });
    } else if (m.cls === 'indication' && m.method === Method.SEND)
      this.relay.sendIndication(m, client);
    else this.outbox.drop('unexpected');
  }
}
