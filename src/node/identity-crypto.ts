/**
 * node:crypto for the identity checks (src/core/identity/identity-crypto.ts): a gateway checks
 * two signatures and hashes one key per registration, and through WebCrypto that cost its main
 * thread about twice as much (argument normalisation, key objects, a promise job per step;
 * bench:capacity, docs/design.md §7). Signatures are checked on libuv's thread pool, off the
 * main thread; keys are imported once (bounded cache).
 */
import { createHash, createPublicKey, type KeyObject, verify } from 'node:crypto';
import {
  type IdentityCrypto,
  IMPORTED_KEYS_MAX,
  keyText,
  useIdentityCrypto,
} from '../core/identity/identity-crypto.ts';
import { IdentityError } from '../core/identity/index.ts';
import { LruMap } from '../core/identity/lru.ts';
import { assertRawPublicKey } from '../core/identity/node-id.ts';

function nodeIdentityCrypto(): IdentityCrypto {
  const imported = new LruMap<string, KeyObject>(IMPORTED_KEYS_MAX);
  const importKey = (raw: Uint8Array): KeyObject => {
    assertRawPublicKey(raw);
    const text = keyText(raw);
    let key = imported.get(text);
    if (!key) {
      try {
        // JWK rather than SPKI DER: about half the cost here (OpenSSL checks the point either way).
        key = createPublicKey({
          key: {
            kty: 'EC',
            crv: 'P-256',
            x: Buffer.from(raw.subarray(1, 33)).toString('base64url'),
            y: Buffer.from(raw.subarray(33, 65)).toString('base64url'),
          },
          format: 'jwk',
        });
      } catch {
        throw new IdentityError('bad-key', 'the key is not a point on P-256');
      }
      imported.set(text, key);
    }
    return key;
  };
  return {
    async sha256(data) {
      const digest = createHash('sha256').update(data).digest();
      return new Uint8Array(digest.buffer.slice(digest.byteOffset, digest.byteOffset + 32));
    },
    verifyP256(publicKeyRaw, signature, data) {
      let key: KeyObject;
      try {
        key = importKey(publicKeyRaw);
      } catch (err) {
        return Promise.reject(err);
      }
      if (signature.length !== 64) return Promise.resolve(false);
      return new Promise((resolve) => {
        verify('sha256', data, { key, dsaEncoding: 'ieee-p1363' }, signature, (err, ok) =>
          resolve(!err && ok),
        );
      });
    },
  };
}

let installed = false;

/** Makes every identity check in this process use node:crypto (once; later calls do nothing). */
export function installNodeIdentityCrypto(): void {
  if (installed) return;
  installed = true;
  useIdentityCrypto(nodeIdentityCrypto());
}
