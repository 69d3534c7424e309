/**
 * The peers a node has linked with, kept in its data directory (`known-peers.json`): each
 * peer's signed record as it was when the link opened, the most recent MAX_KNOWN_PEERS. A
 * record is self-certifying (its key hashes to the ID, the ID makes the mesh IPv6, the key
 * signs the name), so the file is checked again on every load and a record that fails is
 * refused, never believed. What a kept record gives is who a peer is (ID, IPv6, name) with
 * no gateway reachable; a live link still needs the peer's current record and certificate.
 */
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as z from 'zod/mini';
import { type NodeId, type VerifiedRecord, verifyNodeRecord } from '../core/identity/index.ts';
import { writeFileAtomically } from './atomic-file.ts';

export const KNOWN_PEERS_FILE = 'known-peers.json';
export const MAX_KNOWN_PEERS = 256;

const fileSchema = z.object({
  peers: z
    .array(
      z.object({
        record: z.string().check(z.maxLength(8192)),
        linkedAt: z.number(),
      }),
    )
    .check(z.maxLength(MAX_KNOWN_PEERS)),
});

export interface KnownPeer {
  readonly id: NodeId;
  readonly ip6: string;
  readonly name?: string;
  /** When a link with it last opened (ms since the epoch). */
  readonly linkedAt: number;
  /** Its signed record (JWS) as it was then. */
  readonly record: string;
}

/**
 * The kept peers, the most recently linked first. A missing file is none; a file that is not
 * a list of records, and each record that fails its checks, is reported to `refuse` and left
 * out.
 */
export async function loadKnownPeers(
  dataDir: string,
  refuse: (message: string) => void,
): Promise<KnownPeer[]> {
  const file = join(dataDir, KNOWN_PEERS_FILE);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT')
      refuse(`cannot read ${file}: ${(err as Error).message}`);
    return [];
  }
  let parsed: z.infer<typeof fileSchema>;
  try {
    parsed = z.parse(fileSchema, JSON.parse(text));
  } catch {
    refuse(`${file} is not a list of peers' records (at most ${MAX_KNOWN_PEERS}): ignored`);
    return [];
  }
  const peers: KnownPeer[] = [];
  for (const { record, linkedAt } of parsed.peers) {
    try {
      // Checked as of when it was kept: it was valid then; the signature, ID and address
      // must hold whatever the date.
      const verified = await verifyNodeRecord(record, { nowS: Math.floor(linkedAt / 1000) });
      if (peers.some((p) => p.id === verified.id)) continue;
      peers.push(knownPeer(verified, linkedAt));
    } catch (err) {
      refuse(`${file}: refused a peer's record that does not verify (${(err as Error).message})`);
    }
  }
  return peers.sort((a, b) => b.linkedAt - a.linkedAt);
}

function knownPeer(record: VerifiedRecord, linkedAt: number): KnownPeer {
  return {
    id: record.id,
    ip6: record.ip6,
    ...(record.name !== undefined ? { name: record.name } : {}),
    linkedAt,
    record: record.jws,
  };
}

/** Adds (or refreshes) a peer just linked with, keeping the MAX_KNOWN_PEERS most recent. */
export function withPeer(
  kept: readonly KnownPeer[],
  record: VerifiedRecord,
  linkedAt = Date.now(),
): KnownPeer[] {
  return [knownPeer(record, linkedAt), ...kept.filter((p) => p.id !== record.id)].slice(
    0,
    MAX_KNOWN_PEERS,
  );
}

export async function saveKnownPeers(dataDir: string, peers: readonly KnownPeer[]): Promise<void> {
  await mkdir(dataDir, { recursive: true });
  const file = join(dataDir, KNOWN_PEERS_FILE);
  const body = { peers: peers.map(({ record, linkedAt }) => ({ record, linkedAt })) };
  await writeFileAtomically(file, `${JSON.stringify(body, null, 2)}\n`);
}
