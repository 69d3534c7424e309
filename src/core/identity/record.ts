/**
 * Node records (DESIGN §1): a compact JWS, signed by the node key, binding the node ID
 * to the DTLS certificate(s) it uses. Peers believe a record only when every check passes.
 */
import * as z from 'zod/mini';
import { parseValue } from '../protocol/schema.ts';
import { decodeBase64url, encodeBase64url } from './base64url.ts';
import { formatFingerprint, isFingerprint } from './certificate.ts';
import { IdentityError } from './errors.ts';
import { checkJwsSignature, decodeJws, signJws } from './jws.ts';
import { LruMap } from './lru.ts';
import { isMeshIp6Of, type NodeId, nodeIdFromPublicKey } from './node-id.ts';
import type { NodeIdentity } from './node-key.ts';

export const RECORD_VERSION = 1;
/** Default record life; a node signs a fresh one whenever it connects or dials. */
export const RECORD_LIFETIME_S = 24 * 60 * 60;
/**
 * The longest validity a record may claim (`exp - iat`). A record is a replayable
 * statement: one signed for a century would bind a stolen or retired certificate forever.
 */
export const MAX_RECORD_LIFETIME_S = 3 * 24 * 60 * 60;
/** Tolerated clock difference between nodes. */
export const CLOCK_SKEW_S = 60;

const recordPayloadSchema = z.object({
  v: z.literal(RECORD_VERSION),
  id: z.string().check(z.length(52)),
  key: z.string().check(z.length(87)), // base64url of 65 bytes
  ip6: z.string().check(z.maxLength(45)),
  fp: z
    .array(z.string().check(z.refine(isFingerprint, 'not a "sha-256 AB:CD:…" fingerprint')))
    .check(z.minLength(1), z.maxLength(4)),
  iat: z.int(),
  exp: z.int(),
  name: z.optional(z.string().check(z.maxLength(64))),
});

export type NodeRecordPayload = z.infer<typeof recordPayloadSchema>;

/** A record that passed every check. */
export interface VerifiedRecord {
  readonly jws: string;
  readonly id: NodeId;
  readonly ip6: string;
  readonly publicKey: Uint8Array;
  readonly fingerprints: readonly string[];
  readonly name?: string;
  readonly iat: number;
  readonly exp: number;
}

export interface CreateRecordOptions {
  fingerprints: readonly string[];
  name?: string;
  nowS?: number;
  lifetimeS?: number;
}

export async function createNodeRecord(
  identity: NodeIdentity,
  options: CreateRecordOptions,
): Promise<string> {
  const iat = options.nowS ?? Math.floor(Date.now() / 1000);
  const payload: NodeRecordPayload = {
    v: RECORD_VERSION,
    id: identity.id,
    key: encodeBase64url(identity.key.publicKey),
    ip6: identity.ip6,
    fp: options.fingerprints.map((f) => {
      const [alg = '', value = ''] = f.split(' ');
      return formatFingerprint(alg, value);
    }),
    iat,
    exp: iat + (options.lifetimeS ?? RECORD_LIFETIME_S),
    ...(options.name ? { name: options.name } : {}),
  };
  return signJws(identity.key, { typ: 'rtcmesh-record', alg: 'ES256' }, payload);
}

export interface VerifyRecordOptions {
  nowS?: number;
  /** The node we meant to reach: a valid record of any other node is refused. */
  expectedId?: NodeId;
  /** DTLS fingerprints from the SDP the record accompanies; each must be listed. */
  fingerprintsInUse?: readonly string[];
}

export async function verifyNodeRecord(
  jws: string,
  options: VerifyRecordOptions = {},
): Promise<VerifiedRecord> {
  const decoded = decodeJws(jws, 'node record');
  const parsed = parseValue(recordPayloadSchema, decoded.payload, 'node record payload');
  if (!parsed.ok) throw new IdentityError('malformed', parsed.message);
  const p = parsed.value;
  const publicKey = decodeBase64url(p.key);
  if (!publicKey) throw new IdentityError('bad-key', 'node record key is not base64url');
  await checkJwsSignature(decoded, publicKey, 'node record');

  const id = await nodeIdFromPublicKey(publicKey);
  if (id !== p.id.toLowerCase()) {
    throw new IdentityError(
      'id-mismatch',
      `node record claims ID ${p.id} but its key hashes to ${id}`,
    );
  }
  if (!isMeshIp6Of(id, p.ip6)) {
    throw new IdentityError(
      'ip6-mismatch',
      `node record address ${p.ip6} is not the mesh address of ${id}`,
    );
  }
  const record: VerifiedRecord = {
    jws,
    id,
    ip6: p.ip6,
    publicKey,
    fingerprints: p.fp,
    iat: p.iat,
    exp: p.exp,
    ...(p.name !== undefined ? { name: p.name } : {}),
  };
  checkRecordClaims(record, options);
  return record;
}

/**
 * The checks of a record that depend on when and for what it is used (its validity period,
 * the peer expected, the fingerprints in use), given a record whose signature, ID and
 * address already checked out. verifyNodeRecord runs them last.
 */
export function checkRecordClaims(record: VerifiedRecord, options: VerifyRecordOptions = {}): void {
  const { id, exp, iat } = record;
  const now = options.nowS ?? Math.floor(Date.now() / 1000);
  if (exp <= now)
    throw new IdentityError(
      'expired',
      `node record of ${id} expired at ${new Date(exp * 1000).toISOString()}`,
    );
  if (iat > now + CLOCK_SKEW_S)
    throw new IdentityError('not-yet-valid', `node record of ${id} is issued in the future`);
  if (exp - iat > MAX_RECORD_LIFETIME_S)
    throw new IdentityError(
      'lifetime-too-long',
      `node record of ${id} claims ${Math.round((exp - iat) / 86400)} days of validity; at most ${MAX_RECORD_LIFETIME_S / 86400} are accepted`,
    );
  if (options.expectedId && options.expectedId !== id) {
    throw new IdentityError(
      'wrong-peer',
      `expected node ${options.expectedId} but the record is of ${id}`,
    );
  }
  if (options.fingerprintsInUse) {
    if (options.fingerprintsInUse.length === 0) {
      throw new IdentityError(
        'fingerprint-not-listed',
        'the session description carries no DTLS fingerprint',
      );
    }
    const listed = new Set(record.fingerprints);
    for (const f of options.fingerprintsInUse) {
      if (!listed.has(f)) {
        throw new IdentityError(
          'fingerprint-not-listed',
          `DTLS fingerprint ${f} is not in the record of ${id}`,
        );
      }
    }
  }
}

/**
 * Remembers records whose signature checked out, keyed by the whole JWS text: a node keeps
 * one record until it nears expiry and sends it with every connect and dial, so a gateway
 * need not repeat the ECDSA verification (and key import, and ID hash) each time. The
 * claims (validity period, expected peer, fingerprints in use) are checked on every use.
 */
export class RecordCache {
  private readonly records: LruMap<string, VerifiedRecord>;

  constructor(maxEntries = 10_000) {
    this.records = new LruMap(maxEntries);
  }

  async verify(jws: string, options: VerifyRecordOptions = {}): Promise<VerifiedRecord> {
    const known = this.records.get(jws);
    if (known) {
      checkRecordClaims(known, options);
      return known;
    }
    const record = await verifyNodeRecord(jws, options);
    this.records.set(jws, record);
    return record;
  }

  get size(): number {
    return this.records.size;
  }
}
