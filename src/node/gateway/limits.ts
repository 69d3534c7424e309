/** The gateway's limits, with defaults sane for a small mesh; all configurable. */
import type { RateLimit } from './rate-limit.ts';

export interface GatewayLimits {
  /** Largest HTTP request body. */
  maxBodyBytes: number;
  /** Longest a request token may live (its exp minus now). */
  maxTokenLifetimeS: number;
  connectPerIp: RateLimit;
  connectPerId: RateLimit;
  dialPerId: RateLimit;
  dialPerIp: RateLimit;
  /** ctl messages per session. */
  messagesPerSession: RateLimit;
  /** Dials waiting for an answer, in all, and per caller and callee. */
  maxPendingDials: number;
  maxPendingDialsPerNode: number;
  /** How long a dial waits for an answer. */
  dialTimeoutMs: number;
  /** Live sessions on this gateway. */
  maxSessions: number;
  /** A session that says nothing (not even a ping) for this long is closed. */
  sessionIdleMs: number;
  /** How long a registration is kept after the node was last seen. */
  registrationTtlMs: number;
}

export const DEFAULT_LIMITS: GatewayLimits = {
  maxBodyBytes: 64 * 1024,
  maxTokenLifetimeS: 600,
  connectPerIp: { perSecond: 2, burst: 20 },
  connectPerId: { perSecond: 0.5, burst: 10 },
  dialPerId: { perSecond: 2, burst: 20 },
  dialPerIp: { perSecond: 10, burst: 100 },
  messagesPerSession: { perSecond: 100, burst: 400 },
  maxPendingDials: 10_000,
  maxPendingDialsPerNode: 16,
  dialTimeoutMs: 60_000,
  maxSessions: 10_000,
  sessionIdleMs: 30_000,
  registrationTtlMs: 7 * 24 * 3600 * 1000,
};
