/**
 * Nonces that expire (RFC 8489 §9.2): stateless, so a flood of unauthenticated requests costs
 * no memory. A nonce is its expiry and an HMAC of that expiry and the client's address under a
 * key only this process knows: it cannot be forged, moved to another address, or used late.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

export type NonceCheck = 'valid' | 'stale';

const MAC_BYTES = 12;

export class NonceIssuer {
  private readonly key = randomBytes(32);

  constructor(
    private readonly lifetimeMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  issue(client: string): string {
    const expiry = Math.floor((this.now() + this.lifetimeMs) / 1000);
    return `${expiry.toString(16).padStart(8, '0')}${this.mac(expiry, client)}`;
  }

  /** Anything not made here for this client, or past its expiry, is stale (438). */
  check(nonce: string, client: string): NonceCheck {
    const m = /^([0-9a-f]{8})([A-Za-z0-9_-]{16})$/.exec(nonce);
    if (!m?.[1] || !m[2]) return 'stale';
    const expiry = Number.parseInt(m[1], 16);
    const given = Buffer.from(m[2], 'base64url');
    const expected = Buffer.from(this.mac(expiry, client), 'base64url');
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return 'stale';
    return expiry * 1000 > this.now() ? 'valid' : 'stale';
  }

  private mac(expiry: number, client: string): string {
    return createHmac('sha256', this.key)
      .update(`${expiry}|${client}`)
      .digest()
      .subarray(0, MAC_BYTES)
      .toString('base64url');
  }
}
