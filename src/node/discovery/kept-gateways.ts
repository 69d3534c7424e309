/**
 * The LAN gateways a node has heard, kept in its data directory (`lan-gateways.json`), so that
 * a node restarted while no announcement reaches it still tries the gateways it knew (each
 * still has to prove its ID on the session).
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as z from 'zod/mini';
import type { NodeId } from '../../core/identity/index.ts';
import type { LocatedGateway } from '../../core/node/gateway-client.ts';
import { writeFileAtomically } from '../atomic-file.ts';

export const LAN_GATEWAYS_FILE = 'lan-gateways.json';
const MAX_KEPT = 16;

const keptSchema = z.object({
  gateways: z
    .array(
      z.object({
        id: z.string().check(z.length(52)),
        url: z.string().check(z.maxLength(200)),
        seenAt: z.number(),
      }),
    )
    .check(z.maxLength(MAX_KEPT)),
});

export interface KeptGateway extends LocatedGateway {
  readonly id: NodeId;
  /** When it was last heard (ms since the epoch). */
  readonly seenAt: number;
}

/** The kept gateways, the last heard first; none if the file is missing or bad. */
export async function loadLanGateways(dataDir: string): Promise<KeptGateway[]> {
  try {
    const kept = z.safeParse(
      keptSchema,
      JSON.parse(await readFile(join(dataDir, LAN_GATEWAYS_FILE), 'utf8')),
    );
    if (!kept.success) return [];
    return (kept.data.gateways as KeptGateway[]).sort((a, b) => b.seenAt - a.seenAt);
  } catch {
    return [];
  }
}

/** Adds (or refreshes) one gateway, keeping the MAX_KEPT last heard. */
export function withGateway(kept: readonly KeptGateway[], heard: KeptGateway): KeptGateway[] {
  return [heard, ...kept.filter((k) => k.id !== heard.id)].slice(0, MAX_KEPT);
}

export async function saveLanGateways(
  dataDir: string,
  gateways: readonly KeptGateway[],
): Promise<void> {
  const file = join(dataDir, LAN_GATEWAYS_FILE);
  await writeFileAtomically(file, `${JSON.stringify({ gateways }, null, 2)}\n`);
}
