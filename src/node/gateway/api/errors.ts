/**
 * One mapping from what can go wrong to what a client is told: every error leaves the API
 * as JSON `{error: {code, message}}` with a status that says whose fault it is.
 */
import { IdentityError } from '../../../core/identity/index.ts';
import type { DialErrorCode } from '../../../core/protocol/messages.ts';
import { RegistryUnavailableError } from '../../registry/index.ts';
import { HttpError } from '../http.ts';

export const DIAL_ERROR_STATUS: Record<DialErrorCode, number> = {
  'not-found': 404,
  offline: 409,
  declined: 403,
  timeout: 504,
  identity: 403,
  busy: 503,
  'rate-limited': 429,
  invalid: 400,
  cancelled: 409,
  gateway: 502,
};

export const REGISTRY_DOWN =
  "the cluster's registry is unreachable (Redis is down); try again shortly";

/**
 * The HTTP error for `err`: an HttpError as it is; a failed identity check as 401 (a request
 * token, `token-…`) or 403 (a record, `record-…`); Redis away as 503; anything else is ours,
 * an `internal` 500 the caller may log.
 */
export function httpErrorOf(err: unknown, identity: 'token' | 'record' = 'record'): HttpError {
  if (err instanceof HttpError) return err;
  if (err instanceof IdentityError)
    return identity === 'token'
      ? new HttpError(401, `token-${err.code}`, err.message)
      : new HttpError(403, `record-${err.code}`, err.message);
  if (err instanceof RegistryUnavailableError)
    return new HttpError(503, 'unavailable', REGISTRY_DOWN);
  return new HttpError(500, 'internal', 'internal error');
}

/** A failed dial as an HTTP error. */
export function dialHttpError(code: DialErrorCode, message: string): HttpError {
  return new HttpError(DIAL_ERROR_STATUS[code], code, message);
}
