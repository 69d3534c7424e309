/**
 * The two implementations of identity's checks (src/core/identity/identity-crypto.ts): the
 * WebCrypto one browsers use and node:crypto's that Node installs. Each must accept exactly
 * the good signatures, refuse a key that is not a point, and hash as SHA-256 does; records and
 * request tokens verify the same through either.
 */
import { createHash } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import {
  type IdentityCrypto,
  identityCrypto,
  useIdentityCrypto,
} from '../src/core/identity/identity-crypto.ts';
import {
  createAuthorization,
  createNodeRecord,
  generateNodeKeyPair,
  IdentityError,
  identityOf,
  MemoryReplayGuard,
  nodeKeyFromCryptoKeys,
  verifyAuthorization,
  verifyNodeRecord,
} from '../src/core/identity/index.ts';
import { installNodeIdentityCrypto } from '../src/node/identity-crypto.ts';

const webCrypto = identityCrypto();
installNodeIdentityCrypto();
const nodeCrypto = identityCrypto();
useIdentityCrypto(webCrypto);
afterAll(() => useIdentityCrypto(webCrypto));

const FP = `sha-256 ${'AB:'.repeat(31)}CD`;

async function newIdentity() {
  const pair = await generateNodeKeyPair();
  return identityOf(await nodeKeyFromCryptoKeys(pair.privateKey, pair.publicKey));
}

describe.each([
  ['WebCrypto', webCrypto],
  ['node:crypto', nodeCrypto],
] as [string, IdentityCrypto][])('%s', (_name, impl) => {
  it('accepts a good signature and refuses a changed byte, a wrong key or length', async () => {
    const a = await newIdentity();
    const b = await newIdentity();
    const data = new TextEncoder().encode('a request token, say');
    const signature = await a.key.sign(data);
    expect(await impl.verifyP256(a.key.publicKey, signature, data)).toBe(true);
    // Twice: the second time from its cache of imported keys.
    expect(await impl.verifyP256(a.key.publicKey, signature, data)).toBe(true);
    const changed = data.slice();
    changed[0] = (changed[0] ?? 0) ^ 1;
    expect(await impl.verifyP256(a.key.publicKey, signature, changed)).toBe(false);
    const forged = signature.slice();
    forged[10] = (forged[10] ?? 0) ^ 1;
    expect(await impl.verifyP256(a.key.publicKey, forged, data)).toBe(false);
    expect(await impl.verifyP256(b.key.publicKey, signature, data)).toBe(false);
    expect(await impl.verifyP256(a.key.publicKey, signature.subarray(0, 63), data)).toBe(false);
    expect(await impl.verifyP256(a.key.publicKey, new Uint8Array(64), data)).toBe(false);
  });

  it('a key that is not a point on P-256, or not 65 bytes: bad-key', async () => {
    const data = new Uint8Array([1, 2, 3]);
    const notAPoint = new Uint8Array(65).fill(7);
    notAPoint[0] = 4;
    for (const key of [notAPoint, new Uint8Array(33).fill(2), new Uint8Array(65)]) {
      const err = await impl.verifyP256(key, new Uint8Array(64), data).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(IdentityError);
      expect((err as IdentityError).code).toBe('bad-key');
    }
  });

  it('hashes as SHA-256', async () => {
    for (const size of [0, 1, 65, 1000]) {
      const data = new Uint8Array(size).map((_, i) => i * 7);
      expect(Buffer.from(await impl.sha256(data)).toString('hex')).toBe(
        createHash('sha256').update(data).digest('hex'),
      );
    }
  });

  it('records and request tokens verify through it', async () => {
    useIdentityCrypto(impl);
    try {
      const a = await newIdentity();
      const record = await verifyNodeRecord(await createNodeRecord(a, { fingerprints: [FP] }));
      expect(record.id).toBe(a.id);
      const header = await createAuthorization(a.key, 'https://gw.example');
      const caller = await verifyAuthorization(header, {
        audience: 'https://gw.example',
        replayGuard: new MemoryReplayGuard(),
      });
      expect(caller.id).toBe(a.id);
    } finally {
      useIdentityCrypto(webCrypto);
    }
  });
});
