/**
 * The allocation table (as pion/turn's allocation manager): allocations by client 5-tuple,
 * Allocates whose relay socket is being bound, and ports reserved by EVEN-PORT. It keeps the
 * books every slot counts in: the user's quota (486), the source's share and the global cap
 * (508). Every table here is bounded by that cap.
 *
 * It also finds the allocation behind one of its own relay addresses, so a datagram from one
 * allocation to another on this server is handed over in the process (relay.ts) instead of
 * crossing the kernel twice.
 */
import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:dgram';
import type { TransportAddress } from '../stun/address.ts';
import { addressKey } from '../stun/ip.ts';
import { normalIp } from './address-policy.ts';
import { Allocation } from './allocation.ts';
import { clientKey, type TurnClient } from './client.ts';
import type { TurnLimits } from './limits.ts';
import type { Outbox } from './outbox.ts';
import { UserQuotas } from './quota.ts';
import { type Authenticated, Refusal } from './refusal.ts';
import { SourceShares } from './source-limits.ts';
import { bindUdp, closeQuietly } from './udp.ts';

const RESERVATION_LIFETIME_MS = 30_000;

/** The port above an EVEN-PORT allocation, held for a later Allocate with its token. */
interface Reservation {
  socket: Socket;
  expiresAt: number;
  /** Whose allocation quota it takes a slot of, until it is used or expires. */
  user: string;
  /** Whose source share it takes a slot of, likewise. */
  source: string;
}

/** An Allocate that passed its checks of form (RFC 8656 §7.2), for the table to fill. */
export interface AllocationRequest {
  client: TurnClient;
  auth: Authenticated;
  /** The Allocate's transaction ID, so a retransmission gets the same response. */
  transactionId: string;
  lifetimeMs: number;
  /** EVEN-PORT: an even relay port, and whether to reserve the one above it. */
  evenPort: { reserveNext: boolean } | undefined;
  reservationToken: Uint8Array | undefined;
}

/** An allocation its client has not touched for this long may make room for the same user's new one. */
const STALE_AFTER_MS = 15_000;

const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex');

export class AllocationManager {
  readonly quotas: UserQuotas;
  private readonly allocations = new Map<string, Allocation>();
  /** The same allocations by relay port (all on the one relay address). */
  private readonly byRelayPort = new Map<number, Allocation>();
  /** The relay address as peers' addresses are written (normalIp), to compare with them. */
  private readonly relayIpNormal: string;
  /** Allocations whose relay socket is being bound, by client, with the Allocate's ID. */
  private readonly pending = new Map<string, string>();
  private readonly reservations = new Map<string, Reservation>();
  private readonly sourceShares: SourceShares;
  private closed = false;

  constructor(
    private readonly limits: TurnLimits,
    private readonly relayIp: string,
    private readonly now: () => number,
    private readonly outbox: Outbox,
    /** Where datagrams from peers to a relay socket go. */
    private readonly onPeerData: (
      allocation: Allocation,
      data: Uint8Array,
      from: TransportAddress,
    ) => void,
  ) {
    this.quotas = new UserQuotas(limits.allocationsPerUser, limits.bytesPerSecondPerUser);
    this.sourceShares = new SourceShares(limits.allocationsPerSource);
    this.relayIpNormal = normalIp(relayIp);
  }

  get size(): number {
    return this.allocations.size;
  }

  /** The client's live allocation (an expired one is removed on the way). */
  get(client: TurnClient): Allocation | undefined {
    const a = this.allocations.get(clientKey(client));
    const now = this.now();
    if (a && a.expiresAt <= now) {
      this.remove(a);
      return undefined;
    }
    if (a) a.lastHeard = now;
    return a;
  }

  /**
   * The live allocation whose relay address is `peer` (already in normalIp form): a peer that
   * is another client of this server.
   */
  atRelayAddress(peer: TransportAddress): Allocation | undefined {
    if (peer.address !== this.relayIpNormal) return undefined;
    const a = this.byRelayPort.get(peer.port);
    return a && a.expiresAt > this.now() ? a : undefined;
  }

  /** The transaction ID of the client's Allocate in progress, if any. */
  pendingFor(client: TurnClient): string | undefined {
    return this.pending.get(clientKey(client));
  }

