/**
 * LAN discovery messages (DESIGN "The disconnected mesh"), without I/O: what goes in one
 * multicast datagram and how a received one is checked.
 *
 * - `query`: "any gateway here?" (plain text; gateways answer by announcing at once).
 * - `gateway`: a gateway says where it is: a compact JWS signed by its node key, naming its ID,
 *   key and URL. Only a hint: a node still makes its session only when the gateway proves that
 *   ID with a record matching its DTLS certificate.
 * - `candidate`: a device that may serve says it would start a gateway (signed the same way);
 *   the lowest ID goes first.
 * - `bye`: a gateway stepping down or stopping (signed): forget it now, not in seconds.
 *
 * Anything else (too long, not a JWS, a bad signature, an ID that is not its key's) is refused
 * with a reason; nothing here throws on input from the network.
 */
import * as z from 'zod/mini';
import {
  decodeBase64url,
  encodeBase64url,
  type NodeId,
  type NodeIdentity,
  nodeIdFromPublicKey,
} from '../../core/identity/index.ts';
import { checkJwsSignature, decodeJws, signJws } from '../../core/identity/jws.ts';

/** Where announcements go (IPv4 site-local, IPv6 link-local scope) and their UDP port. */
export const LAN_GROUP_V4 = '239.255.77.43';
export const LAN_GROUP_V6 = 'ff02::7274:6d';
export const LAN_PORT = 47743;
/** A datagram longer than this is not ours (ours are well under 1 KiB). */
export const MAX_DATAGRAM = 1200;

export const QUERY = 'rtcmesh-lan-query/1';

const KINDS = ['gateway', 'candidate', 'bye'] as const;
export type SignedKind = (typeof KINDS)[number];

const payloadSchema = z.object({
  v: z.literal(1),
  kind: z.enum(KINDS),
  id: z.string().check(z.length(52)),
  key: z.string().check(z.length(87)),
  /** The gateway's URL (gateway and bye only): an http(s) origin. */
  url: z.optional(z.string().check(z.maxLength(200), z.regex(/^https?:\/\/[^/?#\s]+$/))),
  iat: z.int(),
});

export type LanMessage =
  | { kind: 'query' }
  | {
      kind: SignedKind;
      id: NodeId;
      url?: string;
      /** The datagram's text: identical ones need no second signature check. */
      token: string;
    };

export type Decoded = { ok: true; message: LanMessage } | { ok: false; reason: string };

/** Signs a `gateway`, `candidate` or `bye` message (url: the gateway's origin). */
export async function signLanMessage(
  identity: NodeIdentity,
  kind: SignedKind,
  url?: string,
): Promise<string> {
  if ((kind === 'candidate') !== (url === undefined))
    throw new TypeError(`${kind} messages ${kind === 'candidate' ? 'have no' : 'need a'} url`);
  return signJws(
    identity.key,
    { typ: 'rtcmesh-lan', alg: 'ES256' },
    {
      v: 1,
      kind,
      id: identity.id,
      key: encodeBase64url(identity.key.publicKey),
      ...(url ? { url } : {}),
      iat: Math.floor(Date.now() / 1000),
    },
  );
}

/** Cheap checks only (size, shape): what a datagram claims, before its signature is checked. */
export function parseLanDatagram(datagram: Uint8Array): Decoded {
  if (datagram.length === 0 || datagram.length > MAX_DATAGRAM)
    return { ok: false, reason: `a datagram of ${datagram.length} bytes` };
  const text = Buffer.from(datagram.buffer, datagram.byteOffset, datagram.length).toString('utf8');
  if (text === QUERY) return { ok: true, message: { kind: 'query' } };
  let payload: z.infer<typeof payloadSchema>;
  try {
    const parsed = z.safeParse(payloadSchema, decodeJws(text, 'a LAN message').payload);
    if (!parsed.success)
      return { ok: false, reason: `bad payload: ${parsed.error.issues[0]?.path.join('.')}` };
    payload = parsed.data;
  } catch (err) {
    return { ok: false, reason: (err as Error).message };
  }
  if ((payload.kind === 'candidate') !== (payload.url === undefined))
    return {
      ok: false,
      reason: `a ${payload.kind} message ${payload.url ? 'with' : 'without'} url`,
    };
  return {
    ok: true,
    message: {
      kind: payload.kind,
      id: payload.id.toLowerCase() as NodeId,
      ...(payload.url ? { url: payload.url } : {}),
      token: text,
    },
  };
}

/** The signature check: the message is signed by the key it names, and the ID is that key's. */
export async function verifyLanMessage(token: string): Promise<boolean> {
  try {
    const jws = decodeJws(token, 'a LAN message');
    const payload = z.parse(payloadSchema, jws.payload);
    const key = decodeBase64url(payload.key);
    if (!key) return false;
    if ((await nodeIdFromPublicKey(key)) !== payload.id.toLowerCase()) return false;
    await checkJwsSignature(jws, key, 'a LAN message');
    return true;
  } catch {
    return false;
  }
}
