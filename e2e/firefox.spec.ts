/**
 * The Firefox lane (issue 17): Debian's stock firefox-esr, driven over WebDriver BiDi by
 * puppeteer-core, against Chromium pages (from Playwright), a CLI node and itself, through
 * a real gateway. Firefox cannot move a data channel to a worker, so its RTC host tab serves
 * channels itself (client/rtc-host-local-channel.ts); these tests are that path's users.
 * Any error in Firefox's own console output from the app (its workers' included) fails the
 * test.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, Page } from '@playwright/test';
import type { ElementHandle, Page as FirefoxPage } from 'puppeteer-core';
import { dial, expect, openApp, test } from './fixtures.ts';
import { PERMISSIONS } from './support/browser.ts';
import { cli } from './support/cli-process.ts';
import { FirefoxProcess } from './support/firefox.ts';
import { dialEcho, listenEcho } from './support/node-window.ts';

// Two browsers per test on a loaded 2-core machine: generous bounds on waits for states.
// Each test launches its own Firefox, so tests of this file may share the workers.
test.describe.configure({ mode: 'parallel', timeout: 240_000 });

const WAIT = { timeout: 90_000, polling: 250 } as const;

/**
 * How the test's Firefox treats a data channel moved to a worker: as it does (ESR 153 moves
 * it), or refusing as ESR 140 does (DESIGN §7), so that the host tab serves channels itself.
 */
type ChannelTransfer = 'native' | 'refused';

/** The test's Firefox: launched per test, its console checked and its profile removed after. */
const firefoxTest = test.extend<{ firefox: FirefoxProcess; channelTransfer: ChannelTransfer }>({
  channelTransfer: ['native', { option: true }],
  firefox: async ({ gateway, channelTransfer }, use, testInfo) => {
    const firefox = await FirefoxProcess.launch({
      refuseDataChannelTransfer: channelTransfer === 'refused',
    });
    try {
      await use(firefox);
      const errors = firefox.errors(gateway.url);
      if (testInfo.status === testInfo.expectedStatus)
        expect(errors, 'errors in Firefox’s console').toEqual([]);
    } finally {
      if (testInfo.status !== testInfo.expectedStatus)
        await testInfo.attach('firefox-output', { body: firefox.output() });
      await firefox.close();
    }
  },
});

/** Opens the app in a Firefox tab; resolves with its identity once ready. */
async function openFirefoxApp(page: FirefoxPage, url: string): Promise<{ id: string }> {
  await page.goto(url);
  await page.waitForSelector('body[data-ready="true"]', WAIT);
  const id = await page.$eval('[data-testid="node-id"]', (el) => el.textContent ?? '');
  return { id };
}

/** Waits until `selector` matches an element whose `attribute` (or text) is `value`. */
async function waitFor(
  page: FirefoxPage,
  selector: string,
  value: string,
  attribute?: string,
): Promise<void> {
  await page.waitForFunction(
    (selector, value, attribute) =>
      [...document.querySelectorAll(selector)].some((el) =>
        attribute ? el.getAttribute(attribute) === value : (el.textContent ?? '').includes(value),
      ),
    WAIT,
    selector,
    value,
    attribute ?? '',
  );
}

/** Waits for "connected"; if it never comes, the error says what the page and node show. */
async function connected(page: FirefoxPage): Promise<void> {
  try {
    await waitFor(page, '[data-testid="status"]', 'connected', 'data-status');
  } catch (err) {
    const state = await page
      .evaluate(async () => {
        const status = document.querySelector('[data-testid="status"]');
        const node = (window as unknown as { rtcmesh?: { node?: { inspect(): Promise<unknown> } } })
          .rtcmesh?.node;
        return JSON.stringify({
          shown: status?.getAttribute('data-status'),
          detail: status?.getAttribute('title'),
          rtcHost: document.body.dataset.rtcHost,
          node: await node?.inspect().catch((e: Error) => e.message),
        });
      })
      .catch((e: Error) => `(page unreadable: ${e.message})`);
    throw new Error(`${(err as Error).message}\npage and node: ${state}`);
  }
}

