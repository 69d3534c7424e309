/**
 * A small Web Push service for tests (TESTING.md, Browsers): an HTTP endpoint on loopback
 * whose subscriptions it made itself (a P-256 key pair and a 16-byte auth secret each). It
 * checks every push as a push service must (the VAPID token of RFC 8292: ES256 signature
 * with the key in `k=`, audience, expiry), decrypts it itself (RFC 8291 over RFC 8188
 * aes128gcm, with node:crypto alone: ECDH, HKDF, AES-128-GCM), and hands the plaintext to
 * the subscriber, for a browser its service worker through CDP
 * `ServiceWorker.deliverPushMessage`. Only the browser's own decryption is left out.
 */
import {
  createDecipheriv,
  createECDH,
  createPublicKey,
  hkdfSync,
  randomBytes,
  verify,
} from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { CDPSession } from 'playwright-core';

export interface TestSubscription {
  endpoint: string;
  keys: { p256dh: string; auth: string };
}

/** A push as received, checked and decrypted. */
export interface ReceivedPush {
  endpoint: string;
  /** The VAPID public key (`k=`), base64url. */
  vapidKey: string;
  claims: { aud: string; exp: number; sub: string };
  ttl: number;
  urgency: string | undefined;
  plaintext: string;
  receivedAt: number;
  /** What the push service answered. */
  status: number;
}

interface Subscriber {
  subscription: TestSubscription;
  ecdh: ReturnType<typeof createECDH>;
  auth: Buffer;
  /** Where accepted pushes go (a service worker, a test). */
  deliver?: (plaintext: string) => Promise<void>;
  /** Answer with this status instead of accepting (410: the subscription is gone). */
  answerStatus?: number;
}

const b64url = (bytes: Uint8Array): string => Buffer.from(bytes).toString('base64url');

export class PushService {
  readonly received: ReceivedPush[] = [];
  /** Pushes refused, with the reason (a test fails on any it did not expect). */
  readonly refused: string[] = [];
  readonly deliveryErrors: string[] = [];
  private readonly subscribers = new Map<string, Subscriber>();
  private readonly waiters = new Set<() => void>();

  private constructor(
    private readonly server: Server,
    readonly origin: string,
  ) {}

