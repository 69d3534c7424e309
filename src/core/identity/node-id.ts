/**
 * Node ID and mesh IPv6 address (DESIGN §1).
 *
 *   ID   = SHA-256(65-byte uncompressed P-256 public key), base32 text (52 chars)
 *   IPv6 = 0xfd || first 15 bytes of the ID: a ULA carrying 120 bits of the hash
 */
import { decodeBase32, encodeBase32 } from './base32.ts';
import { IdentityError } from './errors.ts';
import { sha256 } from './identity-crypto.ts';

export const NODE_ID_BYTES = 32;
export const NODE_ID_TEXT_LENGTH = 52;
export const RAW_PUBLIC_KEY_BYTES = 65;
const MESH_PREFIX = 0xfd;

/** A node ID in its canonical text form (lower-case base32). */
export type NodeId = string & { readonly __brand: 'NodeId' };

export function assertRawPublicKey(raw: Uint8Array): void {
  if (raw.length !== RAW_PUBLIC_KEY_BYTES || raw[0] !== 0x04) {
    throw new IdentityError('bad-key', 'a node key must be a 65-byte uncompressed P-256 point');
  }
}

export async function nodeIdBytes(publicKeyRaw: Uint8Array): Promise<Uint8Array> {
  assertRawPublicKey(publicKeyRaw);
  return sha256(publicKeyRaw);
}

export async function nodeIdFromPublicKey(publicKeyRaw: Uint8Array): Promise<NodeId> {
  return encodeBase32(await nodeIdBytes(publicKeyRaw)) as NodeId;
}

/** Parses an ID in either case; undefined when it is not 32 bytes of base32. */
export function parseNodeId(text: string): NodeId | undefined {
  const trimmed = text.trim();
  if (trimmed.length !== NODE_ID_TEXT_LENGTH) return undefined;
  const bytes = decodeBase32(trimmed);
  if (!bytes || bytes.length !== NODE_ID_BYTES) return undefined;
  return encodeBase32(bytes) as NodeId;
}

/** A peer as a person names it to dial: by node ID, or by mesh IPv6 (the gateway resolves it). */
export type PeerName = { readonly id: NodeId } | { readonly ip6: string };

/** Reads a peer's name; undefined when the text is neither a node ID nor an IPv6 address. */
export function parsePeerName(text: string): PeerName | undefined {
  const id = parseNodeId(text);
  if (id) return { id };
  const ip6 = text.trim();
  return parseIp6(ip6) ? { ip6 } : undefined;
}

export function nodeIdToBytes(id: NodeId): Uint8Array {
  const bytes = decodeBase32(id);
  if (!bytes || bytes.length !== NODE_ID_BYTES) throw new TypeError(`not a node ID: ${id}`);
  return bytes;
}

/** The 16 bytes of a node's mesh IPv6 address. */
export function meshIp6Bytes(id: NodeId): Uint8Array {
  const out = new Uint8Array(16);
  out[0] = MESH_PREFIX;
  out.set(nodeIdToBytes(id).subarray(0, 15), 1);
  return out;
}

export function meshIp6(id: NodeId): string {
  return formatIp6(meshIp6Bytes(id));
}

/** RFC 5952 text: lower case, no leading zeros, the longest run (≥2) of zero groups as `::`. */
export function formatIp6(bytes: Uint8Array): string {
  if (bytes.length !== 16) throw new TypeError('an IPv6 address has 16 bytes');
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i] ?? 0) << 8) | (bytes[i + 1] ?? 0));
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  const head = hex.slice(0, bestStart).join(':');
  const tail = hex.slice(bestStart + bestLength).join(':');
  return `${head}::${tail}`;
}

/** Parses IPv6 text (full or `::`-compressed, no zone, no embedded IPv4); undefined if invalid. */
export function parseIp6(text: string): Uint8Array | undefined {
  const t = text
    .trim()
    .toLowerCase()
    .replace(/^\[|\]$/g, '');
  const halves = t.split('::');
  if (halves.length > 2) return undefined;
  const parse = (part: string): number[] | undefined => {
    if (part === '') return [];
    const out: number[] = [];
    for (const g of part.split(':')) {
      if (!/^[0-9a-f]{1,4}$/.test(g)) return undefined;
      out.push(Number.parseInt(g, 16));
    }
    return out;
  };
  const head = parse(halves[0] ?? '');
  const tail = halves.length === 2 ? parse(halves[1] ?? '') : [];
  if (!head || !tail) return undefined;
  const missing = 8 - head.length - tail.length;
  if (halves.length === 1 ? missing !== 0 : missing < 1) return undefined;
  const groups = [
    ...head,
    ...new Array<number>(halves.length === 2 ? missing : 0).fill(0),
    ...tail,
  ];
  const out = new Uint8Array(16);
  groups.forEach((g, i) => {
    out[2 * i] = g >> 8;
    out[2 * i + 1] = g & 0xff;
  });
  return out;
}

/** True when `ip6` is the mesh address that `id` derives (any valid text form). */
export function isMeshIp6Of(id: NodeId, ip6: string): boolean {
  const bytes = parseIp6(ip6);
  if (!bytes) return false;
  const expected = meshIp6Bytes(id);
  return bytes.every((b, i) => b === expected[i]);
}

/**
 * The 15 ID bytes an IPv6 address carries, for finding a node dialed by address;
 * undefined when the text is not a mesh (fd00::/8) address.
 */
export function idPrefixFromMeshIp6(ip6: string): Uint8Array | undefined {
  const bytes = parseIp6(ip6);
  if (!bytes || bytes[0] !== MESH_PREFIX) return undefined;
  return bytes.subarray(1);
}
