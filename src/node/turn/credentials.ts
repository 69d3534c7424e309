/**
 * TURN credentials by shared secret, as coturn's use-auth-secret (the "TURN REST API"): the
 * username is `<expiry unix seconds>:<user>` and the password base64(HMAC-SHA1(secret,
 * username)). The gateway issues them per node; anyone holding the secret (an external
 * coturn too) can check them without asking the gateway.
 */
import { createHmac } from 'node:crypto';

export interface TurnCredentials {
  username: string;
  credential: string;
}

export function restPassword(secret: string, username: string): string {
  return createHmac('sha1', secret).update(username, 'utf8').digest('base64');
}

/** Credentials for `user`, valid for `lifetimeS` from `nowMs`. */
export function issueCredentials(
  secret: string,
  user: string,
  lifetimeS: number,
  nowMs = Date.now(),
): TurnCredentials {
  const username = `${Math.floor(nowMs / 1000) + lifetimeS}:${user}`;
  return { username, credential: restPassword(secret, username) };
}

export interface RestUsername {
  expiresAtS: number;
  /** What follows the expiry: a node ID from this gateway (empty if the username has none). */
  user: string;
}

/** Reads `<expiry>` or `<expiry>:<user>`; undefined for anything else. */
export function parseRestUsername(username: string): RestUsername | undefined {
  const m = /^(\d{1,12})(?::(.*))?$/s.exec(username);
  if (!m?.[1]) return undefined;
  return { expiresAtS: Number(m[1]), user: m[2] ?? '' };
}
