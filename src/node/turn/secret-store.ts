/**
 * The TURN shared secret, kept in the data directory as `turn-secret` (mode 0600): made once,
 * so credentials stay valid across restarts, and an external coturn can be given the same.
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { readOrCreatePrivateFile } from '../atomic-file.ts';
import { ensureDataDir } from '../identity-store.ts';

export const TURN_SECRET_FILE = 'turn-secret';

export async function loadOrCreateTurnSecret(dataDir: string): Promise<string> {
  await ensureDataDir(dataDir);
  const file = join(dataDir, TURN_SECRET_FILE);
  const { text } = await readOrCreatePrivateFile(
    file,
    () => `${randomBytes(32).toString('base64url')}\n`,
  );
  const secret = text.trim();
  if (!secret) throw new Error(`${file} is empty: delete it to make a new secret`);
  return secret;
}
