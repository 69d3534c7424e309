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
 */

import { randomBytes } from 'node:crypto';
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import {
  type TransportAddress,
  XorMappedAddress,
  XorPeerAddress,
  XorRelayedAddress,
} from '../stun/address.ts';
import { AttributeType, isComprehensionRequired } from '../stun/attribute.ts';
import { MessageBuilder } from '../stun/builder.ts';
import { ERROR_REASONS, ErrorCode } from '../stun/error-code.ts';
import { StunError } from '../stun/errors.ts';
import { checkFingerprint } from '../stun/fingerprint.ts';
import { checkIntegrity, type IntegrityAlgorithm, longTermKey } from '../stun/integrity.ts';
import { formatIp, parseIp, unmapIpv4 } from '../stun/ip.ts';
import { decodeMessage, looksLikeStun, Method, type StunMessage } from '../stun/message.ts';
import { Nonce, Realm, Username } from '../stun/text.ts';
import { UnknownAttributes } from '../stun/unknown-attributes.ts';
import { peerAllowed } from './address-policy.ts';
import { Allocation } from './allocation.ts';
import {
  ChannelNumber,
  Data,
  EvenPort,
  Lifetime,
  PROTOCOL_UDP,
  RequestedAddressFamily,
  RequestedTransport,
  ReservationToken,
} from './attributes.ts';
import {
  decodeChannelData,
  encodeChannelData,
  isValidChannel,
  looksLikeChannelData,
} from './channel-data.ts';
import { parseRestUsername, restPassword } from './credentials.ts';
import { NonceIssuer } from './nonce.ts';
import { UserQuotas } from './quota.ts';
import { SourceBuckets, SourceShares, sourceOf } from './source-limits.ts';

export interface TurnLimits {
  /** Lifetime of an allocation that asks for less, or for nothing (RFC 8656: 600 s). */
  defaultLifetimeS: number;
  /** The most an allocation may ask for. */
  maxLifetimeS: number;
  /** How long a nonce is good for before a request gets 438 Stale Nonce. */
  nonceLifetimeS: number;
  /** Allocations one user (node ID) may hold at once (486 beyond). */
  allocationsPerUser: number;
  /** Allocations in all (508 beyond). */
  allocations: number;
  /**
   * Allocations, reservations and Allocates in progress one source (IPv4 address, IPv6 /64)
   * may hold, whatever usernames it uses (508 beyond), so one address cannot take the cap.
   */
  allocationsPerSource: number;
  /**
   * Answers per second to one source's requests that carry no valid credentials (Binding, the
   * 401/438 challenge, errors before authentication); beyond, requests are dropped unanswered.
   */
  unauthenticatedPerSecondPerSource: number;
  /** How many such answers one source may get at once, before the rate applies. */
  unauthenticatedBurstPerSource: number;
  /** Sources whose answer rate is tracked at once; the rest share one bucket. */
  unauthenticatedSources: number;
  /** Bytes per second one user may relay, both ways together (beyond, datagrams are dropped). */
  bytesPerSecondPerUser: number;
  permissionsPerAllocation: number;
  channelsPerAllocation: number;
}

export const DEFAULT_TURN_LIMITS: TurnLimits = {
  defaultLifetimeS: 600,
  maxLifetimeS: 3600,
  nonceLifetimeS: 600,
  allocationsPerUser: 50,
  allocations: 10_000,
  allocationsPerSource: 500,
  unauthenticatedPerSecondPerSource: 50,
  unauthenticatedBurstPerSource: 100,
  unauthenticatedSources: 16_384,
  bytesPerSecondPerUser: 10_000_000,
  permissionsPerAllocation: 64,
  channelsPerAllocation: 64,
};

export interface TurnServerOptions {
  /** Where the STUN/TURN socket listens. Port 0 picks a free one. */
  listen: { host: string; port: number };
  /** The address relay sockets bind to, and the relayed address allocations report. */
  relayIp: string;
  secret: string;
  realm?: string;
  /** Relay to loopback, private and link-local peers too (tests on one machine). */
  allowPrivatePeers?: boolean;
  /** Accept channels 0x5000–0x7FFF as RFC 5766 did (old clients); RFC 8656 says 400. */
  rfc5766ChannelNumbers?: boolean;
  limits?: Partial<TurnLimits>;
  /** The clock, in ms (tests move it). */
  now?: () => number;
}

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
  | 'internal'; // a bug: logged

