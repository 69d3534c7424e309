/**
 * The TURN shared secret, kept in the data directory as `turn-secret` (mode 0600): made once,
 * so credentials stay valid across restarts, and an external coturn can be given the same.
 */
import { randomBytes } from 'node:crypto';
import { chmod, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ensureDataDir } from '../identity-store.ts';

export const TURN_SECRET_FILE = 'turn-secret';

export async function loadOrCreateTurnSecret(dataDir: string): Promise<string> {
  await ensureDataDir(dataDir);
  const file = join(dataDir, TURN_SECRET_FILE);
  let secret: string;
  try {
    secret = (await readFile(file, 'utf8')).trim();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    secret = randomBytes(32).toString('base64url');
    // 'wx' never overwrites: if another process made the secret meanwhile, use that one.
    try {
      await writeFile(file, `${secret}\n`, { mode: 0o600, flag: 'wx' });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      secret = (await readFile(file, 'utf8')).trim();
    }
  }
  if (!secret) throw new Error(`${file} is empty: delete it to make a new secret`);
  if ((await stat(file)).mode & 0o077) await chmod(file, 0o600);
  return secret;
}
