/** The installable, offline-capable app shell. */
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { expect, openApp, test, waitForServiceWorker } from './fixtures.ts';
import { launchOptions, PERMISSIONS } from './support/browser.ts';
import { startGateway } from './support/gateway-process.ts';

test('the manifest is installable', async ({ gateway }) => {
  // Chromium never offers to install from an incognito context: use a real profile.
  const profile = mkdtempSync(join(tmpdir(), 'rtcmesh-profile-'));
  const context = await chromium.launchPersistentContext(profile, {
    ...launchOptions(),
    permissions: PERMISSIONS,
  });
  const page = context.pages()[0] ?? (await context.newPage());
  await openApp(page, gateway.url);
  await waitForServiceWorker(page);
  const cdp = await page.context().newCDPSession(page);
  const { installabilityErrors } = (await cdp.send('Page.getInstallabilityErrors')) as {
    installabilityErrors: { errorId: string }[];
  };
  expect(installabilityErrors).toEqual([]);
  const manifest = await cdp.send('Page.getAppManifest');
  expect(manifest.errors).toEqual([]);
  await context.close();
  rmSync(profile, { recursive: true, force: true });
});

test('opens offline, with its identity, once visited', async ({ page, gateway }) => {
  const online = await openApp(page);
  await waitForServiceWorker(page);
  expect(await gateway.stop()).toBe(0);
  // The gateway is really gone: its API no longer answers.
  const apiAnswers = await page.evaluate(async () =>
    fetch('/v1/info').then(
      () => true,
      () => false,
    ),
  );
  expect(apiAnswers).toBe(false);
  await page.reload();
  await expect(page.locator('body[data-ready="true"]')).toBeAttached();
  await expect(page.getByTestId('node-id')).toHaveText(online.id);
  await expect(page.getByTestId('node-ip6')).toHaveText(online.ip6);
});

test('offers a reload when a new version is deployed', async ({ page }) => {
  // Serve a copy of the built PWA, so the test can "deploy" a change to it.
  const pwaDir = mkdtempSync(join(tmpdir(), 'rtcmesh-pwa-'));
  cpSync(fileURLToPath(new URL('../dist/pwa', import.meta.url)), pwaDir, { recursive: true });
  const gateway = await startGateway({ args: ['--pwa-dir', pwaDir] });
  try {
    await openApp(page, gateway.url);
    await waitForServiceWorker(page);
    await expect(page.locator('#update')).toBeHidden();

    const swFile = join(pwaDir, 'sw.js');
    writeFileSync(swFile, `${readFileSync(swFile, 'utf8')}\n// deployed again\n`);
    // What the browser does on its own after a navigation or every 24 h.
    await page.evaluate(async () => (await navigator.serviceWorker.getRegistration())?.update());
    await expect(page.getByText('Update available')).toBeVisible();

    const reloaded = page.waitForEvent('load');
    await page.getByRole('button', { name: 'Reload' }).click();
    await reloaded;
    await expect(page.locator('body[data-ready="true"]')).toBeAttached();
    await expect(page.locator('#update')).toBeHidden();
    const waiting = await page.evaluate(
      async () => (await navigator.serviceWorker.getRegistration())?.waiting ?? null,
    );
    expect(waiting).toBeNull();
  } finally {
    await gateway.stop();
    rmSync(pwaDir, { recursive: true, force: true });
  }
});