async function firefoxDial(page: FirefoxPage, to: string): Promise<void> {
  await page.$eval(
    '[data-testid="dial-to"]',
    (el, to) => {
      (el as HTMLInputElement).value = to;
    },
    to,
  );
  await page.click('#dial-button');
}

async function firefoxAccept(page: FirefoxPage, from: string): Promise<void> {
  await waitFor(page, '[data-testid="incoming-id"]', from);
  await page.waitForSelector('#incoming-accept', { ...WAIT, visible: true });
  await page.click('#incoming-accept');
}

/** Sends a chat line from a Firefox tab to `peer`. */
async function firefoxSay(page: FirefoxPage, peer: string, text: string): Promise<void> {
  const card = `article.link[data-peer="${peer}"]`;
  await page.waitForSelector(`${card}[data-open="true"] .compose input`, WAIT);
  await page.type(`${card} .compose input`, text);
  await page.click(`${card} .compose button`);
}

const heard = (page: FirefoxPage, text: string) =>
  waitFor(page, 'article.link .messages li.theirs', text);

async function chromiumNode(
  browser: Browser,
  url: string,
  options: { acceptEveryone?: boolean } = {},
) {
  const context = await browser.newContext({ permissions: PERMISSIONS });
  // Written where older versions kept it: the app moves it into IndexedDB as it starts.
  if (options.acceptEveryone)
    await context.addInitScript(() => localStorage.setItem('rtcmesh:accept-policy', 'everyone'));
  const page = await context.newPage();
  const { id } = await openApp(page, url);
  await expect(page.getByTestId('status')).toHaveText('connected');
  return { context, page, id };
}

async function firefoxNode(firefox: FirefoxProcess, url: string) {
  const page = await firefox.newPage();
  const { id } = await openFirefoxApp(page, url);
  await connected(page);
  return { page, id };
}

