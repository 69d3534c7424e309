/**
 * The gateway's limits, with defaults sane for a small mesh; all configurable
 * (`--limit NAME=VALUE`). How they keep one stranger from crashing, exhausting or locking out
 * a gateway is docs/design.md §8: unauthenticated failures are limited apart from
 * authenticated work; per-address limits key on the address (IPv6: its /64); identities are
 * free, so what a fresh identity may take is bounded per address too.
 */
import type { RateLimit } from '../rate-limit.ts';

export interface GatewayLimits {
  /** Largest HTTP request body. */
  maxBodyBytes: number;
  /** Longest a request token may live (its exp minus now). */
  maxTokenLifetimeS: number;
  /**
   * Requests that fail authentication, per client address. Beyond, they get 429 instead of
   * 401; requests that do authenticate are never charged here.
   */
  authFailuresPerIp: RateLimit;
  /** Node IDs the gateway has not seen before, per client address (Sybil bound). */
  newNodesPerIp: RateLimit;
  /** Connects and registrations per node. */
  connectPerId: RateLimit;
  /** Dials per node (ctl and HTTP), and HTTP requests about dials. */
  dialPerId: RateLimit;
  /** ctl messages per session. */
  messagesPerSession: RateLimit;
  /** Dials waiting for an answer, in all. */
  maxPendingDials: number;
  /** … placed by one caller. */
  maxPendingDialsPerNode: number;
  /** … ringing one callee (its ringing capacity). */
  maxPendingDialsPerCallee: number;
  /** … from one caller to one callee. */
  maxPendingDialsPerPair: number;
  /** … from one client address to one callee (however many IDs it uses). */
  maxPendingDialsPerIpAndCallee: number;
  /** … from one client address in all: its share of maxPendingDials. */
  maxPendingDialsPerIp: number;
  /** How long a dial waits for an answer. */
  dialTimeoutMs: number;
  /** Live sessions on this gateway. */
  maxSessions: number;
  /** Sessions from one client address whose WebRTC association is not yet up. */
  maxConnectingPerIp: number;
  /** A session that says nothing (not even a ping) for this long is closed. */
  sessionIdleMs: number;
  /** Registered nodes in all; new IDs beyond get 503 (known ones still connect). */
  maxRegistrations: number;
  /** How long a registration is kept after the node was last seen. */
  registrationTtlMs: number;
  /** Open HTTP connections, in all and per client address. */
  maxConnections: number;
  maxConnectionsPerIp: number;
  /** How long a client may take to send a whole request (headers and body). */
  requestTimeoutMs: number;
  /** Nodes taking calls by long-poll (GET /v1/dials), in all: one entry per node. */
  maxPolls: number;
  /** Open long-polls from one client address (one per node; a node's new poll replaces its old). */
  maxPollsPerIp: number;
  /** The longest a long-poll waits (a node's `wait` is capped to it). */
  maxPollWaitMs: number;
}

export const DEFAULT_LIMITS: GatewayLimits = {
  maxBodyBytes: 64 * 1024,
  maxTokenLifetimeS: 600,
  authFailuresPerIp: { perSecond: 1, burst: 30 },
  newNodesPerIp: { perSecond: 0.2, burst: 100 },
  connectPerId: { perSecond: 0.5, burst: 10 },
  dialPerId: { perSecond: 2, burst: 20 },
  messagesPerSession: { perSecond: 100, burst: 400 },
  maxPendingDials: 10_000,
  maxPendingDialsPerNode: 16,
  maxPendingDialsPerCallee: 64,
  maxPendingDialsPerPair: 4,
  maxPendingDialsPerIpAndCallee: 8,
  maxPendingDialsPerIp: 500,
  dialTimeoutMs: 60_000,
  maxSessions: 10_000,
  maxConnectingPerIp: 32,
  sessionIdleMs: 30_000,
  maxRegistrations: 100_000,
  registrationTtlMs: 7 * 24 * 3600 * 1000,
  maxConnections: 10_000,
  maxConnectionsPerIp: 256,
  requestTimeoutMs: 20_000,
  maxPolls: 10_000,
  maxPollsPerIp: 64,
  maxPollWaitMs: 30_000,
};