  /**
   * Makes the allocation, with its relay socket (and a reserved one beside it when asked);
   * undefined when the server closed meanwhile. Refuses with 486 or 508 past a limit.
   */
  async create(
    request: AllocationRequest,
  ): Promise<{ allocation: Allocation; reservationToken?: Uint8Array } | undefined> {
    const { client, auth, evenPort, reservationToken: token } = request;
    const key = clientKey(client);
    const reserveNext = evenPort?.reserveNext ?? false;
    const reservation = token ? this.reservations.get(hex(token)) : undefined;
    if (token && (!reservation || reservation.expiresAt <= this.now())) throw new Refusal(508);
    // Slots this Allocate takes: the allocation, and the reservation beside it. Taking over a
    // reservation moves its slot (of the user's quota, the source's share, the cap) instead.
    const slots = reserveNext ? 2 : 1;
    const source = addressKey(client.address);
    const movedFrom = (owner: string, of: 'user' | 'source') =>
      reservation?.[of] === owner ? 1 : 0;
    this.makeRoomForUser(auth.user, slots - movedFrom(auth.user, 'user'));
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
    this.pending.set(key, request.transactionId);
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
    if (this.closed) {
      closeAll();
      return undefined;
    }
    // The allocation, and a reservation beside it, each take a slot of the user's quota.
    if (!this.quotas.takeAllocation(auth.user)) {
      releaseSlots(slots);
      closeAll();
      throw new Refusal(486);
    }
    let reservationToken: Uint8Array | undefined;
    if (reserved) {
      if (!this.quotas.takeAllocation(auth.user)) {
        this.quotas.releaseAllocation(auth.user);
        releaseSlots(slots);
        closeAll();
        throw new Refusal(486);
      }
      reservationToken = randomBytes(8);
      this.reservations.set(hex(reservationToken), {
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
    const allocation = new Allocation(
      client,
      auth.username,
      auth.user,
      relay,
      { address: this.relayIp, port: relayPort },
      this.now() + request.lifetimeMs,
      request.transactionId,
      new Uint8Array(0),
      {
        permissions: this.limits.permissionsPerAllocation,
        channels: this.limits.channelsPerAllocation,
      },
    );
    relay.on('message', (msg, rinfo) => {
      try {
        this.onPeerData(allocation, msg, rinfo);
      } catch (err) {
        this.outbox.drop('internal');
        this.outbox.fault('a relayed datagram could not be handled', err);
      }
    });
    allocation.lastHeard = this.now();
    this.allocations.set(key, allocation);
    this.byRelayPort.set(relayPort, allocation);
    return reservationToken ? { allocation, reservationToken } : { allocation };
  }

  /** A relay socket on the relay address: any port, an even one, or an even one and the next. */
  private async bindRelay(
    even: boolean,
    reserveNext: boolean,
  ): Promise<{ socket: Socket; reserved?: Socket }> {
    const onError = (err: Error) => this.outbox.fault('relay socket error', err);
    for (let attempt = 0; attempt < 32; attempt++) {
      let socket: Socket;
      try {
        socket = await bindUdp(this.relayIp, 0, onError);
      } catch {
        throw new Refusal(508);
      }
      const port = socket.address().port;
      if (!even || port % 2 === 0) {
        if (!reserveNext) return { socket };
        try {
          return { socket, reserved: await bindUdp(this.relayIp, port + 1, onError) };
        } catch {
          // the next port is taken: try another pair
        }
      }
      closeQuietly(socket);
    }
    throw new Refusal(508);
  }

  /**
   * A user at its quota that allocates again gets its stalest allocations (least recently
   * heard from, and quiet for a while) freed for the new one. ICE agents such as libjuice
   * leave their allocations to expire when a connection closes, so a node that dials often
   * would otherwise lock itself out for an allocation's lifetime. Only the user's own
   * allocations go: nobody else's quota is touched.
   */
  private makeRoomForUser(user: string, needed: number): void {
    const over = this.quotas.allocationsOf(user) + needed - this.limits.allocationsPerUser;
    if (over <= 0) return;
    const quietSince = this.now() - STALE_AFTER_MS;
    const stale = [...this.allocations.values()]
      .filter((a) => a.user === user && a.lastHeard <= quietSince)
      .sort((a, b) => a.lastHeard - b.lastHeard)
      .slice(0, over);
    for (const a of stale) this.remove(a);
  }

  remove(allocation: Allocation): void {
    const key = clientKey(allocation.client);
    if (this.allocations.get(key) !== allocation) return;
    this.allocations.delete(key);
    if (this.byRelayPort.get(allocation.relayAddress.port) === allocation)
      this.byRelayPort.delete(allocation.relayAddress.port);
    this.quotas.releaseAllocation(allocation.user);
    this.sourceShares.release(addressKey(allocation.client.address));
    closeQuietly(allocation.relay);
    // Over TCP/TLS the connection is the 5-tuple: it ends with its allocation.
    allocation.client.stream?.end();
  }

  /** The client's allocation, if any, without touching it. */
  peek(client: TurnClient): Allocation | undefined {
    return this.allocations.get(clientKey(client));
  }

  /** Expires allocations, reservations, permissions and channels. */
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

  close(): void {
    this.closed = true;
    for (const a of this.allocations.values()) closeQuietly(a.relay);
    for (const r of this.reservations.values()) closeQuietly(r.socket);
    this.allocations.clear();
    this.byRelayPort.clear();
    this.reservations.clear();
    this.pending.clear();
    this.sourceShares.clear();
  }
}
