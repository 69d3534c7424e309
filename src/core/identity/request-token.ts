/**
 * Signed requests to a gateway (DESIGN §1): `Authorization: vapid t=<JWT>, k=<raw key>`,
 * the RFC 8292 form, self-signed by the node key. The gateway derives the caller's ID
 * from `k`, so nobody can act as an ID without its key.
 */
import * as z from 'zod/mini';
import { parseValue } from '../protocol/schema.ts';
import { decodeBase64url, encodeBase64url } from './base64url.ts';
import { IdentityError } from './errors.ts';
import { checkJwsSignature, decodeJws, signJws } from './jws.ts';
import { type NodeId, nodeIdFromPublicKey } from './node-id.ts';
import type { NodeKey } from './node-key.ts';
import type { ReplayGuard } from './replay-guard.ts';

/** A gateway refuses tokens that live longer than this. */
export const MAX_TOKEN_LIFETIME_S = 10 * 60;
export const DEFAULT_TOKEN_LIFETIME_S = 5 * 60;

const claimsSchema = z.object({
  aud: z.string().check(z.maxLength(512)),
  exp: z.int(),
  jti: z.string().check(z.minLength(8), z.maxLength(64)),
  iat: z.optional(z.int()),
  sub: z.optional(z.string().check(z.maxLength(256))),
});
export type RequestTokenClaims = z.infer<typeof claimsSchema>;

/** The origin a token names as audience: scheme, host and port, nothing else. */
export function audienceOf(url: string): string {
  return new URL(url).origin;
}

function randomJti(): string {
  return encodeBase64url(crypto.getRandomValues(new Uint8Array(16)));
}

export async function createAuthorization(
  key: NodeKey,
  audience: string,
  options: { nowS?: number; lifetimeS?: number; jti?: string } = {},
): Promise<string> {
  const now = options.nowS ?? Math.floor(Date.now() / 1000);
  const claims: RequestTokenClaims = {
    aud: audienceOf(audience),
    exp: now + (options.lifetimeS ?? DEFAULT_TOKEN_LIFETIME_S),
    iat: now,
    jti: options.jti ?? randomJti(),
  };
  const token = await signJws(key, { typ: 'JWT', alg: 'ES256' }, claims);
  return `vapid t=${token}, k=${encodeBase64url(key.publicKey)}`;
}

export interface VerifiedRequest {
  readonly id: NodeId;
  readonly publicKey: Uint8Array;
  readonly claims: RequestTokenClaims;
}

export function parseAuthorization(header: string | undefined): { token: string; key: string } {
  if (!header)
    throw new IdentityError('malformed', 'missing Authorization header (vapid t=…, k=…)');
  const m = /^vapid\s+(.*)$/i.exec(header.trim());
  if (!m) throw new IdentityError('malformed', 'Authorization must use the "vapid" scheme');
  const params = new Map<string, string>();
  for (const part of (m[1] ?? '').split(',')) {
    const eq = part.indexOf('=');
    if (eq > 0) params.set(part.slice(0, eq).trim().toLowerCase(), part.slice(eq + 1).trim());
  }
  const token = params.get('t');
  const key = params.get('k');
  if (!token || !key) throw new IdentityError('malformed', 'Authorization needs both t= and k=');
  return { token, key };
}

export interface VerifyRequestOptions {
  /** This gateway's origin. */
  audience: string;
  replayGuard: ReplayGuard;
  nowS?: number;
  maxLifetimeS?: number;
}

export async function verifyAuthorization(
  header: string | undefined,
  options: VerifyRequestOptions,
): Promise<VerifiedRequest> {
  const { token, key } = parseAuthorization(header);
  const publicKey = decodeBase64url(key);
  if (!publicKey) throw new IdentityError('bad-key', 'Authorization k= is not base64url');
  const decoded = decodeJws(token, 'request token');
  const parsed = parseValue(claimsSchema, decoded.payload, 'request token claims');
  if (!parsed.ok) throw new IdentityError('malformed', parsed.message);
  await checkJwsSignature(decoded, publicKey, 'request token');
  const claims = parsed.value;
  if (claims.aud !== audienceOf(options.audience)) {
    throw new IdentityError(
      'wrong-audience',
      `request token is for ${claims.aud}, not ${audienceOf(options.audience)}`,
    );
  }
  const now = options.nowS ?? Math.floor(Date.now() / 1000);
  if (claims.exp <= now) throw new IdentityError('expired', 'request token has expired');
  if (claims.exp > now + (options.maxLifetimeS ?? MAX_TOKEN_LIFETIME_S)) {
    throw new IdentityError(
      'lifetime-too-long',
      `request token may live at most ${options.maxLifetimeS ?? MAX_TOKEN_LIFETIME_S} s`,
    );
  }
  const id = await nodeIdFromPublicKey(publicKey);
  if (!(await options.replayGuard.firstSeen(`${id}:${claims.jti}`, claims.exp, now))) {
    throw new IdentityError('replayed', 'request token was already used (jti seen before)');
  }
  return { id, publicKey, claims };
}
