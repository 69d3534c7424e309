/** The device's node identity as a user sees it: shown, correct, and kept. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { expect, openApp, storeCertificateExpiringIn, test } from './fixtures.ts';
import { launchOptions, PERMISSIONS } from './support/browser.ts';
import { expectedIdentity, exportedNodeKey } from './support/independent-identity.ts';

test('shows the node ID and IPv6 that its key derives', async ({ page }) => {
  const shown = await openApp(page);
  const key = await exportedNodeKey(page);
  expect(key.raw).toHaveLength(65);
  expect(key.privateExtractable).toBe(false);
  expect(shown).toEqual(expectedIdentity(key.raw));
  await expect(page.getByTestId('node-fingerprint')).toHaveText(
    /^sha-256 ([0-9A-F]{2}:){31}[0-9A-F]{2}$/,
  );
});

test('keeps the same identity across a reload', async ({ page }) => {
  const first = await openApp(page);
  await page.reload();
  await expect(page.locator('body[data-ready="true"]')).toBeAttached();
  await expect(page.getByTestId('node-id')).toHaveText(first.id);
  await expect(page.getByTestId('node-ip6')).toHaveText(first.ip6);
});

test('two browser profiles are two different nodes', async ({ browser, baseURL }) => {
  const a = await browser.newContext({ permissions: PERMISSIONS });
  const b = await browser.newContext({ permissions: PERMISSIONS });
  const idA = await openApp(await a.newPage(), baseURL);
  const idB = await openApp(await b.newPage(), baseURL);
  expect(idA.id).not.toBe(idB.id);
  await a.close();
  await b.close();
});

test('keeps the same identity and certificate after the browser restarts', async ({ gateway }) => {
  const profile = mkdtempSync(join(tmpdir(), 'rtcmesh-profile-'));
  try {
    const options = { ...launchOptions(), permissions: PERMISSIONS };
    let context = await chromium.launchPersistentContext(profile, options);
    let page = context.pages()[0] ?? (await context.newPage());
    const first = await openApp(page, gateway.url);
    const firstFingerprint = await page.getByTestId('node-fingerprint').textContent();
    await context.close();

    context = await chromium.launchPersistentContext(profile, options);
    page = context.pages()[0] ?? (await context.newPage());
    const second = await openApp(page, gateway.url);
    expect(second).toEqual(first);
    await expect(page.getByTestId('node-fingerprint')).toHaveText(firstFingerprint ?? '');
    await context.close();
  } finally {
    rmSync(profile, { recursive: true, force: true });
  }
});

test('renews a certificate near its end without changing the ID', async ({ page }) => {
  const first = await openApp(page);
  const oldFingerprint = await page.getByTestId('node-fingerprint').textContent();
  await storeCertificateExpiringIn(page, 10);
  await page.reload();
  await expect(page.locator('body[data-ready="true"]')).toBeAttached();
  await expect(page.getByTestId('node-id')).toHaveText(first.id);
  const newFingerprint = await page.getByTestId('node-fingerprint').textContent();
  expect(newFingerprint).not.toBe(oldFingerprint);
  const daysLeft = await page.evaluate(async () => {
    const db = await new Promise<IDBDatabase>((resolve, reject) => {
      const req = indexedDB.open('rtcmesh');
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    });
    const stored = await new Promise<{ expires: number }>((resolve) => {
      const req = db.transaction('certificates').objectStore('certificates').get('dtls');
      req.onsuccess = () => resolve(req.result as { expires: number });
    });
    db.close();
    return (stored.expires - Date.now()) / 86_400_000;
  });
  expect(daysLeft).toBeGreaterThan(300);
});
