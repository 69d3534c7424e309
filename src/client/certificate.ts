/**
 * The node's DTLS certificate (DESIGN §1). Only a window can make or read an RTCCertificate,
 * so the window keeps it: stored in IndexedDB, renewed when under 30 days remain. The ID
 * does not change on renewal, because it comes from the node key.
 */

import { openNodeDb, type StoredCertificate } from '../browser/db.ts';
import {
  CERTIFICATE_LIFETIME_MS,
  certificateNeedsRenewal,
  formatFingerprint,
} from '../core/identity/index.ts';

const CERTIFICATE_LOCK = 'rtcmesh:certificate';

export interface NodeCertificate extends StoredCertificate {
  /** Stored as a StoredRtcCertificate (any context opens the database); a window's own type. */
  certificate: RTCCertificate;
  fingerprints: string[];
  renewed: boolean;
}

export async function loadOrRenewCertificate(now = Date.now()): Promise<NodeCertificate> {
  return navigator.locks.request(CERTIFICATE_LOCK, async () => {
    const db = await openNodeDb();
    const stored = await db.get('certificates', 'dtls');
    if (stored && !certificateNeedsRenewal(stored.certificate.expires, now)) {
      // Only windows store certificates, and only RTCCertificates.
      const certificate = stored.certificate as RTCCertificate;
      return {
        certificate,
        expires: stored.expires,
        fingerprints: fingerprintsOf(certificate),
        renewed: false,
      };
    }
    const certificate = await RTCPeerConnection.generateCertificate({
      name: 'ECDSA',
      namedCurve: 'P-256',
      expires: CERTIFICATE_LIFETIME_MS,
    } as AlgorithmIdentifier);
    const fresh = { certificate, expires: certificate.expires };
    await db.put('certificates', fresh, 'dtls');
    return { ...fresh, fingerprints: fingerprintsOf(certificate), renewed: stored !== undefined };
  });
}

function fingerprintsOf(certificate: RTCCertificate): string[] {
  return certificate
    .getFingerprints()
    .map((f) => formatFingerprint(f.algorithm ?? '', f.value ?? ''));
}
