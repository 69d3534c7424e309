/** Files in a data directory, written so that a crash never leaves half of one. */
import { randomBytes } from 'node:crypto';
import { chmod, link, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';

/** A temporary file's name beside `file`, unique so that two writes at once never share it. */
const temporaryBeside = (file: string): string =>
  `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;

/**
 * Writes `text` to a temporary file beside `file`, then renames it over `file` (atomic on one
 * file system).
 */
export async function writeFileAtomically(file: string, text: string, mode = 0o644): Promise<void> {
  const temporary = temporaryBeside(file);
  try {
    await writeFile(temporary, text, { mode });
    await rename(temporary, file);
  } catch (err) {
    await rm(temporary, { force: true });
    throw err;
  }
}

/**
 * The text of a private file (mode 0600) made once, such as a key or a secret: read when it
 * exists; otherwise `make()` is written to a temporary file and linked into place, which fails
 * when another process linked its own first (then that one is read). No reader ever sees half
 * a file, and a file left readable by others is tightened to 0600.
 */
export async function readOrCreatePrivateFile(
  file: string,
  make: () => string,
): Promise<{ text: string; created: boolean }> {
  let text: string;
  let created = false;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    const candidate = make();
    const temporary = temporaryBeside(file);
    await writeFile(temporary, candidate, { mode: 0o600 });
    try {
      await placeOnce(temporary, file, candidate);
      text = candidate;
      created = true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      text = await readFile(file, 'utf8');
    } finally {
      await rm(temporary, { force: true });
    }
  }
  if ((await stat(file)).mode & 0o077) await chmod(file, 0o600);
  return { text, created };
}

/** `link` fails with EEXIST when `file` exists; a file system without hard links gets 'wx'. */
async function placeOnce(temporary: string, file: string, text: string): Promise<void> {
  try {
    await link(temporary, file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP') throw err;
    await writeFile(file, text, { mode: 0o600, flag: 'wx' });
  }
}
