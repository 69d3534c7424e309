/**
 * B of the push tests: a browser with a real profile (so its service worker outlives its
 * pages), subscribed to a local push service that delivers to that service worker over CDP.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from '@playwright/test';
import { type BrowserContext, chromium, type Page, type Worker } from 'playwright-core';
import { openApp, waitForServiceWorker } from '../fixtures.ts';
import { launchOptions, PERMISSIONS } from './browser.ts';
import { type GatewayProcess, metric } from './gateway-process.ts';
import {
  deliverToServiceWorker,
  type PushService,
  standInPushManager,
  type TestSubscription,
} from './push-service.ts';

export interface ShownNotification {
  title: string;
  body: string;
  tag: string;
  actions: string[];
  data: { dialId: string; from: string; name: string; expiresAt: number };
}

/** B: a real profile (so its service worker outlives its pages) subscribed to `push`. */
export class SleepingBrowser {
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

/** Waits until the gateway counts `n` live sessions. */
export async function expectSessions(gateway: GatewayProcess, n: number): Promise<void> {
  await expect.poll(() => metric(gateway, 'rtcmesh_sessions')).toBe(n);
}
