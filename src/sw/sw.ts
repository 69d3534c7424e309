/**
 * The service worker: serves the app shell offline from a Workbox precache, takes over when
 * the user accepts an update, and rings for calls that arrive by Web Push (./push.ts).
 */
import { clientsClaim } from 'workbox-core';
import {
  cleanupOutdatedCaches,
  createHandlerBoundToURL,
  type PrecacheEntry,
  precacheAndRoute,
} from 'workbox-precaching';
import { NavigationRoute, registerRoute } from 'workbox-routing';
import { installMeshHttp } from './mesh-http.ts';
import {
  handledPushes,
  installPushHandlers,
  type NotificationAction,
  onNotificationAction,
} from './push.ts';

declare const self: ServiceWorkerGlobalScope & {
  __WB_MANIFEST: (string | PrecacheEntry)[];
  rtcmesh?: {
    notificationAction: typeof onNotificationAction;
    handledPushes: typeof handledPushes;
  };
};

// First: mesh web pages' requests (/mesh/… and their absolute paths) are the device's, not the app's.
installMeshHttp();

// Filled in at build time (scripts/build.mjs) with every file of the built shell.
precacheAndRoute(self.__WB_MANIFEST);
cleanupOutdatedCaches();

// Any in-app URL opens the shell; the gateway's own endpoints always go to the network.
registerRoute(
  new NavigationRoute(createHandlerBoundToURL('/index.html'), {
    denylist: [/^\/v1\//, /^\/healthz$/, /^\/metrics$/, /^\/mesh\//],
  }),
);

installPushHandlers();
// For the console and for tests: what a notification click runs (CDP cannot click a
// notification, so the e2e tests call this with the notification's data), and what became
// of the latest pushes.
self.rtcmesh = {
  notificationAction: (action: NotificationAction, data: unknown) =>
    onNotificationAction(action, data),
  handledPushes,
};

self.addEventListener('message', (event) => {
  if ((event.data as { type?: unknown } | null)?.type === 'SKIP_WAITING') void self.skipWaiting();
});

// The first install controls open pages at once; updates wait for the user (see client).
clientsClaim();
