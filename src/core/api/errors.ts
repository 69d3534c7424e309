/** What a call to the gateway API can fail with, besides an abort (the signal's reason). */

/** The gateway answered with an error: `{"error": {"code", "message"}}` and an HTTP status. */
export class GatewayHttpError extends Error {
  override readonly name = 'GatewayHttpError';
  constructor(
    /** The HTTP status. */
    readonly status: number,
    /**
     * The gateway's error code (`not-found`, `token-replayed`, `record-wrong-peer`, …; see
     * the README). When the body is not a gateway error (a proxy's page), `http-<status>`.
     */
    readonly code: string,
    message: string,
    /** The gateway that answered (its URL as given to the client). */
    readonly gateway: string,
  ) {
    super(message);
  }
}

/** A gateway answered 2xx with a body that does not fit the route's response schema. */
export class GatewayProtocolError extends Error {
  override readonly name = 'GatewayProtocolError';
  constructor(
    message: string,
    readonly gateway: string,
  ) {
    super(message);
  }
}

/** One gateway that could not serve a call, and why. */
export interface FailedAttempt {
  gateway: string;
  /** Unreachable, no answer in time, or a 502–504 (then a GatewayHttpError). */
  error: Error;
}

/**
 * No gateway could serve the call: each was unreachable, did not answer in time, or answered
 * 502, 503 or 504 (down behind a proxy, full, cut off from its cluster).
 */
export class GatewayUnreachable extends Error {
  override readonly name = 'GatewayUnreachable';
  constructor(readonly attempts: readonly FailedAttempt[]) {
    const reasons = attempts.map(({ gateway, error }) =>
      error instanceof GatewayHttpError
        ? `${gateway} answered ${error.status} ${error.code}: ${error.message}`
        : error.message,
    );
    super(
      reasons.length === 0
        ? 'no gateway to ask'
        : reasons.length === 1
          ? (reasons[0] ?? 'unreachable')
          : `no gateway could serve: ${reasons.join('; ')}`,
    );
  }

  /** The last gateway's error when it answered 502–504 (its code says why), else undefined. */
  get lastHttpError(): GatewayHttpError | undefined {
    const last = this.attempts.at(-1)?.error;
    return last instanceof GatewayHttpError ? last : undefined;
  }
}
