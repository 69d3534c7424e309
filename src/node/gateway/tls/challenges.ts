/**
 * ACME http-01 challenges in flight (RFC 8555 §8.3): token → key authorization, set by the
 * ACME client for the CA to fetch from `http://DOMAIN/.well-known/acme-challenge/TOKEN` on
 * the plain HTTP port. Only this gateway's own orders add to it, so it stays tiny.
 */
export const CHALLENGE_PATH = '/.well-known/acme-challenge/';

export class ChallengeStore {
  private readonly answers = new Map<string, string>();

  set(token: string, keyAuthorization: string): void {
    this.answers.set(token, keyAuthorization);
  }

  delete(token: string): void {
    this.answers.delete(token);
  }

  /** The answer for a request path, if it asks for a challenge in flight. */
  answer(path: string): string | undefined {
    if (!path.startsWith(CHALLENGE_PATH)) return undefined;
    return this.answers.get(path.slice(CHALLENGE_PATH.length));
  }
}
