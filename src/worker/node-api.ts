/** What the node worker offers every tab, over comlink. */
import type { IdentitySummary } from '../browser/db.ts';

export type { IdentitySummary };

export interface NodeApi {
  /** This device's node identity, made on first use. */
  identity(): Promise<IdentitySummary>;
  /** The window made or renewed the DTLS certificate: records must list these fingerprints. */
  useCertificate(fingerprints: string[], expires: number): Promise<IdentitySummary>;
}
