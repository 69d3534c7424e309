/** A node identity from a known P-256 private key, for tests that need the same ID every run. */
import { createECDH } from 'node:crypto';
import {
  encodeBase64url,
  identityOf,
  type NodeIdentity,
  nodeKeyFromCryptoKeys,
} from '../../src/core/identity/index.ts';

/** `privateKeyHex`: the 32-byte scalar d, in hex. */
export async function identityFromPrivateKey(privateKeyHex: string): Promise<NodeIdentity> {
  const d = Buffer.from(privateKeyHex, 'hex');
  const ecdh = createECDH('prime256v1');
  ecdh.setPrivateKey(d);
  const raw = ecdh.getPublicKey();
  const jwk = {
    kty: 'EC',
    crv: 'P-256',
    x: encodeBase64url(raw.subarray(1, 33)),
    y: encodeBase64url(raw.subarray(33)),
    d: encodeBase64url(d),
  };
  const alg = { name: 'ECDSA', namedCurve: 'P-256' };
  const priv = await crypto.subtle.importKey('jwk', jwk, alg, false, ['sign']);
  const pub = await crypto.subtle.importKey('jwk', { ...jwk, d: undefined }, alg, true, ['verify']);
  return identityOf(await nodeKeyFromCryptoKeys(priv, pub));
}
