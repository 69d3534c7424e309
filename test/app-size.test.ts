/**
 * The app-size budget (bench/app-size.ts): HTML, CSS and every script of the window, the
 * node worker, the channel worker and the service worker together stay within 100 KB gzip.
 * Measured on the real build (`npm test` builds first; alone, this builds if sources changed).
 */
import { execFileSync } from 'node:child_process';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  APP_SIZE_BUDGET_BYTES,
  type AppSize,
  appSizeTable,
  measureAppSize,
} from '../bench/app-size.ts';
import { repoPath } from '../e2e/support/paths.ts';

describe('app size', () => {
  let size: AppSize;
  beforeAll(() => {
    execFileSync(process.execPath, [repoPath('scripts/build.mjs'), 'if-needed'], {
      cwd: repoPath('.'),
      stdio: 'inherit',
    });
    size = measureAppSize();
  }, 300_000);

  it('ships every bundle: window, node worker, channel worker, service worker', () => {
    const bundles = new Set(size.files.map((f) => f.bundle));
    for (const b of ['window', 'node worker', 'channel worker', 'service worker'])
      expect(bundles, `no ${b} in dist/pwa`).toContain(b);
  });

  it(`stays within ${APP_SIZE_BUDGET_BYTES / 1000} KB gzip in total`, () => {
    expect(
      size.totalGzipBytes,
      `over the app-size budget:\n${appSizeTable(size)}`,
    ).toBeLessThanOrEqual(APP_SIZE_BUDGET_BYTES);
  });
});
