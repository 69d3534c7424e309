/**
 * The signaling messages (DESIGN §2): one schema for every transport (the `ctl` data
 * channel, HTTP bodies) and every party (gateway, browser, CLI). Everything received is
 * parsed here first; anything that does not parse gets an `error` reply and is dropped.
 */
import * as z from 'zod/mini';
import { maxString, type ParseResult, parseValue, type Schema } from './schema.ts';

export { type ParseResult, parseValue, type Schema } from './schema.ts';

/** Longest message we accept on `ctl` or as an HTTP body (an SDP is a few KiB). */
export const MAX_MESSAGE_BYTES = 64 * 1024;

const sdp = z.string().check(z.minLength(10), z.maxLength(32 * 1024));
const record = z.string().check(z.minLength(10), z.maxLength(8192));
/** Chosen by the caller (16 random bytes, base64url), so candidates can trickle at once. */
const dialId = z.string().check(z.regex(/^[A-Za-z0-9_-]{16,64}$/));
/** A node ID (base32) or a mesh IPv6 address. */
const peerAddress = z.string().check(z.minLength(2), z.maxLength(64));

export const iceCandidateSchema = z.object({
  candidate: maxString(1024),
  sdpMid: z.optional(z.nullable(maxString(64))),
  sdpMLineIndex: z.optional(z.nullable(z.int().check(z.minimum(0), z.maximum(64)))),
});
export type IceCandidate = z.infer<typeof iceCandidateSchema>;

export const DIAL_ERROR_CODES = [
  'not-found', // no node with that ID or address ever registered here
  'offline', // registered, but no session and no way to wake it
  'declined', // the callee said no
  'timeout', // nobody answered in time
  'identity', // a record or fingerprint did not check out
  'busy', // the callee has too many pending calls
  'rate-limited',
  'invalid', // the request itself was bad
  'cancelled', // the caller gave up
  'gateway', // the gateway could not route the call
] as const;
export type DialErrorCode = (typeof DIAL_ERROR_CODES)[number];

/** Messages a node sends to its gateway on `ctl`. */
export const nodeToGatewaySchema = z.discriminatedUnion('t', [
  z.object({ t: z.literal('ping'), n: z.int() }),
  z.object({ t: z.literal('dial'), dialId, to: peerAddress, offer: sdp, record }),
  z.object({ t: z.literal('candidate'), dialId, candidate: z.nullable(iceCandidateSchema) }),
  z.object({ t: z.literal('answer'), dialId, answer: sdp, record }),
  z.object({
    t: z.literal('reject'),
    dialId,
    reason: z.enum(['declined', 'identity', 'busy']),
    message: z.optional(maxString(512)),
  }),
  z.object({ t: z.literal('cancel'), dialId }),
]);
export type NodeToGateway = z.infer<typeof nodeToGatewaySchema>;

/** Messages a gateway sends to a node on `ctl`. */
export const gatewayToNodeSchema = z.discriminatedUnion('t', [
  z.object({ t: z.literal('pong'), n: z.int() }),
  z.object({ t: z.literal('ringing'), dialId }),
  /** The callee has no session: the gateway is waking it by push; the dial stays pending. */
  z.object({ t: z.literal('waking'), dialId }),
  z.object({
    t: z.literal('incoming'),
    dialId,
    from: maxString(64),
    offer: sdp,
    record,
    /** The caller signals over HTTP and gets no trickled candidates: answer with all of them. */
    gathered: z.optional(z.boolean()),
  }),
  z.object({ t: z.literal('candidate'), dialId, candidate: z.nullable(iceCandidateSchema) }),
  z.object({ t: z.literal('answer'), dialId, answer: sdp, record }),
  z.object({
    t: z.literal('dial-failed'),
    dialId,
    code: z.enum(DIAL_ERROR_CODES),
    message: maxString(512),
  }),
  z.object({ t: z.literal('cancel'), dialId, reason: maxString(512) }),
  z.object({ t: z.literal('error'), code: maxString(64), message: maxString(512) }),
]);
export type GatewayToNode = z.infer<typeof gatewayToNodeSchema>;

/** POST /v1/connect */
export const connectRequestSchema = z.object({ offer: sdp, record });
export type ConnectRequest = z.infer<typeof connectRequestSchema>;
export const iceServerSchema = z.object({
  urls: z.union([z.string(), z.array(z.string())]),
  username: z.optional(z.string()),
  credential: z.optional(z.string()),
});
export type IceServerConfig = z.infer<typeof iceServerSchema>;
export const connectResponseSchema = z.object({
  answer: sdp,
  record,
  gateway: z.string(),
  iceServers: z.array(iceServerSchema),
});
export type ConnectResponse = z.infer<typeof connectResponseSchema>;

/** POST /v1/dial: a fully gathered offer; the reply waits for the answer (bounded). */
export const httpDialRequestSchema = z.object({ to: peerAddress, offer: sdp, record });
export type HttpDialRequest = z.infer<typeof httpDialRequestSchema>;
export const httpDialResponseSchema = z.object({ dialId, answer: sdp, record });
export type HttpDialResponse = z.infer<typeof httpDialResponseSchema>;

