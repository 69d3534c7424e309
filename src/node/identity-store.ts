/**
 * Node-side storage of a node identity: a PKCS#8 PEM private key, mode 0600, in the data
 * directory (DESIGN §1). Made on first use, then read back forever.
 */
import {
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
} from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { identityOf, type NodeIdentity, type NodeKey } from '../core/identity/index.ts';
import { readOrCreatePrivateFile } from './atomic-file.ts';

export const NODE_KEY_FILE = 'node-key.pem';

export interface StoredIdentity {
  identity: NodeIdentity;
  keyFile: string;
  created: boolean;
}

/** Creates the data directory (0700) if needed. */
export async function ensureDataDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
}

export async function loadOrCreateIdentity(dataDir: string): Promise<StoredIdentity> {
  await ensureDataDir(dataDir);
  const keyFile = join(dataDir, NODE_KEY_FILE);
  const { text: pem, created } = await readOrCreatePrivateFile(keyFile, newP256KeyPem);
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(pem);
  } catch (err) {
    throw new Error(`${keyFile} is not a PEM private key: ${(err as Error).message}`);
  }
  if (
    privateKey.asymmetricKeyType !== 'ec' ||
    privateKey.asymmetricKeyDetails?.namedCurve !== 'prime256v1'
  ) {
    throw new Error(`${keyFile} must hold an EC P-256 key`);
  }
  return { identity: await identityOf(nodeKeyFromKeyObject(privateKey)), keyFile, created };
}

function nodeKeyFromKeyObject(privateKey: KeyObject): NodeKey {
  const publicKey = new Uint8Array(
    createPublicKey(privateKey).export({ format: 'der', type: 'spki' }).subarray(-65),
  );
  const signingKey = crypto.subtle.importKey(
    'pkcs8',
    privateKey.export({ format: 'der', type: 'pkcs8' }),
    { name: 'ECDSA', namedCurve: 'P-256' },
    false,
    ['sign'],
  );
  return {
    publicKey,
    sign: async (data) =>
      new Uint8Array(
        await crypto.subtle.sign(
          { name: 'ECDSA', hash: 'SHA-256' },
          await signingKey,
          new Uint8Array(data),
        ),
      ),
  };
}

/** A new EC P-256 private key as PKCS#8 PEM (a node's key, a gateway's VAPID key). */
export function newP256KeyPem(): string {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  return privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
}
