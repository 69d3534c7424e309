/** Dialing another node by ID or mesh IPv6 through a real gateway, as two users would. */
import type { Browser } from '@playwright/test';
import { chat, dial, expect, noteTime, openApp, test } from './fixtures.ts';
import { PERMISSIONS } from './support/browser.ts';

async function twoNodes(browser: Browser, url: string) {
  const open = async () => {
    const context = await browser.newContext({ permissions: PERMISSIONS });
    const page = await context.newPage();
    const identity = await openApp(page, url);
    await expect(page.getByTestId('status')).toHaveText('connected');
    return { context, page, ...identity };
  };
  return Promise.all([open(), open()]);
}

for (const by of ['ID', 'IPv6'] as const) {
  test(`A dials B by ${by}, B accepts, messages flow both ways peer to peer`, async ({
    browser,
    gateway,
  }) => {
    const [a, b] = await twoNodes(browser, gateway.url);
    await dial(a.page, by === 'ID' ? b.id : b.ip6);
    await expect(b.page.getByTestId('incoming')).toBeVisible();
    await expect(b.page.getByTestId('incoming-id')).toHaveText(a.id);
    await b.page.getByRole('button', { name: 'Accept' }).click();
    await expect(a.page.getByTestId('dial-result')).toHaveAttribute('data-code', 'connected');
    await expect(a.page.locator(`article.link[data-peer="${b.id}"]`)).toBeVisible();
    await expect(b.page.locator(`article.link[data-peer="${a.id}"]`)).toBeVisible();
    await chat(a.page, b.page, 'hello from A');
    await chat(b.page, a.page, 'hello from B');
    // Peer to peer: the selected pair joins the two browsers' own host candidates.
    await expect(a.page.locator('article.link .path')).toHaveAttribute('data-local', 'host');
    await expect(a.page.locator('article.link .path')).toHaveAttribute('data-remote', 'host');
    await a.context.close();
    await b.context.close();
  });
}

test('B declines: A is told "declined"', async ({ browser, gateway }) => {
  const [a, b] = await twoNodes(browser, gateway.url);
  await dial(a.page, b.id);
  await expect(b.page.getByTestId('incoming')).toBeVisible();
  const declined = Date.now();
  await b.page.getByRole('button', { name: 'Decline' }).click();
  await expect(a.page.getByTestId('dial-result')).toHaveAttribute('data-code', 'declined', {
    timeout: 30_000,
  });
  noteTime('"declined"', declined, '2 s');
  await expect(a.page.getByTestId('dial-result')).toContainText('declined');
  await expect(b.page.getByTestId('incoming')).toBeHidden();
  await a.context.close();
  await b.context.close();
});

test('an unknown ID: A is told "not found"', async ({ browser, gateway }) => {
  const [a, b] = await twoNodes(browser, gateway.url);
  const unknown = 'a'.repeat(52);
  const dialed = Date.now();
  await dial(a.page, unknown);
  await expect(a.page.getByTestId('dial-result')).toHaveAttribute('data-code', 'not-found', {
    timeout: 30_000,
  });
  noteTime('"not found"', dialed, '2 s');
  await expect(a.page.getByTestId('dial-result')).toContainText('not found');
  await dial(a.page, 'not an address');
  await expect(a.page.getByTestId('dial-result')).toHaveAttribute('data-code', 'invalid');
  await a.context.close();
  await b.context.close();
});

test('a share link opens the app ready to dial that node', async ({ browser, gateway }) => {
  const [a, b] = await twoNodes(browser, gateway.url);
  const link = await b.page.getByTestId('share-link').textContent();
  expect(link).toBe(`${gateway.url}/#dial=${b.id}`);
  // Its QR code is drawn when the share section opens.
  await b.page.getByText('Share, keys and certificate').click();
  await expect(b.page.locator('#share-qr svg')).toBeVisible();
  await a.page.goto(link ?? '');
  await expect(a.page.getByTestId('dial-to')).toHaveValue(b.id);
  await a.context.close();
  await b.context.close();
});

test('a host tab that made and closed 500 connections still makes more (Chromium counts closed ones until collected)', async ({
  browser,
  gateway,
}) => {
  const open = async () => {
    const context = await browser.newContext({ permissions: PERMISSIONS });
    await context.addInitScript(() => localStorage.setItem('rtcmesh:accept-policy', 'everyone'));
    const page = await context.newPage();
    const identity = await openApp(page, gateway.url);
    await expect(page.getByTestId('status')).toHaveText('connected');
    return { context, page, ...identity };
  };
  const [a, b] = await Promise.all([open(), open()]);
  // A long-lived tab's history: connections made and closed, none collected yet, up to the
  // count Chromium allows (500, the node's own included).
  const made = await a.page.evaluate(() => {
    let n = 0;
    try {
      for (; n < 600; n++) new RTCPeerConnection().close();
    } catch {
      // "Cannot create so many PeerConnections": the count is full
    }
    return n;
  });
  expect(made).toBeLessThan(600);
  type Connectable = Window & {
    rtcmesh: { node: { connect(to: string): Promise<{ close(): void }> } };
  };
  // The first dial may use the connection made ahead; the next ones need new ones.
  for (let i = 0; i < 3; i++) {
    await a.page.evaluate(async (to) => {
      const link = await (window as unknown as Connectable).rtcmesh.node.connect(to);
      link.close();
    }, b.id);
  }
  await a.context.close();
  await b.context.close();
});
