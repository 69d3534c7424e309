/**
 * node:crypto for the identity checks (src/core/identity/identity-crypto.ts): a gateway checks
 * two signatures and hashes one key per registration, and through WebCrypto that cost its main
 * thread about twice as much (argument normalisation, key objects, a promise job per step;
 * bench:capacity, docs/design.md §7). Signatures are checked on libuv's thread pool, off the
 * main thread; keys are imported once (bounded cache).
 */
import { createHash, createPublicKey, verify } from 'node:crypto';
import {
  type IdentityCrypto,
  importedKeys,
  useIdentityCrypto,
} from '../core/identity/identity-crypto.ts';

function nodeIdentityCrypto(): IdentityCrypto {
  // JWK rather than SPKI DER: about half the cost here (OpenSSL checks the point either way).
  const importKey = importedKeys((raw) =>
    createPublicKey({
      key: {
        kty: 'EC',
        crv: 'P-256',
        x: Buffer.from(raw.subarray(1, 33)).toString('base64url'),
        y: Buffer.from(raw.subarray(33, 65)).toString('base64url'),
      },
      format: 'jwk',
    }),
  );
  return {
    async sha256(data) {
      return new Uint8Array(createHash('sha256').update(data).digest());
    },
    async verifyP256(publicKeyRaw, signature, data) {
      const key = await importKey(publicKeyRaw);
      if (signature.length !== 64) return false;
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
