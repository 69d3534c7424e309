/**
 * The plain HTTP port of a gateway that serves TLS (port 80): ACME http-01 challenges, and
 * a redirect to the https origin for everything else. Nothing else is served in the clear.
 */
import { createServer, type Server } from 'node:http';
import type { ChallengeStore } from './challenges.ts';

export function createRedirectServer(
  httpsOrigin: () => string,
  challenges: ChallengeStore,
  requestTimeoutMs: number,
): Server {
  const server = createServer({ connectionsCheckingInterval: 2000 }, (req, res) => {
    let path = '/';
    try {
      const url = new URL(req.url ?? '/', 'http://gateway');
      path = url.pathname + url.search;
    } catch {
      // an unparsable target goes to the front page
    }
    const answer = req.method === 'GET' ? challenges.answer(path) : undefined;
    if (answer !== undefined) {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(answer);
      return;
    }
    // The configured origin, never the Host header a client sent (no open redirect).
    res.writeHead(308, { location: `${httpsOrigin()}${path}`, connection: 'close' });
    res.end();
  });
  server.requestTimeout = requestTimeoutMs;
  server.headersTimeout = Math.min(10_000, requestTimeoutMs);
  return server;
}