export interface TurnStats {
  allocationsTotal: number;
  requests: number;
  errorResponses: number;
  bytesToPeer: number;
  bytesToClient: number;
  packetsToPeer: number;
  packetsToClient: number;
  dropped: Record<DropReason, number>;
}

const RESERVATION_LIFETIME_MS = 30_000;
const SWEEP_EVERY_MS = 5000;
const MAX_LOGGED_FAULTS = 20;

const COMMON_ATTRIBUTES: number[] = [
  AttributeType.USERNAME,
  AttributeType.REALM,
  AttributeType.NONCE,
  AttributeType.MESSAGE_INTEGRITY,
  AttributeType.MESSAGE_INTEGRITY_SHA256,
];
/** The comprehension-required attributes each method understands; others get 420. */
const KNOWN_ATTRIBUTES: ReadonlyMap<number, ReadonlySet<number>> = new Map<number, Set<number>>([
  [Method.BINDING, new Set(COMMON_ATTRIBUTES)],
  [
    Method.ALLOCATE,
    new Set([
      ...COMMON_ATTRIBUTES,
      AttributeType.REQUESTED_TRANSPORT,
      AttributeType.LIFETIME,
      AttributeType.REQUESTED_ADDRESS_FAMILY,
      AttributeType.EVEN_PORT,
      AttributeType.RESERVATION_TOKEN,
    ]),
  ],
  [
    Method.REFRESH,
    new Set([...COMMON_ATTRIBUTES, AttributeType.LIFETIME, AttributeType.REQUESTED_ADDRESS_FAMILY]),
  ],
  [Method.CREATE_PERMISSION, new Set([...COMMON_ATTRIBUTES, AttributeType.XOR_PEER_ADDRESS])],
  [
    Method.CHANNEL_BIND,
    new Set([...COMMON_ATTRIBUTES, AttributeType.CHANNEL_NUMBER, AttributeType.XOR_PEER_ADDRESS]),
  ],
  [Method.SEND, new Set([AttributeType.XOR_PEER_ADDRESS, AttributeType.DATA])],
]);

/** Who asked, once the request's integrity checked with their key. */
interface Authenticated {
  username: string;
  user: string;
  key: Uint8Array;
  algorithm: IntegrityAlgorithm;
}

/** The port above an EVEN-PORT allocation, held for a later Allocate with its token. */
interface Reservation {
  socket: Socket;
  expiresAt: number;
  /** Whose allocation quota it takes a slot of, until it is used or expires. */
  user: string;
  /** Whose source share it takes a slot of, likewise. */
  source: string;
}

/** A request that failed for a reason the client is told about, as an ERROR-CODE. */
class Refusal extends Error {
  constructor(
    readonly code: number,
    readonly unknown: number[] = [],
  ) {
    super(ERROR_REASONS[code] ?? 'Error');
  }
}

const clientKey = (c: TransportAddress): string => `${c.address}|${c.port}`;
const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex');
const familyOf = (address: string): 'ipv4' | 'ipv6' => (address.includes(':') ? 'ipv6' : 'ipv4');
/** One spelling per address, so permissions match however a socket formats it. */
const normalIp = (address: string): string => {
  const bytes = parseIp(unmapIpv4(address));
  return bytes ? formatIp(bytes) : address;
};

/** A bound UDP socket; `onError` hears its errors from then on (unheard, one would crash). */
async function bindUdp(
  host: string,
  port: number,
  onError: (err: Error) => void = () => {},
): Promise<Socket> {
  const socket = host.includes(':')
    ? createSocket({ type: 'udp6', ipv6Only: true })
    : createSocket({ type: 'udp4' });
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(port, host, () => {
      socket.off('error', reject);
      resolve();
    });
  });
  socket.on('error', onError);
  return socket;
}

