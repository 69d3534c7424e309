/**
 * Push-woken accept (DESIGN §2): B's app is closed but its service worker lives; A dials;
 * the gateway sends a real VAPID-signed, RFC 8291 encrypted push to a local push service,
 * which checks and decrypts it and hands it to B's service worker over CDP (TESTING.md).
 *
 * CDP cannot click a notification, and Chromium opens windows only inside a real click. So
 * the tests run what a click runs (the service worker's notification handler, with the
 * notification's own data) and open the URL that handler asks to open.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type Browser,
  type BrowserContext,
  chromium,
  type Page,
  type Worker,
} from 'playwright-core';
import {
  createNodeRecord,
  generateNodeKeyPair,
  identityOf,
  nodeKeyFromCryptoKeys,
} from '../src/core/identity/index.ts';
import { GatewayClient } from '../src/core/node/gateway-client.ts';
import { expect, openApp, test, waitForServiceWorker } from './fixtures.ts';
import { launchOptions, PERMISSIONS } from './support/browser.ts';
import { type GatewayProcess, startGateway } from './support/gateway-process.ts';
import {
  deliverToServiceWorker,
  PushService,
  standInPushManager,
  type TestSubscription,
} from './support/push-service.ts';

interface ShownNotification {
  title: string;
  body: string;
  tag: string;
  actions: string[];
  data: { dialId: string; from: string; name: string; expiresAt: number };
}

/** B: a real profile (so its service worker outlives its pages) subscribed to `push`. */
class SleepingBrowser {
  private constructor(
    readonly context: BrowserContext,
    readonly profile: string,
    readonly subscription: TestSubscription,
    readonly id: string,
    readonly gatewayUrl: string,
    public app: Page | undefined,
  ) {}

  static async open(gateway: GatewayProcess, push: PushService): Promise<SleepingBrowser> {
    const profile = mkdtempSync(join(tmpdir(), 'rtcmesh-profile-'));
    const context = await chromium.launchPersistentContext(profile, {
      ...launchOptions(),
      permissions: [...PERMISSIONS, 'notifications'],
    });
    const subscription = push.subscribe();
    await context.addInitScript(standInPushManager, subscription);
    const app = context.pages()[0] ?? (await context.newPage());
    const { id } = await openApp(app, gateway.url);
    await waitForServiceWorker(app);
    await expect(app.getByTestId('status')).toHaveText('connected');
    await app.getByText('Share, keys and certificate').click();
    await app.getByTestId('push-enabled').check();
    await expect(app.getByTestId('push-status')).toHaveAttribute('data-state', 'on');
    // A tab that is not the app keeps CDP reachable once the app is closed.
    const cdp = await context.newCDPSession(await context.newPage());
    push.route(subscription, await deliverToServiceWorker(cdp, gateway.url));
    return new SleepingBrowser(context, profile, subscription, id, gateway.url, app);
  }

  /** Closes the app; the service worker stays. Resolves once the gateway has no session for B. */
  async closeApp(gateway: GatewayProcess, sessionsLeft: number): Promise<void> {
    await this.app?.close();
    this.app = undefined;
    await expectSessions(gateway, sessionsLeft);
  }

  /** The service worker as it runs now (the browser may have stopped and restarted it). */
  serviceWorker(): Promise<Worker> {
    const running = this.context
      .serviceWorkers()
      .filter((w) => w.url().startsWith(this.gatewayUrl))
      .pop();
    return running ? Promise.resolve(running) : this.context.waitForEvent('serviceworker');
  }

  /** Runs `fn` in the service worker; a handle to a worker the browser restarted never answers. */
  private async inServiceWorker<R>(fn: () => Promise<R>): Promise<R> {
    for (let attempt = 0; ; attempt++) {
      const worker = await this.serviceWorker();
      const result = await Promise.race([
        worker.evaluate(fn).then((value) => ({ value })),
        new Promise<undefined>((resolve) => setTimeout(resolve, 2000)),
      ]);
      if (result) return result.value;
      if (attempt >= 5) throw new Error('the service worker does not answer');
    }
  }

