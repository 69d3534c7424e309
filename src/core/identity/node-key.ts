/**
 * The node key: ECDSA P-256, made once and kept forever (DESIGN §1).
 * Platform-neutral: both browsers and Node 20 have WebCrypto on `globalThis.crypto`.
 * Storage lives in the adapters (src/browser/identity-store.ts, src/node/identity-store.ts).
 */
import { own } from './bytes.ts';
import { IdentityError } from './errors.ts';
import { assertRawPublicKey, meshIp6, type NodeId, nodeIdFromPublicKey } from './node-id.ts';

export const NODE_KEY_ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const SIGN_ALGORITHM = { name: 'ECDSA', hash: 'SHA-256' } as const;

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

/**
 * Keys imported lately, by their raw bytes: a registration checks a request token and a
 * record signed by one key, and importing took half of the verification time (issue #18,
 * bench:capacity). Keys come from strangers, so the cache is bounded; the oldest use goes.
 */
const IMPORTED_KEYS_MAX = 1024;
const importedKeys = new Map<string, CryptoKey>();

export async function importPublicKey(raw: Uint8Array): Promise<CryptoKey> {
  assertRawPublicKey(raw);
  const cacheKey = String.fromCharCode(...raw);
  const cached = importedKeys.get(cacheKey);
  if (cached) {
    importedKeys.delete(cacheKey);
    importedKeys.set(cacheKey, cached);
    return cached;
  }
  let key: CryptoKey;
  try {
    key = await crypto.subtle.importKey('raw', own(raw), NODE_KEY_ALGORITHM, true, ['verify']);
  } catch {
    throw new IdentityError('bad-key', 'the key is not a point on P-256');
  }
  importedKeys.set(cacheKey, key);
  if (importedKeys.size > IMPORTED_KEYS_MAX) {
    const oldest = importedKeys.keys().next().value;
    if (oldest !== undefined) importedKeys.delete(oldest);
  }
  return key;
}

export async function verifySignature(
  publicKeyRaw: Uint8Array,
  signature: Uint8Array,
  data: Uint8Array,
): Promise<boolean> {
  const key = await importPublicKey(publicKeyRaw);
  if (signature.length !== 64) return false;
  return crypto.subtle.verify(SIGN_ALGORITHM, key, own(signature), own(data));
}