function closeQuietly(socket: Socket): void {
  try {
    socket.close();
  } catch {
    // already closed
  }
}

export class TurnServer {
  readonly stats: TurnStats = {
    allocationsTotal: 0,
    requests: 0,
    errorResponses: 0,
    bytesToPeer: 0,
    bytesToClient: 0,
    packetsToPeer: 0,
    packetsToClient: 0,
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
      internal: 0,
    },
  };
  readonly limits: TurnLimits;
  readonly realm: string;
  private readonly allocations = new Map<string, Allocation>();
  /** Allocations whose relay socket is being bound, by client, with the Allocate's ID. */
  private readonly pending = new Map<string, string>();
  private readonly reservations = new Map<string, Reservation>();
  private readonly quotas: UserQuotas;
  private readonly sourceShares: SourceShares;
  private readonly unauthenticatedAnswers: SourceBuckets;
  private readonly nonces: NonceIssuer;
  private readonly now: () => number;
  private readonly relayFamily: 'ipv4' | 'ipv6';
  private readonly rfc5766: boolean;
  private readonly sweeper: ReturnType<typeof setInterval>;
  private faultsLogged = 0;
  private closed = false;

  private constructor(
    private readonly socket: Socket,
    private readonly options: TurnServerOptions,
  ) {
    this.limits = { ...DEFAULT_TURN_LIMITS, ...options.limits };
    this.realm = options.realm ?? 'rtcmesh';
    this.now = options.now ?? Date.now;
    this.quotas = new UserQuotas(this.limits.allocationsPerUser, this.limits.bytesPerSecondPerUser);
    this.sourceShares = new SourceShares(this.limits.allocationsPerSource);
    this.unauthenticatedAnswers = new SourceBuckets(
      this.limits.unauthenticatedPerSecondPerSource,
      this.limits.unauthenticatedBurstPerSource,
      this.limits.unauthenticatedSources,
      this.now(),
    );
    this.nonces = new NonceIssuer(this.limits.nonceLifetimeS * 1000, this.now);
    this.relayFamily = familyOf(options.relayIp);
    this.rfc5766 = options.rfc5766ChannelNumbers ?? false;
    socket.on('message', (msg, rinfo) => this.receive(msg, rinfo));
    socket.on('error', (err) => this.fault('socket error', err));
    this.sweeper = setInterval(() => {
      try {
        this.sweep();
      } catch (err) {
        this.fault('a sweep failed', err);
      }
    }, SWEEP_EVERY_MS);
    this.sweeper.unref();
  }

  static async start(options: TurnServerOptions): Promise<TurnServer> {
    if (!parseIp(options.relayIp))
      throw new Error(`the TURN relay address must be an IP address, not "${options.relayIp}"`);
    // A relay address this host does not have would fail every Allocate: fail now instead.
    closeQuietly(await bindUdp(options.relayIp, 0));
    const socket = await bindUdp(options.listen.host, options.listen.port);
    return new TurnServer(socket, options);
  }

  get port(): number {
    return this.socket.address().port;
  }

  get allocationCount(): number {
    return this.allocations.size;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.sweeper);
    for (const a of this.allocations.values()) closeQuietly(a.relay);
    for (const r of this.reservations.values()) closeQuietly(r.socket);
    this.allocations.clear();
    this.reservations.clear();
    this.pending.clear();
    this.sourceShares.clear();
    await new Promise<void>((resolve) => this.socket.close(() => resolve()));
  }

  /** Expires allocations, reservations, permissions and channels; runs every few seconds. */
  sweep(): void {
    const now = this.now();
    for (const a of this.allocations.values()) {
      if (a.expiresAt <= now) this.remove(a);
      else a.sweep(now);
    }
    for (const [token, r] of this.reservations) {
      if (r.expiresAt <= now) {
        closeQuietly(r.socket);
        this.reservations.delete(token);
        this.quotas.releaseAllocation(r.user);
        this.sourceShares.release(r.source);
      }
    }
    this.quotas.sweep();
  }

  // ---- datagrams in ----

  private receive(msg: Buffer, rinfo: RemoteInfo): void {
    try {
      const bytes = new Uint8Array(msg.buffer, msg.byteOffset, msg.byteLength);
      const client: TransportAddress = { address: rinfo.address, port: rinfo.port };
      if (looksLikeChannelData(bytes, this.rfc5766)) this.fromClientChannel(bytes, client);
      else if (looksLikeStun(bytes)) this.fromClientStun(bytes, client);
      else this.drop('not-stun');
    } catch (err) {
      this.drop('internal');
      this.fault('a datagram could not be handled', err);
    }
  }

  private fromClientStun(bytes: Uint8Array, client: TransportAddress): void {
    let m: StunMessage;
    try {
      m = decodeMessage(bytes);
      checkFingerprint(m);
    } catch (err) {
      if (err instanceof StunError) {
        this.drop('malformed');
        return;
      }
      throw err;
    }
    if (m.cls === 'request') {
      this.stats.requests++;
      this.request(m, client).catch((err: unknown) => {
        this.drop('internal');
        this.fault('a request failed', err);
      });
    } else if (m.cls === 'indication' && m.method === Method.SEND) this.sendIndication(m, client);
    else this.drop('unexpected');
  }

  private async request(m: StunMessage, client: TransportAddress): Promise<void> {
    let auth: Authenticated | undefined;
    try {
      if (m.method === Method.BINDING) return this.binding(m, client);
      if (!KNOWN_ATTRIBUTES.has(m.method)) throw new Refusal(400);
      auth = this.authenticate(m, client);
      if (!auth) return;
      const unknown = this.unknownAttributes(m);
      if (unknown.length > 0) throw new Refusal(420, unknown);
      switch (m.method) {
        case Method.ALLOCATE:
          return await this.allocate(m, client, auth);
        case Method.REFRESH:
          return this.refresh(m, client, auth);
        case Method.CREATE_PERMISSION:
          return this.createPermission(m, client, auth);
        case Method.CHANNEL_BIND:
          return this.channelBind(m, client, auth);
        default:
          throw new Refusal(400);
      }
    } catch (err) {
      // A malformed attribute in a request is a bad request (RFC 8489 §6.3.1).
      if (err instanceof StunError) return this.refuse(m, client, 400, auth);
      if (err instanceof Refusal) return this.refuse(m, client, err.code, auth, err.unknown);
      throw err;
    }
  }

  private unknownAttributes(m: StunMessage): number[] {
    const known = KNOWN_ATTRIBUTES.get(m.method);
    return [...new Set(m.types.filter((t) => isComprehensionRequired(t) && !known?.has(t)))];
  }

  /** Long-term credentials (RFC 8489 §9.2.4); sends the challenge or error itself. */
  private authenticate(m: StunMessage, client: TransportAddress): Authenticated | undefined {
    const challenge = (code: 401 | 438) => {
      this.refuse(m, client, code, undefined, [], (b) =>
        b.add(Realm, this.realm).add(Nonce, this.nonces.issue(clientKey(client))),
      );
      return undefined;
    };
    if (!m.has(AttributeType.MESSAGE_INTEGRITY) && !m.has(AttributeType.MESSAGE_INTEGRITY_SHA256))
      return challenge(401);
    const username = m.get(Username);
    const realm = m.get(Realm);
    const nonce = m.get(Nonce);
    if (username === undefined || realm === undefined || nonce === undefined)
      throw new Refusal(400);
    if (this.nonces.check(nonce, clientKey(client)) === 'stale') return challenge(438);
    const rest = parseRestUsername(username);
    if (!rest || rest.expiresAtS * 1000 <= this.now() || realm !== this.realm)
      return challenge(401);
    const key = longTermKey(username, this.realm, restPassword(this.options.secret, username));
    let algorithm: IntegrityAlgorithm;
    try {
      algorithm = checkIntegrity(m, key);
    } catch (err) {
      if (err instanceof StunError && err.reason !== 'bad-attribute') return challenge(401);
      throw err;
    }
    return { username, user: rest.user || username, key, algorithm };
  }

  private binding(m: StunMessage, client: TransportAddress): void {
    const unknown = this.unknownAttributes(m);
    if (unknown.length > 0) throw new Refusal(420, unknown);
    this.reply(m, client, 'success', undefined, (b) =>
      b.add(XorMappedAddress, { address: unmapIpv4(client.address), port: client.port }),
    );
  }

  private lifetimeMs(requestedS: number | undefined): number {
    const { defaultLifetimeS, maxLifetimeS } = this.limits;
    const s = requestedS === undefined ? defaultLifetimeS : Math.min(requestedS, maxLifetimeS);
    return Math.max(s, defaultLifetimeS) * 1000;
  }

  private async allocate(
    m: StunMessage,
    client: TransportAddress,
    auth: Authenticated,
  ): Promise<void> {
    const key = clientKey(client);
    const tid = hex(m.transactionId);
    const existing = this.allocation(client);
    if (existing) {
      // A retransmitted Allocate gets the same answer; any other is a mismatch.
      if (existing.transactionId === tid && existing.username === auth.username) {
        this.send(existing.response, client);
        return;
      }
      throw new Refusal(437);
    }
    const pendingTid = this.pending.get(key);
    if (pendingTid !== undefined) {
      if (pendingTid === tid) return; // its answer is on the way
      throw new Refusal(437);
    }
    const transport = m.get(RequestedTransport);
    if (transport === undefined) throw new Refusal(400);
    if (transport !== PROTOCOL_UDP) throw new Refusal(442);
    const evenPort = m.get(EvenPort);
    const token = m.get(ReservationToken);
    const family = m.get(RequestedAddressFamily);
    if (token && (evenPort || family !== undefined)) throw new Refusal(400);
    if (family !== undefined && family !== this.relayFamily) throw new Refusal(440);
    const reserveNext = evenPort?.reserveNext ?? false;
    const reservation = token ? this.reservations.get(hex(token)) : undefined;
    if (token && (!reservation || reservation.expiresAt <= this.now())) throw new Refusal(508);
    // Slots this Allocate takes: the allocation, and the reservation beside it. Taking over a
    // reservation moves its slot (of the user's quota, the source's share, the cap) instead.
    const slots = reserveNext ? 2 : 1;
    const source = sourceOf(client.address);
    const movedFrom = (owner: string, of: 'user' | 'source') =>
      reservation?.[of] === owner ? 1 : 0;
    if (
      this.quotas.allocationsOf(auth.user) - movedFrom(auth.user, 'user') + slots >
      this.limits.allocationsPerUser
    )
      throw new Refusal(486);
    const inUse = this.allocations.size + this.pending.size + this.reservations.size;
    if (inUse - (reservation ? 1 : 0) + slots > this.limits.allocations) throw new Refusal(508);
    // The source's share is a capacity limit of this server for that network, not a quota of
    // the username (another username from there is refused too): 508, not 486.
    if (
      this.sourceShares.heldBy(source) - movedFrom(source, 'source') + slots >
      this.limits.allocationsPerSource
    )
      throw new Refusal(508);
    const lifetimeMs = this.lifetimeMs(m.get(Lifetime));
    if (token && reservation) {
      // Its slots pass to this allocation, which takes its own below.
      this.reservations.delete(hex(token));
      this.quotas.releaseAllocation(reservation.user);
      this.sourceShares.release(reservation.source);
    }

    // The source's slots are held from here, while the relay socket is bound, so Allocates in
    // progress count against its share too.
    for (let i = 0; i < slots; i++) this.sourceShares.take(source);
    const releaseSlots = (n: number) => {
      for (let i = 0; i < n; i++) this.sourceShares.release(source);
    };
    this.pending.set(key, tid);
    let relay: Socket;
    let reserved: Socket | undefined;
    try {
      if (reservation) {
        relay = reservation.socket;
      } else {
        const bound = await this.bindRelay(evenPort !== undefined, reserveNext);
        relay = bound.socket;
        reserved = bound.reserved;
      }
    } catch (err) {
      releaseSlots(slots);
      throw err;
    } finally {
      this.pending.delete(key);
    }
    const closeAll = () => {
      closeQuietly(relay);
      if (reserved) closeQuietly(reserved);
    };
    if (this.closed) return closeAll();
    // The allocation, and a reservation beside it, each take a slot of the user's quota.
    if (!this.quotas.takeAllocation(auth.user)) {
      releaseSlots(slots);
      closeAll();
      throw new Refusal(486);
    }
    let reservedToken: Uint8Array | undefined;
    if (reserved) {
      if (!this.quotas.takeAllocation(auth.user)) {
        this.quotas.releaseAllocation(auth.user);
        releaseSlots(slots);
        closeAll();
        throw new Refusal(486);
      }
      reservedToken = randomBytes(8);
      this.reservations.set(hex(reservedToken), {
        socket: reserved,
        expiresAt: this.now() + RESERVATION_LIFETIME_MS,
        user: auth.user,
        source,
      });
    } else if (slots > 1) {
      releaseSlots(slots - 1); // the next port was not reserved after all
    }
    let relayPort: number;
    try {
      relayPort = relay.address().port;
    } catch {
      // the relay socket closed under us (a reservation that failed): no allocation
      this.quotas.releaseAllocation(auth.user);
      this.sourceShares.release(source);
      closeAll();
      throw new Refusal(508);
    }
    const relayAddress = { address: this.options.relayIp, port: relayPort };
    const now = this.now();
    const allocation = new Allocation(
      client,
      auth.username,
      auth.user,
      relay,
      relayAddress,
      now + lifetimeMs,
      tid,
      new Uint8Array(0),
      {
        permissions: this.limits.permissionsPerAllocation,
        channels: this.limits.channelsPerAllocation,
      },
    );
    relay.on('message', (msg, rinfo) => {
      try {
        this.fromPeer(allocation, msg, rinfo);
      } catch (err) {
        this.drop('internal');
        this.fault('a relayed datagram could not be handled', err);
      }
    });
    this.allocations.set(key, allocation);
    this.stats.allocationsTotal++;
    allocation.response = this.reply(m, client, 'success', auth, (b) => {
      b.add(XorRelayedAddress, relayAddress)
        .add(Lifetime, lifetimeMs / 1000)
        .add(XorMappedAddress, { address: unmapIpv4(client.address), port: client.port });
      if (reservedToken) b.add(ReservationToken, reservedToken);
    });
  }

  /** A relay socket on the relay address: any port, an even one, or an even one and the next. */
  private async bindRelay(
    even: boolean,
    reserveNext: boolean,
  ): Promise<{ socket: Socket; reserved?: Socket }> {
    const onError = (err: Error) => this.fault('relay socket error', err);
    for (let attempt = 0; attempt < 32; attempt++) {
      let socket: Socket;
      try {
        socket = await bindUdp(this.options.relayIp, 0, onError);
      } catch {
        throw new Refusal(508);
      }
      const port = socket.address().port;
      if (!even || port % 2 === 0) {
        if (!reserveNext) return { socket };
        try {
          return { socket, reserved: await bindUdp(this.options.relayIp, port + 1, onError) };
        } catch {
          // the next port is taken: try another pair
        }
      }
      closeQuietly(socket);
    }
    throw new Refusal(508);
  }

  /** The client's live allocation, checked against the username that made it (441). */
  private ownAllocation(client: TransportAddress, auth: Authenticated): Allocation {
    const allocation = this.allocation(client);
    if (!allocation) throw new Refusal(437);
    if (allocation.username !== auth.username) throw new Refusal(441);
    return allocation;
  }

  private refresh(m: StunMessage, client: TransportAddress, auth: Authenticated): void {
    const allocation = this.ownAllocation(client, auth);
    const family = m.get(RequestedAddressFamily);
    if (family !== undefined && family !== this.relayFamily) throw new Refusal(443);
    const requested = m.get(Lifetime);
    if (requested === 0) {
      this.remove(allocation);
      this.reply(m, client, 'success', auth, (b) => b.add(Lifetime, 0));
      return;
    }
    const lifetimeMs = this.lifetimeMs(requested);
    allocation.expiresAt = this.now() + lifetimeMs;
    this.reply(m, client, 'success', auth, (b) => b.add(Lifetime, lifetimeMs / 1000));
  }

  /** A peer the relay may talk to: same family as the relay (443), allowed by policy (403). */
  private checkPeer(peer: TransportAddress): TransportAddress {
    if (familyOf(peer.address) !== this.relayFamily) throw new Refusal(443);
    if (!peerAllowed(peer.address, this.options.allowPrivatePeers ?? false)) throw new Refusal(403);
    // Never relay into this server's own STUN/TURN port.
    if (peer.port === this.port && peer.address === normalIp(this.options.listen.host))
      throw new Refusal(403);
    return { address: normalIp(peer.address), port: peer.port };
  }

  private createPermission(m: StunMessage, client: TransportAddress, auth: Authenticated): void {
    const allocation = this.ownAllocation(client, auth);
    const peers = m.getAll(XorPeerAddress).map((p) => this.checkPeer(p));
    if (peers.length === 0) throw new Refusal(400);
    const now = this.now();
    const ips = peers.map((p) => p.address);
    if (!allocation.canAddPermissions(ips, now)) throw new Refusal(508);
    for (const ip of ips) allocation.permit(ip, now);
    this.reply(m, client, 'success', auth);
  }

  private channelBind(m: StunMessage, client: TransportAddress, auth: Authenticated): void {
    const allocation = this.ownAllocation(client, auth);
    const channel = m.get(ChannelNumber);
    const given = m.get(XorPeerAddress);
    if (channel === undefined || given === undefined || !isValidChannel(channel, this.rfc5766))
      throw new Refusal(400);
    const peer = this.checkPeer(given);
    const refusal = allocation.bindChannel(channel, peer, this.now());
    if (refusal === 'full') throw new Refusal(508);
    if (refusal) throw new Refusal(400);
    this.reply(m, client, 'success', auth);
  }

  private sendIndication(m: StunMessage, client: TransportAddress): void {
    const allocation = this.allocation(client);
    if (!allocation) {
      this.drop('no-allocation');
      return;
    }
    let peer: TransportAddress | undefined;
    let data: Uint8Array | undefined;
    try {
      peer = m.get(XorPeerAddress);
      data = m.get(Data);
    } catch (err) {
      if (err instanceof StunError) {
        this.drop('malformed');
        return;
      }
      throw err;
    }
    if (!peer || !data || this.unknownAttributes(m).length > 0) {
      this.drop('malformed');
      return;
    }
    if (m.has(AttributeType.DONT_FRAGMENT)) {
      this.drop('unsupported');
      return;
    }
    this.toPeer(allocation, { address: normalIp(peer.address), port: peer.port }, data);
  }

  private fromClientChannel(bytes: Uint8Array, client: TransportAddress): void {
    const allocation = this.allocation(client);
    if (!allocation) {
      this.drop('no-allocation');
      return;
    }
    let frame: ReturnType<typeof decodeChannelData>;
    try {
      frame = decodeChannelData(bytes, this.rfc5766);
    } catch (err) {
      if (err instanceof StunError) {
        this.drop('malformed');
        return;
      }
      throw err;
    }
    const peer = allocation.peerOf(frame.channel, this.now());
    if (!peer) {
      this.drop('no-channel');
      return;
    }
    this.toPeer(allocation, peer, frame.data);
  }

  private toPeer(allocation: Allocation, peer: TransportAddress, data: Uint8Array): void {
    const now = this.now();
    if (!allocation.hasPermission(peer.address, now)) {
      this.drop('no-permission');
      return;
    }
    if (!this.quotas.spend(allocation.user, data.length, now)) {
      this.drop('quota');
      return;
    }
    if (!this.sendFrom(allocation.relay, data, peer)) return;
    this.stats.packetsToPeer++;
    this.stats.bytesToPeer += data.length;
  }

  private fromPeer(allocation: Allocation, msg: Buffer, rinfo: RemoteInfo): void {
    const now = this.now();
    if (allocation.expiresAt <= now) {
      this.drop('no-allocation');
      return;
    }
    const peer = { address: normalIp(rinfo.address), port: rinfo.port };
    if (!allocation.hasPermission(peer.address, now)) {
      this.drop('no-permission');
      return;
    }
    const data = new Uint8Array(msg.buffer, msg.byteOffset, msg.byteLength);
    if (!this.quotas.spend(allocation.user, data.length, now)) {
      this.drop('quota');
      return;
    }
    const channel = allocation.channelOf(peer, now);
    const out =
      channel !== undefined
        ? encodeChannelData({ channel, data }, { rfc5766: this.rfc5766 })
        : new MessageBuilder(Method.DATA, 'indication')
            .add(XorPeerAddress, peer)
            .add(Data, data)
            .build();
    this.send(out, allocation.client);
    this.stats.packetsToClient++;
    this.stats.bytesToClient += data.length;
  }

  // ---- datagrams out ----

  /**
   * Answers a request: signed with the requester's key when it authenticated; otherwise only
   * within the source's answer rate (undefined when over it, and nothing is sent).
   */
  private reply(
    m: StunMessage,
    client: TransportAddress,
    cls: 'success' | 'error',
    auth: Authenticated,
    fill?: (b: MessageBuilder) => void,
  ): Uint8Array;
  private reply(
    m: StunMessage,
    client: TransportAddress,
    cls: 'success' | 'error',
    auth: Authenticated | undefined,
    fill?: (b: MessageBuilder) => void,
  ): Uint8Array | undefined;
  private reply(
    m: StunMessage,
    client: TransportAddress,
    cls: 'success' | 'error',
    auth: Authenticated | undefined,
    fill?: (b: MessageBuilder) => void,
  ): Uint8Array | undefined {
    if (!auth && !this.unauthenticatedAnswers.take(sourceOf(client.address), this.now())) {
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

  private refuse(
    m: StunMessage,
    client: TransportAddress,
    code: number,
    auth: Authenticated | undefined,
    unknown: number[] = [],
    fill?: (b: MessageBuilder) => void,
  ): void {
    const sent = this.reply(m, client, 'error', auth, (b) => {
      // The reason phrase is for people reading logs: only signed answers spend bytes on it.
      b.add(ErrorCode, { code, reason: auth ? (ERROR_REASONS[code] ?? 'Error') : '' });
      if (unknown.length > 0) b.add(UnknownAttributes, unknown);
      fill?.(b);
    });
    if (sent) this.stats.errorResponses++;
  }

  private send(bytes: Uint8Array, to: TransportAddress): void {
    if (this.closed) return;
    this.sendFrom(this.socket, bytes, to);
  }

  /** Sends without throwing: a closed socket or a port nobody can have is a failed send. */
  private sendFrom(socket: Socket, bytes: Uint8Array, to: TransportAddress): boolean {
    try {
      socket.send(bytes, to.port, to.address, (err) => {
        if (err) this.drop('send-failed');
      });
      return true;
    } catch {
      this.drop('send-failed');
      return false;
    }
  }

  // ---- bookkeeping ----

  private allocation(client: TransportAddress): Allocation | undefined {
    const a = this.allocations.get(clientKey(client));
    if (a && a.expiresAt <= this.now()) {
      this.remove(a);
      return undefined;
    }
    return a;
  }

  private remove(allocation: Allocation): void {
    const key = clientKey(allocation.client);
    if (this.allocations.get(key) !== allocation) return;
    this.allocations.delete(key);
    this.quotas.releaseAllocation(allocation.user);
    this.sourceShares.release(sourceOf(allocation.client.address));
    closeQuietly(allocation.relay);
  }

  private drop(reason: DropReason): void {
    this.stats.dropped[reason]++;
  }

  private fault(what: string, err: unknown): void {
    if (this.faultsLogged >= MAX_LOGGED_FAULTS) return;
    this.faultsLogged++;
    console.error(`rtcmesh: TURN: ${what}:`, err);
  }
}
