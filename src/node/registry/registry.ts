/**
 * The gateway's node registry (DESIGN §5): who is registered, at which mesh address, with
 * which record, on which gateway's session, and how to wake them by push. Two backends
 * share this contract and one test suite: MemoryRegistry, SqliteRegistry and RedisRegistry
 * (cluster mode).
 *
 * Expiry follows the identity code (a record's `exp`): a registration is live while
 * `now < expiresAt` and gone from `expiresAt` on, whether or not it has been swept yet.
 */
import { formatIp6, isMeshIp6Of, type NodeId, parseIp6 } from '../../core/identity/index.ts';

export interface PushSubscriptionData {
  endpoint: string;
  keys: { p256dh: string; auth: string };
}

export interface Registration {
  id: NodeId;
  /** Canonical RFC 5952 text of the node's mesh IPv6 (as produced by meshIp6(id)). */
  ip6: string;
  /** The node's latest verified node record (a compact JWS). */
  record: string;
  name?: string;
  /** The gateway holding the node's live session, null when none. */
  gatewayId: string | null;
  /** ms since epoch. */
  lastSeen: number;
  /** ms since epoch; from this instant on the registration counts as gone. */
  expiresAt: number;
  push: PushSubscriptionData | null;
}

/** A registration made from a node's verified record and what the gateway knows beside it. */
export function registrationOf(
  record: { id: NodeId; ip6: string; jws: string; name?: string },
  known: Pick<Registration, 'gatewayId' | 'lastSeen' | 'expiresAt' | 'push'>,
): Registration {
  return {
    id: record.id,
    ip6: record.ip6,
    record: record.jws,
    ...(record.name !== undefined ? { name: record.name } : {}),
    ...known,
  };
}

export interface Registry {
  /**
   * Insert or replace the registration for reg.id. Rejects (TypeError) when reg.ip6 is not
   * the mesh address of reg.id, so a lookup by address can never reach the wrong node.
   */
  upsert(reg: Registration): Promise<void>;
  /** The registration, or undefined when missing or expired at `now` (default Date.now()). */
  get(id: NodeId, now?: number): Promise<Registration | undefined>;
  /**
   * Find by mesh IPv6 text in any valid form (compressed or not, any case): compares the
   * parsed 16 bytes. Undefined when missing, expired or not an IPv6 address at all.
   */
  findByIp6(ip6: string, now?: number): Promise<Registration | undefined>;
  /**
   * Record that `gatewayId` now holds (or, with null, no longer holds) the node's session;
   * updates lastSeen. No-op for unknown or expired ids. Returns whether a registration was
   * updated. With `onlyIf`, updates only while that gateway holds the session: pass it when
   * clearing, so a stale gateway cannot clear another's session.
   */
  setSession(id: NodeId, gatewayId: string | null, now: number, onlyIf?: string): Promise<boolean>;
  /**
   * Update lastSeen and extend expiresAt (never shortens it). No-op for unknown or expired
   * ids: an expired registration needs a fresh upsert (with a fresh record), not a touch.
   */
  touch(id: NodeId, now: number, expiresAt: number): Promise<boolean>;
  /** Set or clear the push subscription of a stored registration. */
  setPush(id: NodeId, push: PushSubscriptionData | null): Promise<boolean>;
  remove(id: NodeId): Promise<boolean>;
  /** Delete expired registrations; returns how many. */
  sweep(now: number): Promise<number>;
  /** Live (unexpired at now) registrations. */
  count(now?: number): Promise<number>;
  /** Count of live registrations whose gatewayId equals the argument. */
  countSessions(gatewayId: string, now?: number): Promise<number>;
  close(): Promise<void>;
}

/**
 * The registry's store cannot be reached now (Redis is down): the request may succeed later.
 * Distinct from a bug, so the gateway can say so clearly instead of "internal error".
 */
export class RegistryUnavailableError extends Error {
  override readonly name = 'RegistryUnavailableError';
}

/** The canonical text of any valid IPv6 form, or undefined when the text is not one. */
export function canonicalIp6(text: string): string | undefined {
  const bytes = parseIp6(text);
  return bytes && formatIp6(bytes);
}

/** reg.ip6 in canonical form, checked to be reg.id's mesh address. */
export function checkedIp6(reg: Registration): string {
  const ip6 = canonicalIp6(reg.ip6);
  if (ip6 === undefined || !isMeshIp6Of(reg.id, ip6)) {
    throw new TypeError(`${reg.ip6} is not the mesh IPv6 address of ${reg.id}`);
  }
  return ip6;
}

export function copyPush(push: PushSubscriptionData | null): PushSubscriptionData | null {
  if (!push) return null;
  return { endpoint: push.endpoint, keys: { p256dh: push.keys.p256dh, auth: push.keys.auth } };
}

/** A copy holding exactly the Registration fields (no `name` key when there is none). */
export function copyRegistration(reg: Registration): Registration {
  const copy: Registration = {
    id: reg.id,
    ip6: reg.ip6,
    record: reg.record,
    gatewayId: reg.gatewayId,
    lastSeen: reg.lastSeen,
    expiresAt: reg.expiresAt,
    push: copyPush(reg.push),
  };
  if (reg.name !== undefined) copy.name = reg.name;
  return copy;
}
