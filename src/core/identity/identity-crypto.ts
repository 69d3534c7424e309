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
 * Imports raw P-256 public keys with `importRaw`, keeping the last 1,024: a registration
 * checks a request token and a record signed by one key, and importing costs about as much
 * as verifying (issue #18, bench:capacity). Keys come from strangers, so the cache is bounded.
 * A key that is not a 65-byte point fails with IdentityError 'bad-key'.
 */
export function importedKeys<K>(
  importRaw: (raw: Uint8Array) => K | Promise<K>,
): (raw: Uint8Array) => Promise<K> {
  const imported = new LruMap<string, K>(1024);
  return async (raw) => {
    assertRawPublicKey(raw);
    const text = String.fromCharCode(...raw);
    let key = imported.get(text);
    if (key === undefined) {
      try {
        key = await importRaw(raw);
      } catch {
        throw new IdentityError('bad-key', 'the key is not a point on P-256');
      }
      imported.set(text, key);
    }
    return key;
  };
}

function webCryptoIdentity(): IdentityCrypto {
  const importKey = importedKeys((raw) =>
    crypto.subtle.importKey('raw', own(raw), NODE_KEY_ALGORITHM, true, ['verify']),
  );
  return {
    async sha256(data) {
      return new Uint8Array(await crypto.subtle.digest('SHA-256', own(data)));
    },
    async verifyP256(publicKeyRaw, signature, data) {
      const key = await importKey(publicKeyRaw);
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
