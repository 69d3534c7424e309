/**
 * Web Push from the gateway (DESIGN §2): the gateway's VAPID key pair (RFC 8292), kept in its
 * data directory, and a sender that wakes a node with an RFC 8291 (aes128gcm) encrypted push.
 *
 * web-push builds the request (VAPID JWT and encryption); we post it ourselves, because its
 * sendNotification only speaks https and because a push endpoint is a URL a client chose:
 * the gateway must not be made to post to its own private network. So only https endpoints
 * on public addresses are used, checked again at connect time (DNS may change), unless the
 * operator allows private endpoints (--push-allow-private, for tests on one machine).
 */
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { lookup as dnsLookup, type LookupAddress, type LookupOptions } from 'node:dns';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { isIP } from 'node:net';
import { join } from 'node:path';
import webPush from 'web-push';
import type { PushPayload, PushSubscriptionJson } from '../../core/protocol/messages.ts';
import { readOrCreatePrivateFile } from '../atomic-file.ts';
import { ensureDataDir, newP256KeyPem } from '../identity-store.ts';
import { peerAllowed } from '../turn/address-policy.ts';

export const VAPID_KEY_FILE = 'vapid-key.pem';

/** The VAPID key pair as web-push and browsers take it: base64url raw point and scalar. */
export interface VapidKeys {
  /** The 65-byte uncompressed public point: the applicationServerKey nodes subscribe with. */
  publicKey: string;
  /** The 32-byte private scalar. */
  privateKey: string;
}

/** Reads the gateway's VAPID key (PKCS#8 PEM, mode 0600), making it on first start. */
export async function loadOrCreateVapidKeys(dataDir: string): Promise<VapidKeys> {
  await ensureDataDir(dataDir);
  const file = join(dataDir, VAPID_KEY_FILE);
  const { text: pem } = await readOrCreatePrivateFile(file, newP256KeyPem);
  let key: ReturnType<typeof createPrivateKey>;
  try {
    key = createPrivateKey(pem);
  } catch (err) {
    throw new Error(`${file} is not a PEM private key: ${(err as Error).message}`);
  }
  if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1')
    throw new Error(`${file} must hold an EC P-256 key`);
  const jwk = key.export({ format: 'jwk' });
  if (!jwk.d) throw new Error(`${file} holds no private key`);
  const raw = createPublicKey(key).export({ format: 'der', type: 'spki' }).subarray(-65);
  return { publicKey: raw.toString('base64url'), privateKey: jwk.d };
}

/** Why an endpoint may not be used, or undefined when it may (its host is checked again on connect). */
export function pushEndpointProblem(endpoint: string, allowPrivate: boolean): string | undefined {
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch {
    return 'the push endpoint is not a URL';
  }
  if (url.protocol !== 'https:' && !(allowPrivate && url.protocol === 'http:'))
    return `the push endpoint must be https, not ${url.protocol}`;
  if (url.username || url.password) return 'the push endpoint must not carry credentials';
  const host = url.hostname.replace(/^\[|\]$/g, '');
  if (isIP(host) && !peerAllowed(host, allowPrivate))
    return `the push endpoint's address ${host} is not public`;
  return undefined;
}

export type PushOutcome =
  | { result: 'sent'; status: number }
  /** The push service says the subscription no longer exists (404, 410): forget it. */
  | { result: 'gone'; status: number; message: string }
  | { result: 'failed'; status: number | null; message: string }
  /** The endpoint is not one the gateway posts to. */
  | { result: 'refused'; message: string };

export interface PushSenderOptions {
  vapid: VapidKeys;
  /** Who runs this gateway (RFC 8292 `sub`): an https URL or a mailto: address. */
  subject: string;
  allowPrivate: boolean;
  /** The whole request, connect to response headers. */
  timeoutMs?: number;
}

const PUSH_TIMEOUT_MS = 10_000;
/** Enough of a push service's reply to explain an error. */
const MAX_REPLY_BYTES = 2048;

