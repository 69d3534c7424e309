import type { Browser } from 'playwright-core';
import {
  createNodeRecord,
  generateNodeKeyPair,
  identityOf,
  nodeKeyFromCryptoKeys,
} from '../src/core/identity/index.ts';
import { GatewayClient } from '../src/core/node/gateway-client.ts';
import { chat, dial, expect, noteTime, openApp, test } from './fixtures.ts';
import { PERMISSIONS } from './support/browser.ts';
import { startGateway } from './support/gateway-process.ts';
import { PushService } from './support/push-service.ts';
import {
  expectSessions,
  type ShownNotification,
  SleepingBrowser,
} from './support/sleeping-browser.ts';

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

test('B closed, declines on the notification: A is told "declined"', async ({ browser }) => {
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
    const declined = Date.now();
    const result = await b.clickNotification('decline', shown.data);
    // Sent from the service worker itself, signed with B's key from IndexedDB.
    expect(result).toEqual({ done: 'declined', status: 200 });
    await expect(a.getByTestId('dial-result')).toHaveAttribute('data-code', 'declined', {
      timeout: 30_000,
    });
    noteTime('"declined"', declined, '2 s');
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
      timeout: 60_000,
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
    await expect(a.getByTestId('dial-result')).toContainText('gone');
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
