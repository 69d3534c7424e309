/**
 * The one guard in front of every signed route: who the caller is (a request token, RFC 8292
 * form), whether it may be here (`--allow`), and whether it is within its limits. How these
 * limits keep a stranger from locking out honest users: docs/design.md §8.
 */
import type { IncomingMessage } from 'node:http';
import {
  MemoryReplayGuard,
  type VerifiedRequest,
  verifyAuthorization,
} from '../../../core/identity/index.ts';
import { RateLimiter } from '../../rate-limit.ts';
import type { Registration, Registry } from '../../registry/index.ts';
import { addressKey } from '../../stun/ip.ts';
import { clientAddress } from '../client-address.ts';
import type { GatewayConfig } from '../config.ts';
import { HttpError } from '../http.ts';
import { httpErrorOf } from './errors.ts';

export type RateClass = 'connect' | 'dial';

export class RequestGuard {
  private readonly replayGuard = new MemoryReplayGuard();
  private readonly authFailures: RateLimiter;
  private readonly newNodes: RateLimiter;
  private readonly perId: Record<RateClass, RateLimiter>;
  /** Registered nodes, as of the last count plus those admitted since. */
  registrations = 0;

  constructor(
    private readonly config: GatewayConfig,
    private readonly registry: Registry,
    /** The origin request tokens must name as audience. */
    private readonly audience: () => string,
  ) {
    const l = config.limits;
    this.authFailures = new RateLimiter(l.authFailuresPerIp);
    this.newNodes = new RateLimiter(l.newNodesPerIp);
    this.perId = { connect: new RateLimiter(l.connectPerId), dial: new RateLimiter(l.dialPerId) };
  }

  /** The limits key of a request's client: its address (IPv6: /64), behind --trust-proxy the forwarded one. */
  clientKey(req: IncomingMessage): string {
    return addressKey(clientAddress(req, this.config.trustProxy));
  }

  /**
   * The signed caller of a request. Failures are charged to the client's address (beyond its
   * allowance they get 429); requests that authenticate are never refused for what others at
   * the same address did. Then the allowlist (private mesh) and the caller's own rate.
   */
  async authenticate(req: IncomingMessage, rate: RateClass): Promise<VerifiedRequest> {
    let caller: VerifiedRequest;
    try {
      caller = await verifyAuthorization(req.headers.authorization, {
        audience: this.audience(),
        replayGuard: this.replayGuard,
        maxLifetimeS: this.config.limits.maxTokenLifetimeS,
      });
    } catch (err) {
      if (!this.authFailures.take(this.clientKey(req)))
        throw new HttpError(429, 'rate-limited', 'too many failed requests from your address');
      const mapped = httpErrorOf(err, 'token');
      if (mapped.status === 500) throw new HttpError(503, 'unavailable', (err as Error).message);
      throw mapped;
    }
    if (this.config.allow && !this.config.allow.has(caller.id))
      throw new HttpError(403, 'not-allowed', `node ${caller.id} is not allowed on this gateway`);
    if (!this.perId[rate].take(caller.id))
      throw new HttpError(429, 'rate-limited', 'too many requests for this node; wait a little');
    return caller;
  }

  /** A dial on ctl counts against the same per-node rate as one over HTTP. */
  takeDial(id: string): boolean {
    return this.perId.dial.take(id);
  }

  /**
   * A node ID this gateway has no registration for costs its client's address a token, and
   * is refused while the registry is full: identities are free, so this is what bounds how
   * many one address can make (docs/design.md §8). Known IDs pass.
   */
  async admitNode(req: IncomingMessage, existing: Registration | undefined): Promise<void> {
    if (existing) return;
    if (!this.newNodes.take(this.clientKey(req)))
      throw new HttpError(429, 'rate-limited', 'too many new nodes from your address');
    if (this.registrations >= this.config.limits.maxRegistrations) {
      // The count is refreshed every minute; look again before refusing.
      await this.countRegistrations(Date.now());
      if (this.registrations >= this.config.limits.maxRegistrations)
        throw new HttpError(503, 'full', 'this gateway has no room for another node');
    }
    this.registrations++;
  }

  async countRegistrations(now: number): Promise<void> {
    this.registrations = await this.registry.count(now).catch(() => this.registrations);
  }
}
