/**
 * The hashing and signature checks identity code runs on what others send (records, request
 * tokens, certificates). WebCrypto by default, which browsers, workers and Node all have; a
 * platform may install a faster one (`useIdentityCrypto`): Node's gateway and library use
 * node:crypto, which costs the gateway's main thread far less per check (docs/design.md §7).
 */
import { own } from './bytes.ts';
import { IdentityError } from './errors.ts';
import { LruMap } from './lru.ts';
import { assertRawPublicKey } from './node-id.ts';

export interface IdentityCrypto {
  sha256(data: Uint8Array): Promise<Uint8Array<ArrayBuffer>>;
  /**
   * Whether `signature` (ES256, r||s, 64 bytes) over `data` is by the P-256 key `publicKeyRaw`
   * (65-byte uncompressed point). Throws IdentityError 'bad-key' when that is not a point.
   */
  verifyP256(publicKeyRaw: Uint8Array, signature: Uint8Array, data: Uint8Array): Promise<boolean>;
}

export const NODE_KEY_ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256' } as const;
export const SIGN_ALGORITHM = { name: 'ECDSA', hash: 'SHA-256' } as const;

/**
 * How many imported keys a verifier keeps: a registration checks a request token and a record
 * signed by one key, and importing costs about as much as verifying (issue #18,
 * bench:capacity). Keys come from strangers, so the cache is bounded.
 */
export const IMPORTED_KEYS_MAX = 1024;

/** The cache key of a raw public key (its bytes as a string). */
export const keyText = (raw: Uint8Array): string => String.fromCharCode(...raw);

function webCryptoIdentity(): IdentityCrypto {
  const imported = new LruMap<string, CryptoKey>(IMPORTED_KEYS_MAX);
  return {
    async sha256(data) {
      return new Uint8Array(await crypto.subtle.digest('SHA-256', own(data)));
    },
    async verifyP256(publicKeyRaw, signature, data) {
      assertRawPublicKey(publicKeyRaw);
      const text = keyText(publicKeyRaw);
      let key = imported.get(text);
      if (!key) {
        try {
          key = await crypto.subtle.importKey('raw', own(publicKeyRaw), NODE_KEY_ALGORITHM, true, [
            'verify',
          ]);
        } catch {
          throw new IdentityError('bad-key', 'the key is not a point on P-256');
        }
        imported.set(text, key);
      }
      if (signature.length !== 64) return false;
      return crypto.subtle.verify(SIGN_ALGORITHM, key, own(signature), own(data));
    },
  };
}

let current: IdentityCrypto = webCryptoIdentity();

/** Installs a platform's own implementation for everything identity code checks from now on. */
export function useIdentityCrypto(implementation: IdentityCrypto): void {
  current = implementation;
}

export function identityCrypto(): IdentityCrypto {
  return current;
}

export const sha256 = (data: Uint8Array): Promise<Uint8Array<ArrayBuffer>> => current.sha256(data);

export const verifySignature = (
  publicKeyRaw: Uint8Array,
  signature: Uint8Array,
  data: Uint8Array,
): Promise<boolean> => current.verifyP256(publicKeyRaw, signature, data);
