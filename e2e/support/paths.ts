/** Files of this repository, found from wherever the calling code was built to. */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

function findRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (
      existsSync(pkg) &&
      (JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'rtcmesh'
    )
      return dir;
    const parent = dirname(dir);
    if (parent === dir) throw new Error('cannot find the rtcmesh repository root');
    dir = parent;
  }
}

export const REPO_ROOT = findRoot();
export const repoPath = (relative: string): string => join(REPO_ROOT, relative);
