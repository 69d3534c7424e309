/**
 * Web Push in the window (DESIGN §2): subscribes with the gateway's VAPID key and registers
 * the subscription, so a dial can wake this device while the app is closed. The app works
 * without push and says why when it is unavailable, refused or failing.
 */
import { dialToAnswer, isServiceWorkerCallMessage } from '../browser/call-messages.ts';
import { saveSettings } from '../browser/settings-store.ts';
import { GatewayApi } from '../core/api/index.ts';
import { decodeBase64url } from '../core/identity/index.ts';
import { parseValue, pushSubscriptionSchema } from '../core/protocol/messages.ts';
import { detectFeatures } from './features.ts';
import type { NodeClient } from './node-client.ts';

/** Offline, pushManager.subscribe never settles (DESIGN §7): give up after this. */
const SUBSCRIBE_TIMEOUT_MS = 10_000;
const STEP_TIMEOUT_MS = 10_000;

export type PushState = 'on' | 'off' | 'working' | 'unavailable' | 'refused' | 'error';

export interface PushStatus {
  state: PushState;
  detail: string;
}

/** Why this browser cannot do push at all, or undefined when it can. */
export function pushUnsupported(): string | undefined {
  if (!('serviceWorker' in navigator)) return 'this browser has no service workers';
  if (!('PushManager' in window))
    return detectFeatures().homeScreenWouldHelp
      ? 'add rtcmesh to the Home Screen to be rung while it is closed'
      : 'this browser has no Web Push';
  if (!('Notification' in window)) return 'this browser cannot show notifications';
  return undefined;
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what} timed out`)), ms);
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (err: unknown) => {
        clearTimeout(timer);
        reject(err);
      },
    );
  });
}

async function vapidPublicKey(): Promise<Uint8Array<ArrayBuffer>> {
  // The client bounds its own wait (timeoutMs), as every step here must be bounded.
  const info = await new GatewayApi({ gateways: [location.origin] }).info({
    timeoutMs: STEP_TIMEOUT_MS,
  });
  const key = decodeBase64url(info.vapidPublicKey);
  if (key?.length !== 65) throw new Error('the gateway offers no usable push key');
  return key;
}

function sameBytes(a: ArrayBuffer | null, b: Uint8Array): boolean {
  if (!a || a.byteLength !== b.length) return false;
  const bytes = new Uint8Array(a);
  return bytes.every((v, i) => v === b[i]);
}

/**
 * Subscribes (or keeps the subscription made with the gateway's current key) and registers
 * it with the gateway. `ask`: may show the permission prompt (only from a user's action).
 */
export async function enablePush(node: NodeClient, ask: boolean): Promise<PushStatus> {
  const unsupported = pushUnsupported();
  if (unsupported) return { state: 'unavailable', detail: unsupported };
  let permission = Notification.permission;
  if (permission === 'default' && ask) permission = await Notification.requestPermission();
  if (permission === 'denied')
    return { state: 'refused', detail: 'notifications are blocked for this site' };
  if (permission !== 'granted') return { state: 'off', detail: 'turn on to allow notifications' };
  try {
    const registration = await withTimeout(
      navigator.serviceWorker.ready,
      STEP_TIMEOUT_MS,
      'waiting for the service worker',
    );
    const key = await vapidPublicKey();
    let subscription = await registration.pushManager.getSubscription();
    // A subscription made for another gateway key cannot be pushed to by this gateway.
    if (subscription && !sameBytes(subscription.options.applicationServerKey, key)) {
      await subscription.unsubscribe().catch(() => false);
      subscription = null;
    }
    subscription ??= await withTimeout(
      registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: key }),
      SUBSCRIBE_TIMEOUT_MS,
      'subscribing to push (offline?)',
    );
    const json = parseValue(pushSubscriptionSchema, subscription.toJSON());
    if (!json.ok) throw new Error(`the browser gave an unusable subscription: ${json.message}`);
    await withTimeout(
      node.registerPush(json.value),
      STEP_TIMEOUT_MS,
      'registering with the gateway',
    );
    return { state: 'on', detail: 'calls ring here while the app is closed' };
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    if (err instanceof DOMException && err.name === 'NotAllowedError')
      return { state: 'refused', detail: `the browser refused push: ${message}` };
    return { state: 'error', detail: `push is not working: ${message}` };
  }
}

/** Unsubscribes and tells the gateway to forget the subscription. */
export async function disablePush(node: NodeClient): Promise<PushStatus> {
  try {
    const registration = await navigator.serviceWorker?.getRegistration();
    const subscription = await registration?.pushManager.getSubscription();
    await subscription?.unsubscribe().catch(() => false);
    await withTimeout(node.registerPush(null), STEP_TIMEOUT_MS, 'telling the gateway');
    return { state: 'off', detail: 'calls ring only while the app is open' };
  } catch (err) {
    return {
      state: 'error',
      detail: `could not turn push off: ${err instanceof Error ? err.message : String(err)}`,
    };
  }
}

/** After connecting, how long a call accepted on a notification may take to arrive. */
const ACCEPTED_CALL_WAIT_MS = 5000;

/**
 * Calls that came by push, in the window running the node: the notifications switch, the
 * call the app was opened to answer (`#answer=<dialId>`), and what the service worker
 * passes on (a push while this window is visible, an Accept pressed on a notification).
 */
