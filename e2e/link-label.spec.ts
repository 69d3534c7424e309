/**
 * The link label says how a link travels: with relay-only set, A's link to B goes through the
 * gateway's built-in TURN server, and A's card says "relayed · UDP <TURN port>" (the relay
 * transport from the selected pair's local candidate, RTCIceCandidateStats.relayProtocol, and
 * the port of its TURN URL). Over TCP or TLS the same label says TCP or TLS.
 */
import type { Browser } from '@playwright/test';
import { chat, dial, expect, openApp, test } from './fixtures.ts';
import { PERMISSIONS } from './support/browser.ts';
import { startGateway } from './support/gateway-process.ts';

async function node(browser: Browser, url: string) {
  const context = await browser.newContext({ permissions: PERMISSIONS });
  const page = await context.newPage();
  const identity = await openApp(page, url);
  await expect(page.getByTestId('status')).toHaveText('connected');
  return { context, page, ...identity };
}

test('a relayed link is labelled with its relay transport and port', async ({ browser }) => {
  // Loopback peers: the built-in relay may relay to them only when told so.
  const gateway = await startGateway({ args: ['--turn-allow-private'] });
  try {
    const [a, b] = await Promise.all([node(browser, gateway.url), node(browser, gateway.url)]);
    // The settings are in the folded "Share, keys and certificate" section.
    for (const { page } of [a, b]) await page.locator('summary').first().click();
    await a.page.getByTestId('relay-only').check();
    await b.page.getByTestId('accept-policy').selectOption('everyone');
    await dial(a.page, b.id);
    await expect(a.page.getByTestId('dial-result')).toHaveAttribute('data-code', 'connected');
    await chat(a.page, b.page, 'through the relay');
    const path = a.page.locator('article.link .path');
    await expect(path).toHaveAttribute('data-local', 'relay');
    await expect(path).toHaveAttribute('data-relay', 'udp');
    await expect(path).toContainText(`relayed · UDP ${gateway.turnPort}`);
    await a.context.close();
    await b.context.close();
  } finally {
    await gateway.stop();
  }
});
