/**
 * The request handlers (RFC 8489 Binding; RFC 8656 Allocate, Refresh, CreatePermission,
 * ChannelBind), with long-term credentials (RFC 8489 §9.2) checked first. A handler answers
 * through the outbox, or throws a Refusal that becomes an error response.
 */
import {
  type TransportAddress,
  XorMappedAddress,
  XorPeerAddress,
  XorRelayedAddress,
} from '../stun/address.ts';
import { AttributeType, isComprehensionRequired } from '../stun/attribute.ts';
import { StunError } from '../stun/errors.ts';
import { checkIntegrity, type IntegrityAlgorithm, longTermKey } from '../stun/integrity.ts';
import { unmapIpv4 } from '../stun/ip.ts';
import { Method, type StunMessage } from '../stun/message.ts';
import { Nonce, Realm, Username } from '../stun/text.ts';
import { familyOf, normalIp, type PeerPolicy } from './address-policy.ts';
import type { Allocation } from './allocation.ts';
import type { AllocationManager } from './allocation-manager.ts';
import { clientKey, type TurnClient, transportOf } from './client.ts';
import {
  ChannelNumber,
  EvenPort,
  Lifetime,
  PROTOCOL_UDP,
  RequestedAddressFamily,
  RequestedTransport,
  ReservationToken,
} from './codec/attributes.ts';
import { isValidChannel } from './codec/channel-data.ts';
import { parseRestUsername, restPassword } from './credentials.ts';
import type { TurnLimits, TurnServerOptions } from './limits.ts';
import type { NonceIssuer } from './nonce.ts';
import type { Outbox } from './outbox.ts';
import { type Authenticated, Refusal } from './refusal.ts';

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

/** The comprehension-required attributes of `m` that its method does not understand. */
export function unknownAttributes(m: StunMessage): number[] {
  const known = KNOWN_ATTRIBUTES.get(m.method);
  return [...new Set(m.types.filter((t) => isComprehensionRequired(t) && !known?.has(t)))];
}

const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex');

/** What the handlers need of the server. */
export interface RequestContext {
  limits: TurnLimits;
  options: TurnServerOptions;
  realm: string;
  relayFamily: 'ipv4' | 'ipv6';
  rfc5766: boolean;
  now: () => number;
  outbox: Outbox;
  allocations: AllocationManager;
  nonces: NonceIssuer;
  peers: PeerPolicy;
  /** The STUN/TURN socket's port: no relay may send to it. */
  listenPort: () => number;
}

export class RequestHandlers {
  constructor(private readonly ctx: RequestContext) {}

  /** Handles one request; throws only on a bug (the caller counts and logs it). */
  async handle(m: StunMessage, client: TurnClient): Promise<void> {
    let auth: Authenticated | undefined;
    try {
      if (m.method === Method.BINDING) return this.binding(m, client);
      if (!KNOWN_ATTRIBUTES.has(m.method)) throw new Refusal(400);
      auth = this.authenticate(m, client);
      if (!auth) return;
      const unknown = unknownAttributes(m);
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
      if (err instanceof StunError) return this.ctx.outbox.refuse(m, client, 400, auth);
      if (err instanceof Refusal)
        return this.ctx.outbox.refuse(m, client, err.code, auth, err.unknown);
      throw err;
    }
  }

  /** Long-term credentials (RFC 8489 §9.2.4); sends the challenge or error itself. */
  private authenticate(m: StunMessage, client: TurnClient): Authenticated | undefined {
    const { outbox, nonces, realm } = this.ctx;
    const challenge = (code: 401 | 438) => {
      outbox.refuse(m, client, code, undefined, [], (b) =>
        b.add(Realm, realm).add(Nonce, nonces.issue(clientKey(client))),
      );
      return undefined;
    };
    if (!m.has(AttributeType.MESSAGE_INTEGRITY) && !m.has(AttributeType.MESSAGE_INTEGRITY_SHA256))
      return challenge(401);
    const username = m.get(Username);
    const givenRealm = m.get(Realm);
    const nonce = m.get(Nonce);
    if (username === undefined || givenRealm === undefined || nonce === undefined)
      throw new Refusal(400);
    if (nonces.check(nonce, clientKey(client)) === 'stale') return challenge(438);
    const rest = parseRestUsername(username);
    if (!rest || rest.expiresAtS * 1000 <= this.ctx.now() || givenRealm !== realm)
      return challenge(401);
    const key = longTermKey(username, realm, restPassword(this.ctx.options.secret, username));
    let algorithm: IntegrityAlgorithm;
    try {
      algorithm = checkIntegrity(m, key);
    } catch (err) {
      if (err instanceof StunError && err.reason !== 'bad-attribute') return challenge(401);
      throw err;
    }
    return { username, user: rest.user || username, key, algorithm };
  }

  private binding(m: StunMessage, client: TurnClient): void {
    const unknown = unknownAttributes(m);
    if (unknown.length > 0) throw new Refusal(420, unknown);
    this.ctx.outbox.reply(m, client, 'success', undefined, (b) =>
      b.add(XorMappedAddress, { address: unmapIpv4(client.address), port: client.port }),
    );
  }

