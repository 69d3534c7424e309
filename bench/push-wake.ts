/**
 * Push-woken dials: from A's dial to B's push event (the notification B's service worker
 * shows, by its own timestamp) and to connected, for a dial to a node whose app is closed,
 * next to dials to the same node with its app open, in the same run. The push goes through
 * the e2e suite's local push service (VAPID checked, aes128gcm decrypted, delivered over
 * CDP), so a real push service's network time is not in the figures; opening the app is.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';
import { launchOptions, PERMISSIONS } from '../e2e/support/browser.ts';
import { type GatewayProcess, startGateway } from '../e2e/support/gateway-process.ts';
import {
  deliverToServiceWorker,
  PushService,
  standInPushManager,
} from '../e2e/support/push-service.ts';
import { newPage, type Summary, summarize } from './browser.ts';

type BenchWindow = Window & {
  rtcmesh?: {
    node: {
      connect(to: string): Promise<{ close(): void }>;
      gateway: { status: string };
    };
  };
  pushBench?: { startedAt: number; done: Promise<number> };
};

export interface PushWakeResult {
  /** Dial to connected, B's app open (the baseline). */
  open: Summary;
  /** Dial to B's push event, B's app closed. */
  toPush: Summary;
  /** Dial to connected, B's app closed, accepted at once from the notification. */
  toConnected: Summary;
}

const connected = (page: Page) =>
  page.waitForFunction(
    () => (window as BenchWindow).rtcmesh?.node.gateway.status === 'connected',
    undefined,
    { timeout: 20_000 },
  );

async function sessions(gateway: GatewayProcess): Promise<number> {
  const metrics = await (await fetch(`${gateway.url}/metrics`)).text();
  return Number(/^rtcmesh_sessions (\d+)$/m.exec(metrics)?.[1]);
}

async function waitFor<T>(
  what: string,
  poll: () => Promise<T | undefined>,
  explain: () => Promise<string> = async () => '',
): Promise<T> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const value = await poll();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`push bench: no ${what} in 20 s ${await explain()}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Starts a dial in A's page; resolves with its start (epoch ms), the end is read later. */
async function startDial(a: Page, to: string): Promise<number> {
  return a.evaluate((to) => {
    const w = window as BenchWindow;
    const node = w.rtcmesh?.node;
    if (!node) throw new Error('no node');
    const startedAt = Date.now();
    const done = node.connect(to).then((link) => {
      const end = Date.now();
      link.close();
      return end;
    });
    w.pushBench = { startedAt, done };
    return startedAt;
  }, to);
}

const dialEnd = (a: Page) =>
  a.evaluate(() => (window as BenchWindow).pushBench?.done ?? Promise.reject(new Error('no dial')));

export async function pushWakeDials(browser: Browser, dials: number): Promise<PushWakeResult> {
  const push = await PushService.start();
  const gateway = await startGateway({
    args: [
      '--push-allow-private',
      '--limit',
      'dialPerId.burst=10000',
      '--limit',
      'dialPerId.perSecond=1000',
    ],
  });
  const profile = mkdtempSync(join(tmpdir(), 'rtcmesh-bench-profile-'));
  let b: BrowserContext | undefined;
  try {
    const a = await newPage(browser, gateway.url);
    b = await chromium.launchPersistentContext(profile, {
      ...launchOptions(),
      permissions: [...PERMISSIONS, 'notifications'],
    });
    const subscription = push.subscribe();
    await b.addInitScript(standInPushManager, subscription);
    // The baseline answers by itself; a woken dial is answered by the Accept on its notification.
    await b.addInitScript(() => localStorage.setItem('rtcmesh:accept-policy', 'everyone'));
    let app: Page | undefined = b.pages()[0] ?? (await b.newPage());
    await app.goto(gateway.url);
    await Promise.all([connected(a.page), connected(app)]);
    await app.getByText('Share, keys and certificate').click();
    await app.getByTestId('push-enabled').check();
    await app.locator('[data-testid="push-status"][data-state="on"]').waitFor();
    const bId = (await app.getByTestId('node-id').textContent()) ?? '';
    const cdp = await b.newCDPSession(await b.newPage());
    push.route(subscription, await deliverToServiceWorker(cdp, gateway.url));

    const open: number[] = [];
    for (let i = 0; i < dials + 2; i++) {
      const started = await startDial(a.page, bId);
      const ended = await dialEnd(a.page);
      if (i >= 2) open.push(ended - started); // the first dials warm up both pages
      await a.page.waitForTimeout(50);
    }

    const context = b;
    const worker = async () =>
      context.serviceWorkers().find((w) => w.url().startsWith(gateway.url)) ??
      (await context.waitForEvent('serviceworker'));
    const toPush: number[] = [];
    const toConnected: number[] = [];
    let handledBefore = 0;
    for (let i = 0; i < dials + 1; i++) {
      await app?.close();
      app = undefined;
      await waitFor('closed session', async () =>
        (await sessions(gateway)) === 1 ? true : undefined,
      );
      const started = await startDial(a.page, bId);
      // Wait for the service worker to be done before reading notifications: Chromium may
      // drop a notification whose display races with getNotifications() (see src/sw/push.ts).
      const handled = await waitFor(
        'push handled by the service worker',
        async () => {
          const pushes = await (await worker()).evaluate(
            () =>
              (self as unknown as { rtcmesh: { handledPushes: { dialId: string | null }[] } })
                .rtcmesh.handledPushes.length,
          );
          return pushes > handledBefore ? pushes : undefined;
        },
        async () => JSON.stringify({ pushes: push.received.length, refused: push.refused }),
      );
      handledBefore = handled;
      const [shown] = await (await worker()).evaluate(async () =>
        (
          await (
            self as unknown as { registration: ServiceWorkerRegistration }
          ).registration.getNotifications()
        ).map((n) => ({
          at: (n as unknown as { timestamp: number }).timestamp,
          data: n.data as unknown,
        })),
      );
      if (!shown) throw new Error('push bench: the service worker showed no notification');
      // What the notification's Accept runs; Chromium opens windows only in a real click.
      const accepted = await (await worker()).evaluate(
        (data) =>
          (
            self as unknown as {
              rtcmesh: { notificationAction(a: string, d: unknown): Promise<{ url?: string }> };
            }
          ).rtcmesh.notificationAction('accept', data),
        shown.data,
      );
      app = await context.newPage();
      await app.goto(`${gateway.url}${accepted.url ?? '/'}`);
      const ended = await dialEnd(a.page);
      if (i >= 1) {
        toPush.push(shown.at - started);
        toConnected.push(ended - started);
      }
    }
    await a.context.close();
    return {
      open: summarize("B's app open", open),
      toPush: summarize('to push event', toPush),
      toConnected: summarize("B's app closed, woken by push", toConnected),
    };
  } finally {
    await b?.close();
    rmSync(profile, { recursive: true, force: true });
    await gateway.stop();
    await push.close();
  }
}
