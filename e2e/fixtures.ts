/** Playwright fixtures: a fresh real gateway per test, and pages that are ready for WebRTC. */
import { test as base, expect, type Page } from '@playwright/test';
import { type GatewayProcess, startGateway } from './support/gateway-process.ts';

export { expect };

export const test = base.extend<{ gateway: GatewayProcess }>({
  // biome-ignore lint/correctness/noEmptyPattern: Playwright reads a fixture's dependencies from this pattern.
  gateway: async ({}, use) => {
    const gateway = await startGateway();
    await use(gateway);
    await gateway.stop();
  },
  baseURL: async ({ gateway }, use) => {
    await use(gateway.url);
  },
});

/**
 * Notes on the test (an annotation, in the JSON and HTML reports) how long something took since
 * `since`, beside the figure the design aims at. Tests wait for states and events and never
 * assert a time (TESTING.md: the suite must pass beside a CPU hog); `npm run bench` measures.
 */
export function noteTime(what: string, since: number, target: string): void {
  test.info().annotations.push({
    type: 'time',
    description: `${what} in ${Date.now() - since} ms (target ${target})`,
  });
}

/** Opens the app and waits until it shows this device's identity. */
export async function openApp(page: Page, url = '/'): Promise<{ id: string; ip6: string }> {
  await page.goto(url);
  await expect(page.locator('body[data-ready="true"]')).toBeAttached();
  return {
    id: (await page.getByTestId('node-id').textContent()) ?? '',
    ip6: (await page.getByTestId('node-ip6').textContent()) ?? '',
  };
}

/** Waits until a service worker controls the page (the shell is then precached). */
export async function waitForServiceWorker(page: Page): Promise<void> {
  await page.evaluate(async () => {
    await navigator.serviceWorker.ready;
    if (!navigator.serviceWorker.controller) {
      await new Promise((resolve) =>
        navigator.serviceWorker.addEventListener('controllerchange', resolve, { once: true }),
      );
    }
  });
}

/** Dials `to` from the page's dial box. */
export async function dial(page: Page, to: string): Promise<void> {
  await page.getByTestId('dial-to').fill(to);
  await page.getByRole('button', { name: 'Dial', exact: true }).click();
}

/** `from` sends a chat line on its open link; `to` shows it. */
export async function chat(from: Page, to: Page, text: string): Promise<void> {
  await from.locator('article.link[data-open="true"] .compose input').fill(text);
  await from.locator('article.link[data-open="true"] .compose button').click();
  await expect(to.locator('article.link .messages li.theirs').last()).toContainText(text);
}

/** Stores a certificate with `days` left as the device's, as a year of use would leave it. */
export async function storeCertificateExpiringIn(page: Page, days: number): Promise<void> {
  await page.evaluate(async (days) => {
    const certificate = await RTCPeerConnection.generateCertificate({
      name: 'ECDSA',
      namedCurve: 'P-256',
      expires: days * 24 * 3600 * 1000,
    } as AlgorithmIdentifier);
    const db = await new Promise<IDBDatabase>((resolve, reject) => {
      const req = indexedDB.open('rtcmesh');
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    });
    await new Promise<void>((resolve, reject) => {
      const tx = db.transaction('certificates', 'readwrite');
      tx.objectStore('certificates').put({ certificate, expires: certificate.expires }, 'dtls');
      tx.oncomplete = () => resolve();
      tx.onerror = () => reject(tx.error);
    });
    db.close();
  }, days);
}
