/** The gateway as nodes live with it: restarts, and gateways that lie. */
import { rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from '@playwright/test';
import { build } from 'esbuild';
import { expect, openApp, test } from './fixtures.ts';
import { PERMISSIONS } from './support/browser.ts';
import { startGateway } from './support/gateway-process.ts';
import { freeTcpPort, freeUdpPort } from './support/ports.ts';

async function openNode(browser: Browser, url: string) {
  const context = await browser.newContext({ permissions: PERMISSIONS });
  const page = await context.newPage();
  const identity = await openApp(page, url);
  await expect(page.getByTestId('status')).toHaveText('connected');
  return { context, page, ...identity };
}

async function dialAndAccept(a: Page, b: Page, to: string): Promise<void> {
  await a.getByTestId('dial-to').fill(to);
  await a.getByRole('button', { name: 'Dial', exact: true }).click();
  await b.getByRole('button', { name: 'Accept' }).click();
}

test('the gateway restarts mid-session: pages reconnect by themselves and a new dial works', async ({
  browser,
}) => {
  // Ports of our own choosing, outside the kernel's ephemeral range: the second gateway must
  // find them free again after the first has gone.
  const first = await startGateway({
    keepData: true,
    listen: `127.0.0.1:${await freeTcpPort()}`,
    udp: `127.0.0.1:${await freeUdpPort(2)}`,
  });
  const [a, b] = await Promise.all([openNode(browser, first.url), openNode(browser, first.url)]);
  await first.stop();
  await expect(a.page.getByTestId('status')).toHaveText('reconnecting');
  await expect(b.page.getByTestId('status')).toHaveText('reconnecting');

  const second = await startGateway({
    dataDir: first.dataDir,
    listen: new URL(first.url).host,
    udp: `127.0.0.1:${first.udpPort}`,
  });
  try {
    expect(second.id).toBe(first.id);
    await expect(a.page.getByTestId('status')).toHaveText('connected', { timeout: 30_000 });
    await expect(b.page.getByTestId('status')).toHaveText('connected', { timeout: 30_000 });
    await dialAndAccept(a.page, b.page, b.id);
    await expect(a.page.getByTestId('dial-result')).toHaveAttribute('data-code', 'connected');
    await a.page.locator('article.link .compose input').fill('after the restart');
    await a.page.locator('article.link .compose button').click();
    await expect(b.page.locator('article.link .messages li.theirs')).toContainText(
      'after the restart',
    );
  } finally {
    await a.context.close();
    await b.context.close();
    await second.stop();
    rmSync(first.dataDir, { recursive: true, force: true });
  }
});

for (const mode of ['swap-fingerprint', 'substitute-record'] as const) {
  test(`a gateway that lies (${mode}) cannot make A talk to the wrong peer`, async ({
    browser,
  }) => {
    const script = fileURLToPath(new URL('../dist/test/tampering-gateway.mjs', import.meta.url));
    await build({
      entryPoints: [fileURLToPath(new URL('./support/tampering-gateway.ts', import.meta.url))],
      outfile: script,
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: 'node20',
      packages: 'external',
      logLevel: 'warning',
    });
    const gateway = await startGateway({
      script,
      env: { RTCMESH_TAMPER: mode },
      args: ['--pwa-dir', fileURLToPath(new URL('../dist/pwa', import.meta.url))],
    });
    const [a, b] = await Promise.all([
      openNode(browser, gateway.url),
      openNode(browser, gateway.url),
    ]);
    try {
      await dialAndAccept(a.page, b.page, b.id);
      await expect(a.page.getByTestId('dial-result')).toHaveAttribute('data-code', 'identity');
      await expect(a.page.getByTestId('dial-result')).toContainText(
        mode === 'swap-fingerprint' ? 'fingerprint-not-listed' : 'wrong-peer',
      );
      // No data channel opened on either side.
      await b.page.waitForTimeout(3000);
      await expect(a.page.locator('article.link')).toHaveCount(0);
      await expect(b.page.locator('article.link')).toHaveCount(0);
    } finally {
      await a.context.close();
      await b.context.close();
      await gateway.stop();
    }
  });
}
