/**
 * The DTLS certificate of a Node identity: a self-signed certificate over the node key,
 * `dtls-cert.pem` beside `node-key.pem`, renewed when under 30 days remain. The node ID
 * does not change on renewal: it comes from the key.
 */
import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  CERTIFICATE_LIFETIME_MS,
  certificateNeedsRenewal,
  createSelfSignedCertificate,
  formatFingerprint,
  type NodeIdentity,
} from '../core/identity/index.ts';
import { writeFileAtomically } from './atomic-file.ts';

export const CERTIFICATE_FILE = 'dtls-cert.pem';

export interface StoredCertificate {
  certFile: string;
  fingerprint: string;
  notAfter: number;
}

export async function loadOrCreateCertificate(
  dataDir: string,
  identity: NodeIdentity,
  now = Date.now(),
): Promise<StoredCertificate> {
  const certFile = join(dataDir, CERTIFICATE_FILE);
  const existing = await readFile(certFile, 'utf8').catch(() => undefined);
  if (existing) {
    try {
      const cert = new X509Certificate(existing);
      const notAfter = Date.parse(cert.validTo);
      const ours = new Uint8Array(
        cert.publicKey.export({ format: 'der', type: 'spki' }).subarray(-65),
      );
      const sameKey = ours.every((b, i) => b === identity.key.publicKey[i]);
      if (sameKey && !certificateNeedsRenewal(notAfter, now)) {
        return {
          certFile,
          fingerprint: formatFingerprint('sha-256', cert.fingerprint256),
          notAfter,
        };
      }
    } catch {
      // Unreadable: make a new one below.
    }
  }
  const made = await createSelfSignedCertificate(identity.key, {
    commonName: `rtcmesh ${identity.id.slice(0, 16)}`,
    notBefore: now - 60_000,
    notAfter: now + CERTIFICATE_LIFETIME_MS,
  });
  await writeFileAtomically(certFile, made.pem);
  return { certFile, fingerprint: made.fingerprint, notAfter: made.notAfter };
}
