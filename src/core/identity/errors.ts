/**
 * Every way an identity check can fail has its own code, so callers (and users)
 * can tell a forged record from an expired one.
 */
export type IdentityErrorCode =
  | 'malformed' // not a compact JWS / token, bad JSON, or a payload that fails the schema
  | 'bad-key' // `key` / `k` is not an uncompressed P-256 point
  | 'bad-signature' // the signature does not check with the key it names
  | 'id-mismatch' // SHA-256(key) is not the ID the record claims
  | 'ip6-mismatch' // the IPv6 address is not the one the ID derives
  | 'expired' // past `exp`
  | 'not-yet-valid' // `iat` is in the future (beyond clock skew)
  | 'wrong-peer' // a valid record, but of another node than the one expected
  | 'fingerprint-not-listed' // the DTLS fingerprint in use is not one the record lists
  | 'wrong-audience' // a request token made for another gateway
  | 'lifetime-too-long' // a request token or record valid for longer than allowed
  | 'replayed'; // a request token whose jti was already seen

export class IdentityError extends Error {
  override readonly name = 'IdentityError';
  constructor(
    readonly code: IdentityErrorCode,
    message: string,
  ) {
    super(`${code}: ${message}`);
  }
}
