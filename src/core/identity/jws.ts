/** Compact JWS with ES256 (RFC 7515/7518), the envelope of node records and request tokens. */
import { decodeBase64url, encodeBase64url } from './base64url.ts';
import { fromUtf8, utf8 } from './bytes.ts';
import { IdentityError } from './errors.ts';
import { verifySignature } from './identity-crypto.ts';
import type { NodeKey } from './node-key.ts';

/** Longest token we parse: records and request tokens are well under 2 KiB. */
export const MAX_JWS_LENGTH = 8192;

export interface DecodedJws {
  readonly header: unknown;
  readonly payload: unknown;
  readonly signingInput: Uint8Array;
  readonly signature: Uint8Array;
}

export async function signJws(key: NodeKey, header: object, payload: object): Promise<string> {
  const signingInput = `${encodeBase64url(utf8(JSON.stringify(header)))}.${encodeBase64url(utf8(JSON.stringify(payload)))}`;
  const signature = await key.sign(utf8(signingInput));
  return `${signingInput}.${encodeBase64url(signature)}`;
}

export function decodeJws(token: string, what: string): DecodedJws {
  if (typeof token !== 'string' || token.length > MAX_JWS_LENGTH) {
    throw new IdentityError(
      'malformed',
      `${what} is not a compact JWS of at most ${MAX_JWS_LENGTH} characters`,
    );
  }
  const parts = token.split('.');
  if (parts.length !== 3)
    throw new IdentityError('malformed', `${what} is not a compact JWS (3 parts)`);
  const [h, p, s] = parts as [string, string, string];
  const headerBytes = decodeBase64url(h);
  const payloadBytes = decodeBase64url(p);
  const signature = decodeBase64url(s);
  if (!headerBytes || !payloadBytes || !signature) {
    throw new IdentityError('malformed', `${what} has a part that is not base64url`);
  }
  let header: unknown;
  let payload: unknown;
  try {
    header = JSON.parse(fromUtf8(headerBytes));
    payload = JSON.parse(fromUtf8(payloadBytes));
  } catch {
    throw new IdentityError('malformed', `${what} has a header or payload that is not JSON`);
  }
  const alg = (header as { alg?: unknown } | null)?.alg;
  if (alg !== 'ES256')
    throw new IdentityError('malformed', `${what} must be signed with ES256, not ${String(alg)}`);
  return { header, payload, signingInput: utf8(`${h}.${p}`), signature };
}

export async function checkJwsSignature(
  jws: DecodedJws,
  publicKeyRaw: Uint8Array,
  what: string,
): Promise<void> {
  if (!(await verifySignature(publicKeyRaw, jws.signature, jws.signingInput))) {
    throw new IdentityError('bad-signature', `${what} is not signed by the key it names`);
  }
}
