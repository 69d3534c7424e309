/**
 * Browser storage of the node identity (DESIGN §1): a non-extractable WebCrypto key pair
 * in IndexedDB, made once under a Web Lock so two tabs never make two identities.
 */
import {
  encodeBase64url,
  generateNodeKeyPair,
  identityOf,
  type NodeIdentity,
  nodeKeyFromCryptoKeys,
} from '../core/identity/index.ts';
import { type IdentitySummary, openNodeDb } from './db.ts';

const IDENTITY_LOCK = 'rtcmesh:identity';

export async function loadOrCreateNodeIdentity(): Promise<NodeIdentity> {
  const pair = await navigator.locks.request(IDENTITY_LOCK, async () => {
    const db = await openNodeDb();
    const existing = await db.get('keys', 'node');
    if (existing) return existing;
    const created = await generateNodeKeyPair();
    await db.put('keys', created, 'node');
    return created;
  });
  const identity = await identityOf(await nodeKeyFromCryptoKeys(pair.privateKey, pair.publicKey));
  const db = await openNodeDb();
  const summary = await db.get('identity', 'node');
  if (!summary || summary.id !== identity.id) {
    await db.put('identity', summaryOf(identity, [], null), 'node');
  }
  return identity;
}

/** The stored identity, or undefined: never makes one (the service worker acts only for a node). */
export async function loadNodeIdentity(): Promise<NodeIdentity | undefined> {
  const pair = await (await openNodeDb()).get('keys', 'node');
  return pair && identityOf(await nodeKeyFromCryptoKeys(pair.privateKey, pair.publicKey));
}

export function summaryOf(
  identity: NodeIdentity,
  fingerprints: string[],
  certificateExpires: number | null,
): IdentitySummary {
  return {
    id: identity.id,
    ip6: identity.ip6,
    publicKey: encodeBase64url(identity.key.publicKey),
    fingerprints,
    certificateExpires,
  };
}

export async function saveIdentitySummary(summary: IdentitySummary): Promise<void> {
  await (await openNodeDb()).put('identity', summary, 'node');
}