  static async start(): Promise<PushService> {
    let service: PushService | undefined;
    const server = createServer((req, res) => {
      service?.handle(req, res).catch((err: unknown) => {
        service?.refused.push(String(err));
        if (!res.headersSent) res.writeHead(500).end();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    service = new PushService(server, `http://127.0.0.1:${port}`);
    return service;
  }

  /** A new subscription: keys made here, as a browser's push service would. */
  subscribe(): TestSubscription {
    const ecdh = createECDH('prime256v1');
    ecdh.generateKeys();
    const auth = randomBytes(16);
    const token = randomBytes(12).toString('base64url');
    const subscription: TestSubscription = {
      endpoint: `${this.origin}/push/${token}`,
      keys: { p256dh: b64url(ecdh.getPublicKey()), auth: b64url(auth) },
    };
    this.subscribers.set(token, { subscription, ecdh, auth });
    return subscription;
  }

  /** Sends this subscription's pushes to `deliver` (for a browser: deliverToServiceWorker). */
  route(subscription: TestSubscription, deliver: (plaintext: string) => Promise<void>): void {
    this.subscriber(subscription).deliver = deliver;
  }

  /** Answers this subscription's pushes with `status` (410: gone) instead of delivering. */
  answerWith(subscription: TestSubscription, status: number): void {
    this.subscriber(subscription).answerStatus = status;
  }

  /** Resolves with the next push (after `after` of them) for this subscription. */
  async nextPush(subscription: TestSubscription, after = 0, timeoutMs = 30_000) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const pushes = this.received.filter((p) => p.endpoint === subscription.endpoint);
      const push = pushes[after];
      if (push) return push;
      if (this.refused.length) throw new Error(`push refused: ${this.refused.join('; ')}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no push for ${subscription.endpoint} in ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.add(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private subscriber(subscription: TestSubscription): Subscriber {
    const token = subscription.endpoint.split('/').pop() ?? '';
    const found = this.subscribers.get(token);
    if (!found)
      throw new Error(`not a subscription of this push service: ${subscription.endpoint}`);
    return found;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const refuse = (status: number, why: string) => {
      this.refused.push(why);
      res.writeHead(status, { 'content-type': 'text/plain' }).end(why);
    };
    const token = /^\/push\/([A-Za-z0-9_-]+)$/.exec(req.url ?? '')?.[1];
    const subscriber = token ? this.subscribers.get(token) : undefined;
    if (req.method !== 'POST' || !subscriber) return refuse(404, `no subscription at ${req.url}`);
    const chunks: Buffer[] = [];
    for await (const chunk of req as AsyncIterable<Buffer>) chunks.push(chunk);
    const body = Buffer.concat(chunks);

    const vapid = this.checkVapid(req.headers.authorization);
    if (typeof vapid === 'string') return refuse(401, vapid);
    const ttl = Number(req.headers.ttl);
    if (!Number.isInteger(ttl) || ttl < 0) return refuse(400, 'TTL header missing or bad');
    if (req.headers['content-encoding'] !== 'aes128gcm')
      return refuse(415, `Content-Encoding ${req.headers['content-encoding']} is not aes128gcm`);
    let plaintext: string;
    try {
      plaintext = decrypt(body, subscriber.ecdh, subscriber.auth);
    } catch (err) {
      return refuse(400, `cannot decrypt: ${(err as Error).message}`);
    }
    const status = subscriber.answerStatus ?? 201;
    this.received.push({
      endpoint: subscriber.subscription.endpoint,
      vapidKey: vapid.key,
      claims: vapid.claims,
      ttl,
      urgency: req.headers.urgency as string | undefined,
      plaintext,
      receivedAt: Date.now(),
      status,
    });
    res.writeHead(status).end();
    for (const wake of this.waiters) wake();
    this.waiters.clear();
    // Accepted: deliver after answering, as a push service does.
    if (status === 201 && subscriber.deliver)
      await subscriber.deliver(plaintext).catch((err: unknown) => {
        this.deliveryErrors.push(String(err));
      });
  }

  /** RFC 8292: `vapid t=<JWT>, k=<key>`, ES256 by that key, for this origin, not expired. */
  private checkVapid(
    header: string | undefined,
  ): { key: string; claims: ReceivedPush['claims'] } | string {
    const m = /^vapid\s+t=([^,\s]+)\s*,\s*k=([A-Za-z0-9_-]+)$/.exec(header ?? '');
    if (!m?.[1] || !m[2]) return `Authorization is not "vapid t=…, k=…": ${header}`;
    const [token, key] = [m[1], m[2]];
    const raw = Buffer.from(key, 'base64url');
    if (raw.length !== 65 || raw[0] !== 4) return 'k= is not an uncompressed P-256 point';
    const [head, payload, signature] = token.split('.');
    if (!head || !payload || !signature) return 'the token is not a JWS';
    const header64 = JSON.parse(Buffer.from(head, 'base64url').toString()) as { alg?: string };
    if (header64.alg !== 'ES256') return `the token is signed with ${header64.alg}, not ES256`;
    const publicKey = createPublicKey({
      key: { kty: 'EC', crv: 'P-256', x: b64url(raw.subarray(1, 33)), y: b64url(raw.subarray(33)) },
      format: 'jwk',
    });
    const signed = verify(
      'sha256',
      Buffer.from(`${head}.${payload}`),
      { key: publicKey, dsaEncoding: 'ieee-p1363' },
      Buffer.from(signature, 'base64url'),
    );
    if (!signed) return 'the token signature does not check with k=';
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString()) as Partial<
      ReceivedPush['claims']
    >;
    const now = Math.floor(Date.now() / 1000);
    if (claims.aud !== this.origin) return `the token is for ${claims.aud}, not ${this.origin}`;
    if (typeof claims.exp !== 'number' || claims.exp <= now || claims.exp > now + 24 * 3600)
      return `the token expiry ${claims.exp} is not within 24 hours`;
    if (typeof claims.sub !== 'string' || !/^(mailto:|https:)/.test(claims.sub))
      return `the token subject ${claims.sub} is not a mailto: or https: URL`;
    return { key, claims: { aud: claims.aud, exp: claims.exp, sub: claims.sub } };
  }
}

const hkdf = (ikm: Buffer, salt: Buffer, info: Buffer | string, length: number): Buffer =>
  Buffer.from(hkdfSync('sha256', ikm, salt, Buffer.from(info), length));

/**
 * RFC 8291 §3.4 over RFC 8188: header salt(16) | rs(4) | idlen(1) | keyid (the sender's
 * ephemeral public key), then records of rs bytes, each AES-128-GCM with its own nonce.
 */
export function decrypt(body: Buffer, ecdh: ReturnType<typeof createECDH>, auth: Buffer): string {
  if (body.length < 21) throw new Error('shorter than the aes128gcm header');
  const salt = body.subarray(0, 16);
  const recordSize = body.readUInt32BE(16);
  const idLength = body[20] ?? 0;
  const senderKey = body.subarray(21, 21 + idLength);
  if (idLength !== 65) throw new Error(`keyid is ${idLength} bytes, not a P-256 point`);
  if (recordSize < 18) throw new Error(`record size ${recordSize} is too small`);
  const secret = ecdh.computeSecret(senderKey);
  const keyInfo = Buffer.concat([Buffer.from('WebPush: info\0'), ecdh.getPublicKey(), senderKey]);
  const ikm = hkdf(secret, auth, keyInfo, 32);
  const key = hkdf(ikm, salt, 'Content-Encoding: aes128gcm\0', 16);
  const baseNonce = hkdf(ikm, salt, 'Content-Encoding: nonce\0', 12);
  const ciphertext = body.subarray(21 + idLength);
  const parts: Buffer[] = [];
  for (let offset = 0, seq = 0; offset < ciphertext.length; offset += recordSize, seq++) {
    const record = ciphertext.subarray(offset, offset + recordSize);
    if (record.length < 17) throw new Error('a record is shorter than its tag');
    const nonce = Buffer.from(baseNonce);
    // The record sequence number XORed into the nonce's low bytes (far fewer than 2³² records).
    nonce.writeUInt32BE((nonce.readUInt32BE(8) ^ seq) >>> 0, 8);
    const decipher = createDecipheriv('aes-128-gcm', key, nonce);
    decipher.setAuthTag(record.subarray(-16));
    const padded = Buffer.concat([decipher.update(record.subarray(0, -16)), decipher.final()]);
    // Padding: a delimiter (2 in the last record, 1 before it), then zeros.
    let end = padded.length - 1;
    while (end >= 0 && padded[end] === 0) end--;
    const last = offset + recordSize >= ciphertext.length;
    if (padded[end] !== (last ? 2 : 1)) throw new Error(`record ${seq} has a bad delimiter`);
    parts.push(padded.subarray(0, end));
  }
  return Buffer.concat(parts).toString('utf8');
}

/**
 * Delivers pushes to the service worker registered for `origin` in the browser context of
 * `cdp` (any page of that context), as the browser's push service would.
 */
export async function deliverToServiceWorker(
  cdp: CDPSession,
  origin: string,
): Promise<(plaintext: string) => Promise<void>> {
  const registrations = new Map<string, string>();
  cdp.on('ServiceWorker.workerRegistrationUpdated', (event) => {
    for (const r of event.registrations)
      if (r.isDeleted) registrations.delete(r.scopeURL);
      else registrations.set(r.scopeURL, r.registrationId);
  });
  await cdp.send('ServiceWorker.enable');
  const deadline = Date.now() + 5000;
  let registrationId: string | undefined;
  while (!registrationId) {
    registrationId = registrations.get(`${origin}/`);
    if (registrationId) break;
    if (Date.now() > deadline) throw new Error(`no service worker registered for ${origin}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const id = registrationId;
  return async (plaintext) => {
    await cdp.send('ServiceWorker.deliverPushMessage', {
      origin,
      registrationId: id,
      data: plaintext,
    });
  };
}

/**
 * Stands in for pushManager.subscribe in a page (tests only): incognito contexts refuse
 * push and an offline subscribe hangs (DESIGN §7), so pages get the push service's own
 * subscription. Runs in the page (addInitScript): self-contained.
 */
export function standInPushManager(subscription: TestSubscription): void {
  type StandIn = {
    endpoint: string;
    expirationTime: null;
    options: { userVisibleOnly: boolean; applicationServerKey: ArrayBuffer | null };
    getKey(name: string): ArrayBuffer | null;
    toJSON(): object;
    unsubscribe(): Promise<boolean>;
  };
  let current: StandIn | null = null;
  const bytes = (text: string): ArrayBuffer => {
    const binary = atob(text.replace(/-/g, '+').replace(/_/g, '/'));
    return Uint8Array.from(binary, (c) => c.charCodeAt(0)).buffer;
  };
  const copy = (key: BufferSource | string | null | undefined): ArrayBuffer | null => {
    if (key == null) return null;
    if (typeof key === 'string') return bytes(key);
    const view = ArrayBuffer.isView(key)
      ? new Uint8Array(key.buffer, key.byteOffset, key.byteLength)
      : new Uint8Array(key);
    return view.slice().buffer;
  };
  const proto = PushManager.prototype as unknown as Record<string, unknown>;
  proto.subscribe = async (options?: PushSubscriptionOptionsInit) => {
    const applicationServerKey = copy(options?.applicationServerKey);
    current = {
      endpoint: subscription.endpoint,
      expirationTime: null,
      options: { userVisibleOnly: options?.userVisibleOnly ?? false, applicationServerKey },
      getKey: (name) =>
        name === 'p256dh' || name === 'auth' ? bytes(subscription.keys[name]) : null,
      toJSON: () => ({
        endpoint: subscription.endpoint,
        expirationTime: null,
        keys: subscription.keys,
      }),
      unsubscribe: async () => {
        current = null;
        return true;
      },
    };
    return current;
  };
  proto.getSubscription = async () => current;
  proto.permissionState = async () => 'granted';
}
