/**
 * The cluster's gateways as a CLI node last learned them (cluster mode), in the data
 * directory, so that a node started while its `--gateway` is down reaches another of the
 * cluster. Kept with the gateway they were learned through: another `--gateway` ignores them.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as z from 'zod/mini';
import { parseValue } from '../core/protocol/schema.ts';
import { writeFileAtomically } from './atomic-file.ts';

export const GATEWAYS_FILE = 'gateways.json';

const keptSchema = z.object({
  gateway: z.string(),
  gateways: z.array(z.string()).check(z.maxLength(64)),
});

/** The gateways kept for `gateway`, or none (a missing or unreadable file costs only failover). */
export async function loadKnownGateways(dataDir: string, gateway: string): Promise<string[]> {
  try {
    const kept = parseValue(
      keptSchema,
      JSON.parse(await readFile(join(dataDir, GATEWAYS_FILE), 'utf8')),
    );
    return kept.ok && kept.value.gateway === gateway ? kept.value.gateways : [];
  } catch {
    return [];
  }
}

export async function saveKnownGateways(
  dataDir: string,
  gateway: string,
  gateways: readonly string[],
): Promise<void> {
  const file = join(dataDir, GATEWAYS_FILE);
  await writeFileAtomically(file, `${JSON.stringify({ gateway, gateways }, null, 2)}\n`);
}