  private lifetimeMs(requestedS: number | undefined): number {
    const { defaultLifetimeS, maxLifetimeS } = this.ctx.limits;
    const s = requestedS === undefined ? defaultLifetimeS : Math.min(requestedS, maxLifetimeS);
    return Math.max(s, defaultLifetimeS) * 1000;
  }

  private async allocate(m: StunMessage, client: TurnClient, auth: Authenticated): Promise<void> {
    const { allocations, outbox } = this.ctx;
    const tid = hex(m.transactionId);
    const existing = allocations.get(client);
    if (existing) {
      // A retransmitted Allocate gets the same answer; any other is a mismatch.
      if (existing.transactionId === tid && existing.username === auth.username) {
        outbox.send(existing.response, client);
        return;
      }
      throw new Refusal(437);
    }
    const pendingTid = allocations.pendingFor(client);
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
    if (family !== undefined && family !== this.ctx.relayFamily) throw new Refusal(440);
    const lifetimeMs = this.lifetimeMs(m.get(Lifetime));
    const created = await allocations.create({
      client,
      auth,
      transactionId: tid,
      lifetimeMs,
      evenPort,
      reservationToken: token,
    });
    if (!created) return; // the server closed meanwhile
    const { allocation, reservationToken } = created;
    outbox.stats.allocationsTotal++;
    outbox.stats.byTransport[transportOf(client)].allocationsTotal++;
    allocation.response = outbox.reply(m, client, 'success', auth, (b) => {
      b.add(XorRelayedAddress, allocation.relayAddress)
        .add(Lifetime, lifetimeMs / 1000)
        .add(XorMappedAddress, { address: unmapIpv4(client.address), port: client.port });
      if (reservationToken) b.add(ReservationToken, reservationToken);
    });
  }

  /** The client's live allocation, checked against the username that made it (441). */
  private ownAllocation(client: TurnClient, auth: Authenticated): Allocation {
    const allocation = this.ctx.allocations.get(client);
    if (!allocation) throw new Refusal(437);
    if (allocation.username !== auth.username) throw new Refusal(441);
    return allocation;
  }

  private refresh(m: StunMessage, client: TurnClient, auth: Authenticated): void {
    const allocation = this.ownAllocation(client, auth);
    const family = m.get(RequestedAddressFamily);
    if (family !== undefined && family !== this.ctx.relayFamily) throw new Refusal(443);
    const requested = m.get(Lifetime);
    if (requested === 0) {
      this.ctx.allocations.remove(allocation);
      this.ctx.outbox.reply(m, client, 'success', auth, (b) => b.add(Lifetime, 0));
      return;
    }
    const lifetimeMs = this.lifetimeMs(requested);
    allocation.expiresAt = this.ctx.now() + lifetimeMs;
    this.ctx.outbox.reply(m, client, 'success', auth, (b) => b.add(Lifetime, lifetimeMs / 1000));
  }

  /** A peer the relay may talk to: same family as the relay (443), allowed by policy (403). */
  private checkPeer(peer: TransportAddress, withPort: boolean): TransportAddress {
    const { options, relayFamily, peers } = this.ctx;
    if (familyOf(peer.address) !== relayFamily) throw new Refusal(443);
    if (!peers.mayPermit(peer.address)) throw new Refusal(403);
    const normal = { address: normalIp(peer.address), port: peer.port };
    if (withPort && !peers.mayReach(normal)) throw new Refusal(403);
    // Never relay into this server's own STUN/TURN port.
    if (normal.port === this.ctx.listenPort() && normal.address === normalIp(options.listen.host))
      throw new Refusal(403);
    return normal;
  }

  private createPermission(m: StunMessage, client: TurnClient, auth: Authenticated): void {
    const allocation = this.ownAllocation(client, auth);
    const peers = m.getAll(XorPeerAddress).map((p) => this.checkPeer(p, false));
    if (peers.length === 0) throw new Refusal(400);
    const now = this.ctx.now();
    const ips = peers.map((p) => p.address);
    if (!allocation.canAddPermissions(ips, now)) throw new Refusal(508);
    for (const ip of ips) allocation.permit(ip, now);
    this.ctx.outbox.reply(m, client, 'success', auth);
  }

  private channelBind(m: StunMessage, client: TurnClient, auth: Authenticated): void {
    const allocation = this.ownAllocation(client, auth);
    const channel = m.get(ChannelNumber);
    const given = m.get(XorPeerAddress);
    if (channel === undefined || given === undefined || !isValidChannel(channel, this.ctx.rfc5766))
      throw new Refusal(400);
    const peer = this.checkPeer(given, true);
    const refusal = allocation.bindChannel(channel, peer, this.ctx.now());
    if (refusal === 'full') throw new Refusal(508);
    if (refusal) throw new Refusal(400);
    this.ctx.outbox.reply(m, client, 'success', auth);
  }
}
