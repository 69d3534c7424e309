/**
 * Registers the service worker (offline shell, later Web Push) with workbox-window, and
 * offers a reload when a new version of the app has been deployed and is waiting.
 */
import { Workbox } from 'workbox-window';

export function registerServiceWorker(onUpdateReady: (apply: () => void) => void): void {
  if (!('serviceWorker' in navigator)) return;
  const wb = new Workbox('/sw.js');
  wb.addEventListener('waiting', () => {
    onUpdateReady(() => {
      // Reload once the new worker has taken over, so the page and its cache agree.
      wb.addEventListener('controlling', () => window.location.reload());
      wb.messageSkipWaiting();
    });
  });
  wb.register().catch((err: unknown) => console.warn('service worker registration failed', err));
}