/** A 16 MiB file of random bytes in a temporary directory, and its SHA-256. */
function bigFile() {
  const dir = mkdtempSync(join(tmpdir(), 'rtcmesh-file-'));
  const path = join(dir, 'big.bin');
  const bytes = randomBytes(16 * 1024 * 1024);
  writeFileSync(path, bytes);
  return {
    path,
    sha256: createHash('sha256').update(bytes).digest('hex'),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

const chromiumCard = (page: Page, peer: string) =>
  page.locator(`article.link[data-peer="${peer}"]`);

async function firefoxTabs(firefox: FirefoxProcess, url: string, tabs: number) {
  const pages: FirefoxPage[] = [];
  let id = '';
  for (let i = 0; i < tabs; i++) {
    const page = await firefox.newPage();
    ({ id } = await openFirefoxApp(page, url));
    pages.push(page);
  }
  for (const page of pages) await connected(page);
  return { pages, id };
}

const isHost = (page: FirefoxPage) => page.evaluate(() => document.body.dataset.rtcHost === 'true');

/** What the page says of this browser's data channels: served by a worker, or the host tab. */
async function expectChannelsServed(page: FirefoxPage, mode: ChannelTransfer): Promise<void> {
  await waitFor(page, 'body', String(mode === 'native'), 'data-has-data-channel-transfer');
  const text = await page.$eval('[data-testid="browser-features"]', (el) => el.textContent ?? '');
  if (mode === 'refused') expect(text).toContain('the RTC host tab serves them itself');
  else expect(text).not.toContain('serves them itself');
}

/** Sends a 16 MiB file each way on an open link and checks both arrive with the sent SHA-256. */
async function filesBothWays(
  cr: { page: Page; id: string },
  fx: { page: FirefoxPage; id: string },
) {
  const file = bigFile();
  try {
    // Chromium → Firefox.
    await chromiumCard(cr.page, fx.id).locator('.file-input').setInputFiles(file.path);
    const fxTransfers = `article.link[data-peer="${cr.id}"] .transfer`;
    await waitFor(fx.page, fxTransfers, 'complete', 'data-state');
    await waitFor(fx.page, fxTransfers, file.sha256, 'data-sha256');
    await expect(chromiumCard(cr.page, fx.id).locator('.transfer')).toHaveAttribute(
      'data-state',
      'complete',
    );
    // Firefox → Chromium.
    const input = await fx.page.waitForSelector(
      `article.link[data-peer="${cr.id}"] .file-input`,
      WAIT,
    );
    await (input as ElementHandle<HTMLInputElement> | null)?.uploadFile(file.path);
    const received = chromiumCard(cr.page, fx.id).locator('.transfer').first();
    await expect(received).toHaveAttribute('data-state', 'complete', { timeout: 120_000 });
    await expect(received).toHaveAttribute('data-sha256', file.sha256);
    await expect
      .poll(() =>
        fx.page.$$eval(fxTransfers, (rows) => rows.map((r) => r.getAttribute('data-state'))),
      )
      .toEqual(['complete', 'complete']);
  } finally {
    file.remove();
  }
}

async function chromiumSays(page: Page, peer: string, text: string): Promise<void> {
  const card = chromiumCard(page, peer);
  await card.locator('.compose input').fill(text);
  await card.locator('.compose button').click();
}

const theirs = (page: Page) => page.locator('article.link .messages li.theirs').last();

firefoxTest(
  'the lane reads what only Firefox’s console shows: an error in a worker',
  async ({ firefox, gateway }) => {
    const page = await firefox.newPage();
    await openFirefoxApp(page, gateway.url);
    await page.evaluate(() => {
      new Worker(
        URL.createObjectURL(new Blob(['Promise.reject(new Error("thrown in a worker"))'])),
      );
    });
    await expect
      .poll(() => firefox.errors(gateway.url).join('\n'), { timeout: 30_000 })
      .toContain('thrown in a worker');
    firefox.expected();
  },
);

for (const mode of ['native', 'refused'] as const) {
  firefoxTest.describe(
    mode === 'native'
      ? 'Firefox ESR as installed (data channels move to the channel worker)'
      : 'Firefox refusing to move data channels, as ESR 140 does (the host tab serves them)',
    () => {
      firefoxTest.use({ channelTransfer: mode });

      firefoxTest(
        'Chromium dials Firefox by ID, Firefox accepts; chat both ways; 16 MiB files both ways',
        async ({ firefox, browser, gateway }) => {
          const [cr, fx] = await Promise.all([
            chromiumNode(browser, gateway.url),
            firefoxNode(firefox, gateway.url),
          ]);
          await expectChannelsServed(fx.page, mode);
          await dial(cr.page, fx.id);
          await firefoxAccept(fx.page, cr.id);
          await expect(cr.page.getByTestId('dial-result')).toHaveAttribute(
            'data-code',
            'connected',
          );
          await firefoxSay(fx.page, cr.id, 'hello from Firefox');
          await expect(theirs(cr.page)).toContainText('hello from Firefox');
          await chromiumSays(cr.page, fx.id, 'hello from Chromium');
          await heard(fx.page, 'hello from Chromium');
          await filesBothWays(cr, fx);
          await cr.context.close();
        },
      );

      firefoxTest(
        'Firefox dials Chromium by ID, Chromium accepts; chat both ways; 16 MiB files both ways',
        async ({ firefox, browser, gateway }) => {
          const [cr, fx] = await Promise.all([
            chromiumNode(browser, gateway.url),
            firefoxNode(firefox, gateway.url),
          ]);
          await firefoxDial(fx.page, cr.id);
          await expect(cr.page.getByTestId('incoming-id')).toHaveText(fx.id);
          await cr.page.getByRole('button', { name: 'Accept' }).click();
          await waitFor(fx.page, '[data-testid="dial-result"]', 'connected', 'data-code');
          await chromiumSays(cr.page, fx.id, 'hello from Chromium');
          await heard(fx.page, 'hello from Chromium');
          await firefoxSay(fx.page, cr.id, 'hello from Firefox');
          await expect(theirs(cr.page)).toContainText('hello from Firefox');
          await filesBothWays(cr, fx);
          await cr.context.close();
        },
      );

      firefoxTest(
        'a Firefox page and a CLI node: each dials the other and bytes come back',
        async ({ firefox, gateway }, testInfo) => {
          const listener = cli(['listen', 'echo', '--exec', 'cat'], gateway.url);
          const fx = await firefoxNode(firefox, gateway.url);
          try {
            await expect.poll(() => /node (\S+) \(/.exec(listener.err())?.[1]).toBeTruthy();
            const cliId = /node (\S+) \(/.exec(listener.err())?.[1] ?? '';
            // Firefox dials the CLI's echo service.
            const echoed = await dialEcho(fx.page, cliId, 200_000);
            expect(echoed).toEqual({ got: 200_000, same: true });
          } catch (err) {
            await testInfo.attach('cli-listener-output', { body: listener.err() });
            throw err;
          } finally {
            await listener.stop();
          }
          // The CLI dials Firefox's echo service; the user accepts.
          await listenEcho(fx.page);
          const dialer = cli(['dial', fx.id, 'echo'], gateway.url, 'hello from the terminal\n');
          try {
            await fx.page.waitForSelector('#incoming-accept', { ...WAIT, visible: true });
            await fx.page.click('#incoming-accept');
            expect(await dialer.exited, `rtcmesh dial failed:\n${dialer.err()}`).toBe(0);
            expect(dialer.out()).toBe('hello from the terminal\n');
          } catch (err) {
            await testInfo.attach('cli-dialer-output', { body: dialer.err() });
            throw err;
          } finally {
            await dialer.stop();
          }
        },
      );

      firefoxTest(
        'two Firefox tabs are one node; closing the host tab mid-chat, the other carries on',
        async ({ firefox, browser, gateway }) => {
          const [fx, cr] = await Promise.all([
            firefoxTabs(firefox, gateway.url, 2),
            chromiumNode(browser, gateway.url, { acceptEveryone: true }),
          ]);
          const [first, second] = fx.pages as [FirefoxPage, FirefoxPage];
          expect(await second.$eval('[data-testid="node-id"]', (el) => el.textContent)).toBe(fx.id);
          let host: FirefoxPage | undefined;
          await expect
            .poll(async () => {
              const flags = [await isHost(first), await isHost(second)];
              host = flags[0] ? first : flags[1] ? second : undefined;
              return flags.filter(Boolean).length;
            })
            .toBe(1);
          const chatter = host === first ? second : first;
          await expectChannelsServed(host as FirefoxPage, mode);

          await firefoxDial(chatter, cr.id);
          await waitFor(chatter, '[data-testid="dial-result"]', 'connected', 'data-code');
          await firefoxSay(chatter, cr.id, 'before');
          await expect(theirs(cr.page)).toContainText('before');
          await chromiumSays(cr.page, fx.id, 'before, back');
          await heard(chatter, 'before, back');

          await chatter.evaluate(() => {
            const w = window as unknown as {
              rtcmesh: { node: { on(e: 'status', l: (s: string) => void): void } };
              statusLog: string[];
            };
            w.statusLog = [];
            w.rtcmesh.node.on('status', (s) => w.statusLog.push(s));
          });
          await host?.close();
          await chatter.waitForFunction(() => {
            const log = (window as unknown as { statusLog: string[] }).statusLog;
            return log.includes('reconnecting') && log.at(-1) === 'connected';
          }, WAIT);
          await chatter.waitForFunction(() => document.body.dataset.rtcHost === 'true', WAIT);
          // The open chat carries on from the remaining tab, both ways.
          await firefoxSay(chatter, cr.id, 'after');
          await expect(theirs(cr.page)).toContainText('after');
          await chromiumSays(cr.page, fx.id, 'after, back');
          await heard(chatter, 'after, back');
          await cr.context.close();
        },
      );
    },
  );
}