  /**
   * Waits until the service worker has handled the push of this dial, and says what it did.
   * Tests read notifications only after this: Chromium may drop a notification whose
   * display races with a getNotifications() call, so polling for one can lose it.
   */
  async handledPush(dialId: string): Promise<string> {
    let outcome: string | undefined;
    await expect
      .poll(async () => {
        const handled = await this.inServiceWorker(async () =>
          (
            self as unknown as {
              rtcmesh: { handledPushes: { dialId: string | null; outcome: string }[] };
            }
          ).rtcmesh.handledPushes.map((p) => [p.dialId, p.outcome]),
        );
        outcome = handled.find(([id]) => id === dialId)?.[1] ?? undefined;
        return outcome;
      })
      .toBeDefined();
    return outcome ?? '';
  }

  async notifications(): Promise<ShownNotification[]> {
    return this.inServiceWorker(async () => {
      const registration = (self as unknown as { registration: ServiceWorkerRegistration })
        .registration;
      return (await registration.getNotifications()).map((n) => ({
        title: n.title,
        body: n.body,
        tag: n.tag,
        actions: ((n as unknown as { actions: { title: string }[] }).actions ?? []).map(
          (a) => a.title,
        ),
        data: n.data as ShownNotification['data'],
      }));
    });
  }

  /** What clicking Accept or Decline on the notification runs (see the top of this file). */
  async clickNotification(
    action: 'accept' | 'decline',
    data: ShownNotification['data'],
  ): Promise<{ done: string; url?: string; status?: number }> {
    const worker = await this.serviceWorker();
    return worker.evaluate(
      ([action, data]) =>
        (
          self as unknown as {
            rtcmesh: {
              notificationAction(
                a: string,
                d: unknown,
              ): Promise<{ done: string; url?: string; status?: number }>;
            };
          }
        ).rtcmesh.notificationAction(action, data),
      [action, data] as const,
    );
  }

  async close(): Promise<void> {
    await this.context.close();
    rmSync(this.profile, { recursive: true, force: true });
  }
}

async function expectSessions(gateway: GatewayProcess, n: number): Promise<void> {
  await expect
    .poll(async () => {
      const metrics = await (await fetch(`${gateway.url}/metrics`)).text();
      return Number(/^rtcmesh_sessions (\d+)$/m.exec(metrics)?.[1]);
    })
    .toBe(n);
}

async function dial(page: Page, to: string): Promise<void> {
  await page.getByTestId('dial-to').fill(to);
  await page.getByRole('button', { name: 'Dial', exact: true }).click();
}

async function chat(from: Page, to: Page, text: string): Promise<void> {
  await from.locator('article.link[data-open="true"] .compose input').fill(text);
  await from.locator('article.link[data-open="true"] .compose button').click();
  await expect(to.locator('article.link .messages li.theirs').last()).toContainText(text);
}

/** The push service, a gateway allowed to post to it (it is on loopback), and A's page. */
async function startA(browser: Browser, gatewayArgs: string[]) {
  const push = await PushService.start();
  const gateway = await startGateway({ args: ['--push-allow-private', ...gatewayArgs] });
  const aContext = await browser.newContext({ permissions: PERMISSIONS });
  const a = await aContext.newPage();
  const stop = async () => {
    await aContext.close();
    await Promise.all([gateway.stop(), push.close()]);
  };
  return { push, gateway, aContext, a, stop };
}

/** The above and B, a browser subscribed to push. */
async function setup(browser: Browser, gatewayArgs: string[] = []) {
  const { push, gateway, a, stop } = await startA(browser, gatewayArgs);
  const openA = async () => {
    const { id } = await openApp(a, gateway.url);
    await expect(a.getByTestId('status')).toHaveText('connected');
    return id;
  };
  const opening = [openA(), SleepingBrowser.open(gateway, push)] as const;
  const [aId, b] = await Promise.all(opening).catch(async (err: unknown) => {
    await opening[1].then((b) => b.close()).catch(() => undefined);
    await stop();
    throw err;
  });
  const teardown = async () => {
    await b.close();
    await stop();
  };
  return { push, gateway, a, aId, b, teardown };
}

test.describe.configure({ mode: 'parallel' });

