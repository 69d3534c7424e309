/** The node ID and IPv6 computed here with node:crypto, independently of src/core. */
import { createHash } from 'node:crypto';
import type { Page } from '@playwright/test';

export function expectedIdentity(publicKeyRaw: Uint8Array): { id: string; ip6: string } {
  const digest = createHash('sha256').update(publicKeyRaw).digest();
  let bits = [...digest].map((b) => b.toString(2).padStart(8, '0')).join('');
  while (bits.length % 5) bits += '0';
  const alphabet = 'abcdefghijklmnopqrstuvwxyz234567';
  let id = '';
  for (let i = 0; i < bits.length; i += 5) id += alphabet[Number.parseInt(bits.slice(i, i + 5), 2)];
  const full = Buffer.concat([Buffer.from([0xfd]), digest.subarray(0, 15)])
    .toString('hex')
    .match(/.{4}/g)
    ?.join(':');
  const ip6 = new URL(`http://[${full}]/`).hostname.slice(1, -1);
  return { id, ip6 };
}

/** Reads the node key straight from the page's IndexedDB and exports its public half. */
export async function exportedNodeKey(
  page: Page,
): Promise<{ raw: Uint8Array; privateExtractable: boolean }> {
  const result = await page.evaluate(async () => {
    const db = await new Promise<IDBDatabase>((resolve, reject) => {
      const req = indexedDB.open('rtcmesh');
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    });
    const pair = await new Promise<CryptoKeyPair>((resolve, reject) => {
      const req = db.transaction('keys').objectStore('keys').get('node');
      req.onsuccess = () => resolve(req.result as CryptoKeyPair);
      req.onerror = () => reject(req.error);
    });
    db.close();
    const raw = new Uint8Array(await crypto.subtle.exportKey('raw', pair.publicKey));
    return { raw: [...raw], privateExtractable: pair.privateKey.extractable };
  });
  return { raw: new Uint8Array(result.raw), privateExtractable: result.privateExtractable };
}
