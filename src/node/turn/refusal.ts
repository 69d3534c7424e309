/** What a request handler knows of its requester, and how it refuses. */

import { ERROR_REASONS } from '../stun/error-code.ts';
import type { IntegrityAlgorithm } from '../stun/integrity.ts';

/** Who asked, once the request's integrity checked with their key. */
export interface Authenticated {
  username: string;
  user: string;
  key: Uint8Array;
  algorithm: IntegrityAlgorithm;
}

/** A request that failed for a reason the client is told about, as an ERROR-CODE. */
export class Refusal extends Error {
  constructor(
    readonly code: number,
    readonly unknown: number[] = [],
  ) {
    super(ERROR_REASONS[code] ?? 'Error');
  }
}