test('B closed: A dials, B is woken by push, accepts, and they talk', async ({ browser }) => {
  const { push, gateway, a, aId, b, teardown } = await setup(browser);
  try {
    await b.closeApp(gateway, 1);
    await dial(a, b.id);
    await expect(a.getByTestId('dial-result')).toHaveAttribute('data-code', 'waking');
    await expect(a.getByTestId('dial-result')).toContainText(`Waking ${b.id}`);

    const received = await push.nextPush(b.subscription);
    const info = (await (await fetch(`${gateway.url}/v1/info`)).json()) as {
      vapidPublicKey: string;
    };
    expect(received.vapidKey).toBe(info.vapidPublicKey);
    expect(received.claims.aud).toBe(push.origin);
    expect(received.urgency).toBe('high');
    expect(received.ttl).toBeGreaterThan(0);
    const payload = JSON.parse(received.plaintext) as { t: string; dialId: string; from: string };
    expect(payload).toMatchObject({ t: 'incoming', from: aId });
    expect(push.refused).toEqual([]);

    expect(await b.handledPush(payload.dialId)).toBe('notified');
    const [shown, ...more] = await b.notifications();
    expect(more).toEqual([]);
    expect(shown).toMatchObject({
      title: `Node ${aId.slice(0, 8)}… wants to connect`,
      body: aId,
      actions: ['Accept', 'Decline'],
      data: { dialId: payload.dialId, from: aId },
    });
    expect(push.deliveryErrors).toEqual([]);

    const result = await b.clickNotification('accept', shown?.data ?? payloadData(payload));
    expect(result).toMatchObject({ done: 'open-refused', url: `/#answer=${payload.dialId}` });
    const app = await b.context.newPage();
    await app.goto(`${gateway.url}${result.url}`);
    await expect(a.getByTestId('dial-result')).toHaveAttribute('data-code', 'connected');
    await expect(app.locator(`article.link[data-peer="${aId}"]`)).toBeVisible();
    expect(await b.notifications()).toEqual([]);
    await expect(app.getByTestId('incoming')).toBeHidden(); // answered, never asked again
    await chat(a, app, 'hello, sleeper');
    await chat(app, a, 'hello, I was asleep');
  } finally {
    await teardown();
  }
});

function payloadData(payload: { dialId: string; from: string }): ShownNotification['data'] {
  return { ...payload, name: '', expiresAt: 0 };
}

test('B closed, declines on the notification: A is told "declined" within 2 seconds', async ({
  browser,
}) => {
  const { push, gateway, a, b, teardown } = await setup(browser);
  try {
    await b.closeApp(gateway, 1);
    await dial(a, b.id);
    const { dialId } = JSON.parse((await push.nextPush(b.subscription)).plaintext) as {
      dialId: string;
    };
    expect(await b.handledPush(dialId)).toBe('notified');
    const [shown] = await b.notifications();
    if (!shown) throw new Error('no notification');
    const result = await b.clickNotification('decline', shown.data);
    // Sent from the service worker itself, signed with B's key from IndexedDB.
    expect(result).toEqual({ done: 'declined', status: 200 });
    await expect(a.getByTestId('dial-result')).toHaveAttribute('data-code', 'declined', {
      timeout: 2000,
    });
    await expect(a.getByTestId('dial-result')).toContainText(`${b.id} declined`);
    expect(await b.notifications()).toEqual([]);
  } finally {
    await teardown();
  }
});

test('B closed, nobody answers: A is told "timed out" after --dial-timeout', async ({
  browser,
}) => {
  const { push, gateway, a, b, teardown } = await setup(browser, ['--dial-timeout', '5s']);
  try {
    await b.closeApp(gateway, 1);
    const dialed = Date.now();
    await dial(a, b.id);
    const { dialId } = JSON.parse((await push.nextPush(b.subscription)).plaintext) as {
      dialId: string;
    };
    expect(await b.handledPush(dialId)).toBe('notified');
    expect(await b.notifications()).toHaveLength(1);
    await expect(a.getByTestId('dial-result')).toHaveAttribute('data-code', 'waking');
    await expect(a.getByTestId('dial-result')).toHaveAttribute('data-code', 'timeout', {
      timeout: 15_000,
    });
    expect(Date.now() - dialed).toBeGreaterThanOrEqual(5000);
    await expect(a.getByTestId('dial-result')).toContainText('did not answer within 5 s');
  } finally {
    await teardown();
  }
});