export class PushCalls {
  /**
   * Calls the user already accepted on a notification, not known to have arrived: the node
   * answers them without asking again (it decides calls: NodeClient.expectAcceptedCall).
   */
  private readonly accepting = new Set<string>();

  constructor(
    private readonly node: NodeClient,
    private readonly onAcceptedCallGone: (dialId: string) => void,
  ) {}

  /** `wanted`: the notifications setting as stored (IndexedDB) when the page started. */
  start(toggle: HTMLInputElement, status: HTMLElement, wanted: boolean): void {
    let pushWanted = wanted;
    const setPushWanted = (on: boolean) => {
      pushWanted = on;
      saveSettings({ push: on }).catch((err: unknown) =>
        console.warn('rtcmesh: could not keep the notifications setting', err),
      );
    };
    const show = ({ state, detail }: PushStatus) => {
      status.textContent = detail;
      status.dataset.state = state;
    };
    const unsupported = pushUnsupported();
    toggle.checked = pushWanted && !unsupported;
    toggle.disabled = unsupported !== undefined;
    show(
      unsupported
        ? { state: 'unavailable', detail: `unavailable: ${unsupported}` }
        : pushWanted
          ? { state: 'working', detail: 'turning on…' }
          : { state: 'off', detail: 'calls ring only while the app is open' },
    );
    toggle.addEventListener('change', async () => {
      const on = toggle.checked;
      setPushWanted(on);
      show({ state: 'working', detail: on ? 'turning on…' : 'turning off…' });
      const result = on ? await enablePush(this.node, true) : await disablePush(this.node);
      if (on && (result.state === 'refused' || result.state === 'unavailable')) {
        toggle.checked = false;
        setPushWanted(false);
      }
      show(result);
    });
    // Register on every session: the gateway may have forgotten this node meanwhile.
    this.node.on('status', (s) => {
      if (s !== 'connected') return;
      if (pushWanted && !unsupported) void enablePush(this.node, false).then(show);
      for (const dialId of this.accepting) this.expectSoon(dialId);
    });

    const fromHash = dialToAnswer(location.hash);
    if (fromHash) {
      this.accept(fromHash);
      history.replaceState(null, '', location.pathname + location.search);
    }
    navigator.serviceWorker?.addEventListener('message', (event: MessageEvent) => {
      const msg: unknown = event.data;
      if (!isServiceWorkerCallMessage(msg)) return;
      if (msg.type === 'rtcmesh:answer') this.accept(msg.dialId);
      // The gateway pushed because this node had no session: get one, and the call follows.
      this.reconnect();
      if (msg.type === 'rtcmesh:answer' && this.node.gateway.status === 'connected')
        this.expectSoon(msg.dialId);
    });
  }

  private accept(dialId: string): void {
    this.accepting.add(dialId);
    this.node.expectAcceptedCall(dialId);
  }

  private reconnect(): void {
    if (this.node.gateway.status === 'reconnecting') this.node.gateway.reconnectNow();
    else this.node.start();
  }

  private expectSoon(dialId: string): void {
    setTimeout(async () => {
      if (this.accepting.delete(dialId) && (await this.node.dropAcceptedCall(dialId)))
        this.onAcceptedCallGone(dialId);
    }, ACCEPTED_CALL_WAIT_MS);
  }
}
