/**
 * Web Push in the service worker (DESIGN §2): a dial to this device while the app is closed
 * arrives as an encrypted push and shows a notification with Accept and Decline. Accept
 * opens (or focuses) the app, which answers the call; Decline is sent from here, signed with
 * the node key from IndexedDB. With a visible window the window gets the call instead.
 */

import * as z from 'zod/mini';
import { answerUrl, type ServiceWorkerCallMessage } from '../browser/call-messages.ts';
import { openNodeDb } from '../browser/db.ts';
import { loadKnownGateways } from '../browser/gateway-store.ts';
import { loadNodeIdentity } from '../browser/identity-store.ts';
import { GatewayApi, GatewayHttpError } from '../core/api/index.ts';
import {
  dialIdSchema,
  type PushPayload,
  parseMessage,
  parseValue,
  pushPayloadSchema,
} from '../core/protocol/messages.ts';

declare const self: ServiceWorkerGlobalScope;

/** What a call notification carries, for its click handler. */
const callNotificationSchema = z.object({
  dialId: dialIdSchema,
  from: z.string(),
  name: z.string(),
  expiresAt: z.number(),
});
export type CallNotificationData = z.infer<typeof callNotificationSchema>;

export type NotificationAction = 'accept' | 'decline';

/** What handling a notification action did (returned to tests and the console). */
export type NotificationActionResult =
  | { done: 'focused'; dialId: string }
  | { done: 'opened'; url: string }
  /** Browsers open windows only inside a real notification click. */
  | { done: 'open-refused'; url: string; message: string }
  | { done: 'declined'; status: number }
  | { done: 'failed'; message: string };

const callTag = (dialId: string) => `call-${dialId}`;

/** What the service worker did with a push, once done (for the console and for tests). */
export interface HandledPush {
  dialId: string | null;
  outcome: 'notified' | 'missed' | 'to-window' | 'unreadable';
  /** When it was done (ms since epoch). */
  at: number;
}

/**
 * The latest pushes handled, newest last. Tests wait for a push here before reading
 * notifications back: Chromium may drop a notification whose display races with a
 * getNotifications() call (seen in headless Chromium 156), so they must not poll for it.
 */
export const handledPushes: HandledPush[] = [];

function handled(dialId: string | null, outcome: HandledPush['outcome']): void {
  handledPushes.push({ dialId, outcome, at: Date.now() });
  if (handledPushes.length > 20) handledPushes.shift();
}

/** A name to show for the caller: the one the user gave it, or the one in its record. */
async function callerName(payload: PushPayload): Promise<string> {
  // The notification matters more than the name: any storage trouble falls back.
  const saved = await openNodeDb()
    .then((db) => db.get('contacts', payload.from))
    .catch(() => undefined);
  return saved?.name || payload.name || `Node ${payload.from.slice(0, 8)}…`;
}

async function windows(): Promise<readonly WindowClient[]> {
  return self.clients.matchAll({ type: 'window', includeUncontrolled: true });
}

async function onPush(text: string): Promise<void> {
  const parsed = parseMessage(pushPayloadSchema, text);
  if (!parsed.ok) {
    // A push must show something (userVisibleOnly); say what happened.
    await self.registration.showNotification('rtcmesh', {
      body: 'A call arrived that this app could not read.',
      icon: '/icons/icon-192.png',
    });
    handled(null, 'unreadable');
    return;
  }
  const payload = parsed.value;
  const open = await windows();
  if (open.some((c) => c.visibilityState === 'visible')) {
    const msg: ServiceWorkerCallMessage = {
      type: 'rtcmesh:incoming',
      dialId: payload.dialId,
      from: payload.from,
    };
    // All of them: the one running the node (it holds a Web Lock) takes the call.
    for (const client of open) client.postMessage(msg);
    handled(payload.dialId, 'to-window');
    return;
  }
  const name = await callerName(payload);
  const data: CallNotificationData = {
    dialId: payload.dialId,
    from: payload.from,
    name,
    expiresAt: payload.expiresAt,
  };
  if (Date.now() >= payload.expiresAt) {
    await self.registration.showNotification(`Missed call from ${name}`, {
      body: payload.from,
      icon: '/icons/icon-192.png',
      tag: callTag(payload.dialId),
      data,
    });
    handled(payload.dialId, 'missed');
    return;
  }
  await self.registration.showNotification(`${name} wants to connect`, {
    body: payload.from,
    icon: '/icons/icon-192.png',
    tag: callTag(payload.dialId),
    requireInteraction: true,
    actions: [
      { action: 'accept', title: 'Accept' },
      { action: 'decline', title: 'Decline' },
    ],
    data,
  } as NotificationOptions);
  handled(payload.dialId, 'notified');
}

/**
 * Declines over HTTP, signed with this node's key (DESIGN §2): the caller is told at once.
 * In cluster mode any gateway passes the decline to the one holding the call, so when the
 * app's own gateway is down the others the node last knew of are tried in turn.
 */
async function decline(dialId: string): Promise<NotificationActionResult> {
  const identity = await loadNodeIdentity();
  if (!identity) return { done: 'failed', message: 'this browser has no node identity' };
  const gateways = [...new Set([self.location.origin, ...(await loadKnownGateways())])];
  // The typed client signs for each gateway and moves on when one is down behind a proxy
  // or cut off from its cluster (no answer, 502–504): another may pass the decline on.
  const api = new GatewayApi({ gateways, identity });
  try {
    await api.rejectDial(dialId, { reason: 'declined' });
    return { done: 'declined', status: 200 };
  } catch (err) {
    // The gateway's final word (the call is over, say): the caller is not ringing any more.
    if (err instanceof GatewayHttpError) return { done: 'declined', status: err.status };
    return { done: 'failed', message: err instanceof Error ? err.message : String(err) };
  }
}

/** Focuses a window of the app and hands it the call, or opens one that answers it. */
async function accept(dialId: string): Promise<NotificationActionResult> {
  const open = await windows();
  const client = open.find((c) => c.focused) ?? open[0];
  if (client) {
    await client.focus().catch(() => client);
    // All of them: the one running the node answers.
    const msg: ServiceWorkerCallMessage = { type: 'rtcmesh:answer', dialId };
    for (const each of open) each.postMessage(msg);
    return { done: 'focused', dialId };
  }
  const url = answerUrl(dialId);
  try {
    await self.clients.openWindow(url);
    return { done: 'opened', url };
  } catch (err) {
    return { done: 'open-refused', url, message: String(err) };
  }
}

/** What a click on a call notification runs: the body or Accept answers, Decline declines. */
export async function onNotificationAction(
  action: NotificationAction,
  notificationData: unknown,
): Promise<NotificationActionResult> {
  const data = parseValue(callNotificationSchema, notificationData);
  if (!data.ok) return { done: 'failed', message: `not a call notification: ${data.message}` };
  const { dialId } = data.value;
  for (const n of await self.registration.getNotifications({ tag: callTag(dialId) })) n.close();
  try {
    return action === 'decline' ? await decline(dialId) : await accept(dialId);
  } catch (err) {
    return { done: 'failed', message: err instanceof Error ? err.message : String(err) };
  }
}

export function installPushHandlers(): void {
  self.addEventListener('push', (event) => {
    event.waitUntil(onPush(event.data?.text() ?? ''));
  });
  self.addEventListener('notificationclick', (event) => {
    event.notification.close();
    const action: NotificationAction = event.action === 'decline' ? 'decline' : 'accept';
    event.waitUntil(onNotificationAction(action, event.notification.data));
  });
}
