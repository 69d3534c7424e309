/**
 * Devices' web pages in the app. The service worker (src/sw/mesh-http.ts) answers
 * /mesh/<peer>/<service>/… over mesh streams but cannot hold a data channel: this tab dials
 * for it and hands over each stream's data port. And each connection's panel gets a "Web
 * page" row that opens the device's `rtcmesh expose SERVICE HOST:PORT --http` in a frame.
 */
import type { NodeClient } from './node-client.ts';

const PORT_REQUEST = 'rtcmesh-http-port';
export const DEFAULT_WEB_SERVICE = 'http';

/**
 * The devices' pages the user opened from a panel. A device's page runs in the app's origin,
 * so a link to /mesh/<stranger>/… must not load a stranger's page by itself: the service
 * worker gets a stream only for a page opened here (in any tab of the app: localStorage).
 */
const ALLOWED_KEY = 'rtcmesh.meshWeb.opened';
const MAX_ALLOWED = 100;
const scopeKey = (peer: string, service: string) => `${peer}/${service}`;

function openedPages(): string[] {
  try {
    const list: unknown = JSON.parse(localStorage.getItem(ALLOWED_KEY) ?? '[]');
    return Array.isArray(list) ? list.filter((x): x is string => typeof x === 'string') : [];
  } catch {
    return [];
  }
}

function allowPage(peer: string, service: string): void {
  const key = scopeKey(peer, service);
  const list = [...openedPages().filter((k) => k !== key), key].slice(-MAX_ALLOWED);
  localStorage.setItem(ALLOWED_KEY, JSON.stringify(list));
}

/** Answers the service worker's requests for stream ports. */
export function serveMeshPorts(node: NodeClient): void {
  if (!('serviceWorker' in navigator)) return;
  navigator.serviceWorker.addEventListener('message', (event: MessageEvent) => {
    const data = event.data as { type?: unknown; peer?: unknown; service?: unknown } | null;
    const reply = event.ports[0];
    if (data?.type !== PORT_REQUEST || !reply) return;
    if (typeof data.peer !== 'string' || typeof data.service !== 'string') return;
    if (!openedPages().includes(scopeKey(data.peer, data.service))) {
      reply.postMessage({
        ok: false,
        error: `a link alone does not open a device's page: open ${data.service} from the connection's panel in the app first`,
      });
      return;
    }
    node.dialHandle(data.peer, data.service).then(
      ({ peer, channel }) =>
        reply.postMessage(
          { ok: true, peer, snapshot: channel.snapshot, pending: channel.pending },
          [channel.port],
        ),
      (err: unknown) => reply.postMessage({ ok: false, error: (err as Error).message }),
    );
  });
  // Messages wait until the page says it listens.
  navigator.serviceWorker.startMessages();
}

/** The URL the service worker answers for `path` on `peer`'s web `service`. */
export function meshUrl(peer: string, service: string, path = '/'): string {
  return `/mesh/${encodeURIComponent(peer)}/${encodeURIComponent(service)}${path}`;
}

/** The "Web page" row of a connection's panel: a service name, Open, and the page in a frame. */
export function webPanel(peer: string): HTMLElement {
  const section = document.createElement('section');
  section.className = 'web';
  section.innerHTML = `
    <form class="web-open">
      <label>Web page <input name="service" class="web-service" aria-label="web service" value="${DEFAULT_WEB_SERVICE}" size="10" /></label>
      <button type="submit" class="secondary">Open</button>
      <a class="web-tab" target="_blank" rel="noopener" hidden>in a new tab</a>
    </form>
    <iframe class="web-frame" title="the device's web page" hidden></iframe>`;
  const form = section.querySelector('form') as HTMLFormElement;
  const frame = section.querySelector('iframe') as HTMLIFrameElement;
  const tab = section.querySelector('.web-tab') as HTMLAnchorElement;
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const service = (form.elements.namedItem('service') as HTMLInputElement).value.trim();
    if (!service) return;
    allowPage(peer, service);
    const url = meshUrl(peer, service);
    frame.src = url;
    frame.hidden = false;
    tab.href = url;
    tab.hidden = false;
  });
  return section;
}
