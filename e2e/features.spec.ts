/**
 * Feature detection (client/features.ts): a browser lacking what the node cannot run without
 * is told what is missing, and a page lists the fallbacks it runs on (README "Browser engines").
 */
import { expect, openApp, test } from './fixtures.ts';
import { PERMISSIONS } from './support/browser.ts';

for (const [missing, remove] of [
  [
    'Web Locks',
    () => Object.defineProperty(Navigator.prototype, 'locks', { get: () => undefined }),
  ],
  ['WebRTC', () => Reflect.deleteProperty(globalThis, 'RTCPeerConnection')],
] as const) {
  test(`without ${missing} the page says rtcmesh needs it`, async ({ page }) => {
    await page.addInitScript(remove);
    await page.goto('/');
    await expect(page.getByRole('alert')).toContainText(`lacks ${missing}`);
    await expect(page.getByTestId('status')).toHaveText('offline');
  });
}

test('Chromium needs no fallback; without SharedWorker the page names the one it uses', async ({
  page,
  browser,
}) => {
  await openApp(page);
  await expect(page.getByTestId('browser-features')).toHaveText('everything rtcmesh uses');
  await expect(page.locator('body')).toHaveAttribute('data-has-data-channel-transfer', 'true');
  // Another device, whose browser has no SharedWorker (as Chrome on Android before 148).
  const context = await browser.newContext({ permissions: PERMISSIONS });
  await context.addInitScript(() => Reflect.deleteProperty(globalThis, 'SharedWorker'));
  const other = await context.newPage();
  await openApp(other);
  await expect(other.getByTestId('browser-features')).toContainText('No SharedWorker');
  await context.close();
});
