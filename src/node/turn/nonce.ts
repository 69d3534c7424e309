/**
 * Nonces that expire (RFC 8489 §9.2): stateless, so a flood of unauthenticated requests costs
 * no memory. A nonce is its expiry and an HMAC of that expiry and the client's address under a
 * key only this process knows: it cannot be forged, moved to another address, or used late.
 *
 * It is short (8 characters: 6 bytes, base64url), because it rides in the 401 that anyone can
 * get by asking, and that answer should be no larger than the question. The expiry travels as
 * its low 16 bits of seconds (the rest is implied by the clock, as lifetimes are far below
 * 2^15 s); the MAC has 32 bits. Guessing one blind, for an address whose answers one cannot
 * see, takes about 2^31 tries for a nonce that lasts minutes, and gains only an allocation on
 * the guesser's own credentials that cannot be used.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

export type NonceCheck = 'valid' | 'stale';

const MAC_BYTES = 4;
const EXPIRY_BYTES = 2;
const EXPIRY_WRAP = 0x10000;
/** The longest lifetime the 16-bit expiry can tell apart from the past. */
export const MAX_NONCE_LIFETIME_MS = (EXPIRY_WRAP / 2 - 1) * 1000;
const NONCE_PATTERN = /^[A-Za-z0-9_-]{8}$/;

export class NonceIssuer {
  private readonly key = randomBytes(32);
  private readonly lifetimeS: number;

  constructor(
    lifetimeMs: number,
    private readonly now: () => number = Date.now,
  ) {
    this.lifetimeS = Math.ceil(Math.min(lifetimeMs, MAX_NONCE_LIFETIME_MS) / 1000);
  }

  issue(client: string): string {
    const expiry = Math.floor(this.now() / 1000) + this.lifetimeS;
    const bytes = Buffer.alloc(EXPIRY_BYTES + MAC_BYTES);
    bytes.writeUInt16BE(expiry % EXPIRY_WRAP, 0);
    this.mac(expiry, client).copy(bytes, EXPIRY_BYTES);
    return bytes.toString('base64url');
  }

  /** Anything not made here for this client, or past its expiry, is stale (438). */
  check(nonce: string, client: string): NonceCheck {
    if (!NONCE_PATTERN.test(nonce)) return 'stale';
    const bytes = Buffer.from(nonce, 'base64url');
    if (bytes.length !== EXPIRY_BYTES + MAC_BYTES) return 'stale';
    const nowS = Math.floor(this.now() / 1000);
    // Seconds from now to the expiry, read in the 16-bit window around now.
    const ahead = (bytes.readUInt16BE(0) - (nowS % EXPIRY_WRAP) + EXPIRY_WRAP) % EXPIRY_WRAP;
    if (ahead === 0 || ahead > this.lifetimeS) return 'stale';
    const given = bytes.subarray(EXPIRY_BYTES);
    return timingSafeEqual(given, this.mac(nowS + ahead, client)) ? 'valid' : 'stale';
  }

  private mac(expiry: number, client: string): Buffer {
    return createHmac('sha256', this.key)
      .update(`${expiry}|${client}`)
      .digest()
      .subarray(0, MAC_BYTES);
  }
}