/** A Web Push subscription as PushSubscription.toJSON() gives it (RFC 8030, RFC 8291 keys). */
export const pushSubscriptionSchema = z.object({
  endpoint: z.string().check(z.minLength(8), z.maxLength(2048)),
  keys: z.object({
    /** The browser's ECDH P-256 public key: 65 bytes, base64url (87 characters). */
    p256dh: z.string().check(z.regex(/^[A-Za-z0-9_-]{86,88}={0,2}$/)),
    /** The 16-byte authentication secret, base64url. */
    auth: z.string().check(z.regex(/^[A-Za-z0-9_-]{22,24}={0,2}$/)),
  }),
});
export type PushSubscriptionJson = z.infer<typeof pushSubscriptionSchema>;

/** POST /v1/register: a node's record and its push subscription (null removes it). */
export const registerRequestSchema = z.object({
  record,
  push: z.nullable(pushSubscriptionSchema),
});
export type RegisterRequest = z.infer<typeof registerRequestSchema>;
export const registerResponseSchema = z.object({
  id: z.string(),
  push: z.boolean(),
  expiresAt: z.number(),
  /** STUN/TURN with credentials for this node, as a session gets (HTTPS-only nodes need them). */
  iceServers: z.optional(z.array(iceServerSchema).check(z.maxLength(8))),
});
export type RegisterResponse = z.infer<typeof registerResponseSchema>;

/** GET /v1/dials/:id: the call waiting for the signed node, with the caller's candidates so far. */
export const pendingDialResponseSchema = z.object({
  dialId,
  from: maxString(64),
  offer: sdp,
  record,
  candidates: z.array(iceCandidateSchema).check(z.maxLength(64)),
});
export type PendingDialResponse = z.infer<typeof pendingDialResponseSchema>;
/**
 * GET /v1/dials?wait=25s (HTTPS-only accept, DESIGN §2): the calls that reached the signed
 * node since its last poll, at once or as soon as one comes within `wait`. `replaced`: a newer
 * poll of the same node took over this one (one poll per node).
 */
export const pollDialsResponseSchema = z.object({
  dials: z.array(pendingDialResponseSchema).check(z.maxLength(64)),
  replaced: z.boolean(),
});
export type PollDialsResponse = z.infer<typeof pollDialsResponseSchema>;
/** POST /v1/dials/:id/answer: a fully gathered answer (no channel to trickle on). */
export const dialAnswerRequestSchema = z.object({ answer: sdp, record });
export type DialAnswerRequest = z.infer<typeof dialAnswerRequestSchema>;
/** POST /v1/dials/:id/reject */
export const dialRejectRequestSchema = z.object({
  reason: z.enum(['declined', 'identity', 'busy']),
  message: z.optional(maxString(512)),
});
export type DialRejectRequest = z.infer<typeof dialRejectRequestSchema>;
export const dialIdSchema = dialId;

/** What a push carries to the service worker (encrypted end to end; RFC 8291). */
export const pushPayloadSchema = z.object({
  t: z.literal('incoming'),
  dialId,
  from: maxString(64),
  /** The caller's name from its signed record, if it has one. */
  name: z.optional(maxString(128)),
  /** When the gateway sent it (ms since epoch): a late push shows as missed. */
  sentAt: z.number(),
  /** When the gateway stops waiting for an answer (ms since epoch). */
  expiresAt: z.number(),
});
export type PushPayload = z.infer<typeof pushPayloadSchema>;

/** GET /v1/info */
export const gatewayInfoSchema = z.object({
  id: z.string(),
  ip6: z.string(),
  version: z.string(),
  /** The gateway's VAPID public key (RFC 8292): the applicationServerKey to subscribe with. */
  vapidPublicKey: z.string(),
  /** Cluster mode: the cluster's live gateways; a node fails over between them. */
  gateways: z.optional(
    z.array(z.object({ id: maxString(64), url: maxString(512) })).check(z.maxLength(64)),
  ),
  /** Federation: the gateways linked to this one, and those reachable through them. */
  federation: z.optional(
    z.object({
      peers: z.array(maxString(64)).check(z.maxLength(64)),
      gateways: z.array(z.object({ id: maxString(64), hops: z.int() })).check(z.maxLength(1024)),
    }),
  ),
});
export type GatewayInfo = z.infer<typeof gatewayInfoSchema>;

export const errorBodySchema = z.object({
  error: z.object({ code: z.string(), message: z.string() }),
});
export type ErrorBody = z.infer<typeof errorBodySchema>;

/** Parses JSON text against a schema; never throws. */
export function parseMessage<T>(schema: Schema<T>, text: string): ParseResult<T> {
  if (text.length > MAX_MESSAGE_BYTES)
    return { ok: false, message: `message larger than ${MAX_MESSAGE_BYTES} bytes` };
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return { ok: false, message: 'message is not JSON' };
  }
  return parseValue(schema, json);
}
