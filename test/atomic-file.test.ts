/**
 * Files in a data directory (src/node/atomic-file.ts) and the stores built on them: a key made
 * by many starts at once is one key, never half a file, private; a rewritten list is whole.
 */
import { spawn } from 'node:child_process';
import {
  chmodSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { RTCMESH_BIN } from '../e2e/support/gateway-process.ts';
import { readOrCreatePrivateFile, writeFileAtomically } from '../src/node/atomic-file.ts';
import { loadOrCreateIdentity } from '../src/node/identity-store.ts';
import { loadOrCreateTurnSecret } from '../src/node/turn/secret-store.ts';

const dir = () => mkdtempSync(join(tmpdir(), 'rtcmesh-files-'));

describe('files made once and files rewritten whole', () => {
  it('twenty creators at once: one text for all, one of them made it, mode 0600, no leftovers', async () => {
    const d = dir();
    const file = join(d, 'secret');
    let n = 0;
    const results = await Promise.all(
      Array.from({ length: 20 }, () => readOrCreatePrivateFile(file, () => `made ${n++}\n`)),
    );
    const texts = new Set(results.map((r) => r.text));
    expect(texts.size).toBe(1);
    expect(results.filter((r) => r.created)).toHaveLength(1);
    expect(readFileSync(file, 'utf8')).toBe([...texts][0]);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(readdirSync(d)).toEqual(['secret']);
  });

  it('an existing file is kept, and tightened to 0600 when others could read it', async () => {
    const d = dir();
    const file = join(d, 'secret');
    writeFileSync(file, 'kept\n', { mode: 0o644 });
    chmodSync(file, 0o644);
    const { text, created } = await readOrCreatePrivateFile(file, () => 'new\n');
    expect({ text, created }).toEqual({ text: 'kept\n', created: false });
    expect(statSync(file).mode & 0o777).toBe(0o600);
  });

  it('rewrites replace the whole file and leave no temporary files, even many at once', async () => {
    const d = dir();
    const file = join(d, 'list.json');
    await Promise.all(
      Array.from({ length: 20 }, (_, i) => writeFileAtomically(file, JSON.stringify({ i }))),
    );
    expect(JSON.parse(readFileSync(file, 'utf8')).i).toBeTypeOf('number');
    expect(readdirSync(d)).toEqual(['list.json']);
  });

  it('a node key and a TURN secret made by several starts at once are one key and one secret', async () => {
    const d = dir();
    const ids = await Promise.all(
      Array.from({ length: 8 }, async () => (await loadOrCreateIdentity(d)).identity.id),
    );
    expect(new Set(ids).size).toBe(1);
    const secrets = await Promise.all(Array.from({ length: 8 }, () => loadOrCreateTurnSecret(d)));
    expect(new Set(secrets).size).toBe(1);
  });

  it('separate processes starting on one new data directory agree on its node ID', async () => {
    const d = dir();
    const ids = await Promise.all(
      Array.from(
        { length: 4 },
        () =>
          new Promise<string>((resolve, reject) => {
            const child = spawn(process.execPath, [RTCMESH_BIN, 'id', '--data', d]);
            let out = '';
            child.stdout.on('data', (b: Buffer) => {
              out += b.toString();
            });
            child.once('error', reject);
            child.once('exit', (code) =>
              code === 0 ? resolve(out.trim()) : reject(new Error(`rtcmesh id exited ${code}`)),
            );
          }),
      ),
    );
    expect(new Set(ids).size).toBe(1);
  });
});
