/**
 * The node key: ECDSA P-256, made once and kept forever (DESIGN §1).
 * Platform-neutral: both browsers and Node 20 have WebCrypto on `globalThis.crypto`.
 * Storage lives in the adapters (src/browser/identity-store.ts, src/node/identity-store.ts).
 */
import { own } from './bytes.ts';
import { NODE_KEY_ALGORITHM, SIGN_ALGORITHM } from './identity-crypto.ts';
import { assertRawPublicKey, meshIp6, type NodeId, nodeIdFromPublicKey } from './node-id.ts';

/** What the identity code needs of a key: its public point and a way to sign. */
export interface NodeKey {
  /** 65-byte uncompressed point `04||X||Y`. */
  readonly publicKey: Uint8Array;
  /** ES256 signature in JOSE form (r||s, 64 bytes). */
  sign(data: Uint8Array): Promise<Uint8Array>;
}

/** A node key with the ID and mesh address it derives. */
export interface NodeIdentity {
  readonly key: NodeKey;
  readonly id: NodeId;
  readonly ip6: string;
}

/** A new key pair whose private half can never be exported. */
export async function generateNodeKeyPair(): Promise<CryptoKeyPair> {
  return crypto.subtle.generateKey(NODE_KEY_ALGORITHM, false, ['sign', 'verify']);
}

export async function nodeKeyFromCryptoKeys(
  privateKey: CryptoKey,
  publicKey: CryptoKey,
): Promise<NodeKey> {
  const raw = new Uint8Array(await crypto.subtle.exportKey('raw', publicKey));
  assertRawPublicKey(raw);
  return {
    publicKey: raw,
    sign: async (data) =>
      new Uint8Array(await crypto.subtle.sign(SIGN_ALGORITHM, privateKey, own(data))),
  };
}

export async function identityOf(key: NodeKey): Promise<NodeIdentity> {
  const id = await nodeIdFromPublicKey(key.publicKey);
  return { key, id, ip6: meshIp6(id) };
}
