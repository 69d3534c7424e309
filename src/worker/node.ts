/**
 * The mesh node as the browser runs it. It lives in the node worker (a SharedWorker, so
 * all tabs share one node), or in the page where SharedWorker is missing.
 */
import {
  loadOrCreateNodeIdentity,
  saveIdentitySummary,
  summaryOf,
} from '../browser/identity-store.ts';
import type { NodeIdentity } from '../core/identity/index.ts';
import type { IdentitySummary, NodeApi } from './node-api.ts';

export class BrowserNode implements NodeApi {
  private identityPromise: Promise<NodeIdentity> | undefined;
  private fingerprints: string[] = [];
  private certificateExpires: number | null = null;

  private loadIdentity(): Promise<NodeIdentity> {
    this.identityPromise ??= loadOrCreateNodeIdentity().catch((err: unknown) => {
      this.identityPromise = undefined; // let the next call try again
      throw err;
    });
    return this.identityPromise;
  }

  async identity(): Promise<IdentitySummary> {
    return summaryOf(await this.loadIdentity(), this.fingerprints, this.certificateExpires);
  }

  async useCertificate(fingerprints: string[], expires: number): Promise<IdentitySummary> {
    this.fingerprints = [...fingerprints];
    this.certificateExpires = expires;
    const summary = await this.identity();
    await saveIdentitySummary(summary);
    return summary;
  }
}