test('B open and visible: the call is offered in the app, never as a notification', async ({
  browser,
}) => {
  const { push, gateway, a, aId, b, teardown } = await setup(browser);
  try {
    const app = b.app;
    if (!app) throw new Error('B has no app page');
    expect(await app.evaluate(() => document.visibilityState)).toBe('visible');
    // Connected: the gateway rings B's session; nothing is pushed.
    await dial(a, b.id);
    await expect(app.getByTestId('incoming')).toBeVisible();
    await expect(app.getByTestId('incoming-id')).toHaveText(aId);
    await app.getByRole('button', { name: 'Decline' }).click();
    await expect(a.getByTestId('dial-result')).toHaveAttribute('data-code', 'declined');
    expect(push.received).toEqual([]);

    // Visible but without a session (its node stopped): the gateway pushes, and the service
    // worker hands the call to the window instead of notifying.
    await app.evaluate(() =>
      (globalThis as unknown as { rtcmesh: { node: { stop(): void } } }).rtcmesh.node.stop(),
    );
    await expectSessions(gateway, 1);
    await dial(a, b.id);
    const { dialId } = JSON.parse((await push.nextPush(b.subscription)).plaintext) as {
      dialId: string;
    };
    expect(await b.handledPush(dialId)).toBe('to-window');
    await expect(app.getByTestId('incoming')).toBeVisible();
    await expect(app.getByTestId('incoming-id')).toHaveText(aId);
    expect(await b.notifications()).toEqual([]);
    await app.getByRole('button', { name: 'Accept' }).click();
    await expect(a.getByTestId('dial-result')).toHaveAttribute('data-code', 'connected');
    await chat(a, app, 'you were right here');
    expect(await b.notifications()).toEqual([]);
  } finally {
    await teardown();
  }
});

test('a push service answering 410: the gateway drops the subscription', async ({ browser }) => {
  const { push, gateway, a, stop } = await startA(browser, []);
  try {
    // B registers its subscription over HTTP alone (POST /v1/register), as a node without a
    // session may; this push service then says the subscription is gone.
    const pair = await generateNodeKeyPair();
    const identity = await identityOf(await nodeKeyFromCryptoKeys(pair.privateKey, pair.publicKey));
    const subscription = push.subscribe();
    push.answerWith(subscription, 410);
    const fingerprint = `sha-256 ${Array(32).fill('AB').join(':')}`;
    const registration = new GatewayClient({
      gatewayUrl: gateway.url,
      identity,
      record: () => createNodeRecord(identity, { fingerprints: [fingerprint] }),
      rtc: {
        createPeerConnection: () => {
          throw new Error('HTTP only');
        },
      },
      onMessage: () => {},
      onStatus: () => {},
    });
    expect(await registration.register(subscription)).toMatchObject({ push: true });
    await openApp(a, gateway.url);
    await expect(a.getByTestId('status')).toHaveText('connected');

    await dial(a, identity.id);
    await expect(a.getByTestId('dial-result')).toHaveAttribute('data-code', 'offline');
    await expect(a.getByTestId('dial-result')).toContainText('410');
    await expect(a.getByTestId('dial-result')).toContainText('dropped');
    expect(push.received.map((p) => p.status)).toEqual([410]);
    // Dropped: the next dial is not pushed at all.
    await dial(a, identity.id);
    await expect(a.getByTestId('dial-result')).toHaveText(
      new RegExp(`node ${identity.id} is not connected$`),
    );
    await expect(a.getByTestId('dial-result')).toHaveAttribute('data-code', 'offline');
    expect(push.received).toHaveLength(1);
    const metrics = await (await fetch(`${gateway.url}/metrics`)).text();
    expect(metrics).toMatch(/^rtcmesh_push_total\{result="gone"\} 1$/m);
  } finally {
    await stop();
  }
});
