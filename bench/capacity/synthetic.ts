/**
 * Lightweight synthetic nodes for the capacity harness: real identities (ECDSA P-256 node
 * keys, signed records and request tokens from src/core/identity), so the gateway does all
 * the checks it does for a real node, and a small keep-alive HTTP client.
 */
import { Agent, request } from 'node:http';
import {
  audienceOf,
  createAuthorization,
  createNodeRecord,
  generateNodeKeyPair,
  identityOf,
  type NodeIdentity,
  nodeKeyFromCryptoKeys,
} from '../../src/core/identity/index.ts';

/** A fingerprint for records that accompany no SDP (POST /v1/register checks none). */
export const PLACEHOLDER_FINGERPRINT = `sha-256 ${Array.from({ length: 32 }, () => 'AB').join(':')}`;

export async function syntheticIdentity(): Promise<NodeIdentity> {
  const pair = await generateNodeKeyPair();
  return identityOf(await nodeKeyFromCryptoKeys(pair.privateKey, pair.publicKey));
}

export async function syntheticRecord(
  identity: NodeIdentity,
  fingerprints: readonly string[] = [PLACEHOLDER_FINGERPRINT],
): Promise<string> {
  return createNodeRecord(identity, { fingerprints, name: 'capacity' });
}

export function authorization(identity: NodeIdentity, gatewayUrl: string): Promise<string> {
  return createAuthorization(identity.key, audienceOf(gatewayUrl));
}

/** POST JSON with a keep-alive agent; resolves with the status and parsed body. */
export function postJson(
  agent: Agent,
  url: string,
  headers: Record<string, string>,
  body: unknown,
): Promise<{ status: number; body: unknown }> {
  const payload = Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method: 'POST',
        agent,
        headers: {
          ...headers,
          'content-type': 'application/json',
          'content-length': String(payload.length),
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString();
          let parsed: unknown = text;
          try {
            parsed = JSON.parse(text);
          } catch {
            // not JSON: keep the text
          }
          resolve({ status: res.statusCode ?? 0, body: parsed });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

/**
 * postJson with a fresh signed token per attempt, retried once when a kept-alive connection
 * was reset: the server closes idle keep-alive connections after 5 s and a request sent on
 * one as it closes fails (a client-side race, not a refusal). Tokens are single-use, hence a
 * new one for the retry.
 */
export async function signedPost(
  agent: Agent,
  url: string,
  sign: () => Promise<string>,
  body: unknown,
): Promise<{ status: number; body: unknown }> {
  try {
    return await postJson(agent, url, { authorization: await sign() }, body);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ECONNRESET') throw err;
    return postJson(agent, url, { authorization: await sign() }, body);
  }
}

export function keepAliveAgent(maxSockets: number): Agent {
  return new Agent({ keepAlive: true, maxSockets });
}

/** Runs `task(i)` for i in [0, count) with at most `concurrency` at once. */
export async function pool(
  count: number,
  concurrency: number,
  task: (i: number) => Promise<void>,
): Promise<void> {
  let next = 0;
  const runners = Array.from({ length: Math.min(concurrency, count) }, async () => {
    while (next < count) {
      const i = next++;
      await task(i);
    }
  });
  await Promise.all(runners);
}

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i] ?? Number.NaN;
}

/** A short description of an HTTP error body. */
export function errorText(status: number, body: unknown): string {
  const code = (body as { error?: { code?: string } } | undefined)?.error?.code;
  return `${status}${code ? ` ${code}` : ''}`;
}