export class PushSender {
  constructor(private readonly options: PushSenderOptions) {}

  get publicKey(): string {
    return this.options.vapid.publicKey;
  }

  /** Sends one encrypted, VAPID-signed push with urgency high, kept by the service for `ttlS`. */
  async send(
    subscription: PushSubscriptionJson,
    payload: PushPayload,
    ttlS: number,
  ): Promise<PushOutcome> {
    const problem = pushEndpointProblem(subscription.endpoint, this.options.allowPrivate);
    if (problem) return { result: 'refused', message: problem };
    let details: ReturnType<typeof webPush.generateRequestDetails>;
    try {
      details = webPush.generateRequestDetails(subscription, JSON.stringify(payload), {
        vapidDetails: {
          subject: this.options.subject,
          publicKey: this.options.vapid.publicKey,
          privateKey: this.options.vapid.privateKey,
        },
        TTL: Math.max(0, Math.ceil(ttlS)),
        urgency: 'high',
        contentEncoding: 'aes128gcm',
      });
    } catch (err) {
      // A subscription whose keys do not make a P-256 point cannot be encrypted to.
      return { result: 'failed', status: null, message: (err as Error).message };
    }
    const headers: Record<string, string> = {};
    for (const [name, value] of Object.entries(details.headers)) headers[name] = String(value);
    try {
      const reply = await this.post(details.endpoint, headers, details.body ?? Buffer.alloc(0));
      if (reply.status >= 200 && reply.status < 300)
        return { result: 'sent', status: reply.status };
      const message = `push service answered ${reply.status}${reply.text ? `: ${reply.text}` : ''}`;
      if (reply.status === 404 || reply.status === 410)
        return { result: 'gone', status: reply.status, message };
      return { result: 'failed', status: reply.status, message };
    } catch (err) {
      const message = (err as Error).message;
      if (err instanceof EndpointRefused) return { result: 'refused', message };
      return { result: 'failed', status: null, message: `push service unreachable: ${message}` };
    }
  }

  private post(
    endpoint: string,
    headers: Record<string, string>,
    body: Buffer,
  ): Promise<{ status: number; text: string }> {
    const url = new URL(endpoint);
    const request = url.protocol === 'https:' ? httpsRequest : httpRequest;
    const timeoutMs = this.options.timeoutMs ?? PUSH_TIMEOUT_MS;
    return new Promise((resolve, reject) => {
      const req = request(
        url,
        {
          method: 'POST',
          headers,
          lookup: guardedLookup(this.options.allowPrivate),
          signal: AbortSignal.timeout(timeoutMs),
        },
        (res: IncomingMessage) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => {
            if (text.length < MAX_REPLY_BYTES) text += chunk;
          });
          res.on('end', () =>
            resolve({ status: res.statusCode ?? 0, text: text.slice(0, 200).trim() }),
          );
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  }
}

class EndpointRefused extends Error {}

type LookupCallback = (
  err: NodeJS.ErrnoException | null,
  address: string | LookupAddress[],
  family?: number,
) => void;

/**
 * dns.lookup, refusing names that resolve to loopback, private or link-local addresses
 * (unless allowed): checked when connecting, so a name cannot change after a check.
 */
function guardedLookup(allowPrivate: boolean) {
  return (hostname: string, options: LookupOptions, callback: LookupCallback): void => {
    dnsLookup(hostname, { ...options, all: true }, (err, addresses) => {
      if (err) return callback(err, []);
      const refused = addresses.find((a) => !peerAllowed(a.address, allowPrivate));
      if (refused)
        return callback(
          new EndpointRefused(
            `the push endpoint ${hostname} resolves to ${refused.address}, which is not public`,
          ),
          [],
        );
      const first = addresses[0];
      if (options.all) return callback(null, addresses);
      if (!first) return callback(new Error(`no address for ${hostname}`), []);
      callback(null, first.address, first.family);
    });
  };
}
