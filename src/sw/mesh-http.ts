/**
 * Web pages of mesh devices, in the app (README "Open a device's web page"): the service worker
 * answers /mesh/<peer>/<service>/<path> by carrying the request over a mesh stream to the
 * device's `rtcmesh expose SERVICE HOST:PORT --http` (core/services/http-over-stream.ts), and
 * streams the answer back as it comes.
 *
 * A service worker cannot hold a data channel: an app tab dials for it (src/client/mesh-web.ts)
 * and hands over the stream's data port. Absolute paths (/static/app.js) asked for by a mesh
 * page go to that page's device: the page is known by the client the worker answered its
 * navigation for, or, after the worker restarted, by the request's referrer.
 */

import {
  type ChannelData,
  type ChannelSnapshot,
  PortDataChannel,
} from '../browser/port-channel.ts';
import type { VerifiedRecord } from '../core/identity/index.ts';
import { MeshStream, type StreamMessage } from '../core/node/stream.ts';
import {
  bodyFrom,
  encodeHead,
  endToEnd,
  parseResponseHead,
  sendBody,
} from '../core/services/http-over-stream.ts';

declare const self: ServiceWorkerGlobalScope;

export const MESH_PREFIX = '/mesh/';
/** The message an app tab answers with a stream's data port. */
export const PORT_REQUEST = 'rtcmesh-http-port';

export interface PortRequest {
  type: typeof PORT_REQUEST;
  peer: string;
  service: string;
}

export type PortReply =
  | { ok: true; peer: VerifiedRecord; snapshot: ChannelSnapshot; pending: ChannelData[] }
  | { ok: false; error: string };

interface Scope {
  peer: string;
  service: string;
}

const PORT_WAIT_MS = 60_000;
/** Pages (clients) this worker loaded from a device; bounded: the oldest are forgotten. */
const scopeByClient = new Map<string, Scope>();
const MAX_SCOPED_CLIENTS = 200;

const scopePath = (s: Scope) => `${MESH_PREFIX}${s.peer}/${encodeURIComponent(s.service)}`;

/** The device and the path on it, for a URL under /mesh/. */
function parseScoped(url: URL): (Scope & { path: string }) | undefined {
  if (!url.pathname.startsWith(MESH_PREFIX)) return undefined;
  const m = /^\/mesh\/([^/]+)\/([^/]+)(\/.*)?$/.exec(url.pathname);
  if (!m?.[1] || !m[2]) return undefined;
  try {
    return {
      peer: decodeURIComponent(m[1]),
      service: decodeURIComponent(m[2]),
      path: (m[3] ?? '/') + url.search,
    };
  } catch {
    return undefined; // a malformed escape: not a page of ours
  }
}

function remember(clientId: string, scope: Scope): void {
  if (!clientId) return;
  scopeByClient.delete(clientId);
  scopeByClient.set(clientId, scope);
  if (scopeByClient.size > MAX_SCOPED_CLIENTS) {
    const oldest = scopeByClient.keys().next().value;
    if (oldest !== undefined) scopeByClient.delete(oldest);
  }
}

export function installMeshHttp(): void {
  self.addEventListener('fetch', (event) => {
    const url = new URL(event.request.url);
    if (url.origin !== self.location.origin) return;
    const scoped = parseScoped(url);
    if (scoped) {
      if (event.request.mode === 'navigate') remember(event.resultingClientId, scoped);
      event.respondWith(answer(event.request, scoped, scoped.path));
      return;
    }
    // An absolute path asked for by a mesh page goes to that page's device.
    const referrer = event.request.referrer ? new URL(event.request.referrer) : undefined;
    const scope =
      scopeByClient.get(event.clientId) ??
      (referrer?.origin === self.location.origin ? parseScoped(referrer) : undefined);
    if (!scope) return;
    const path = url.pathname + url.search;
    if (event.request.mode === 'navigate') {
      // A link or form to /about: into the scope, so the address and later requests stay in
      // it (307 keeps a form's method and body).
      event.respondWith(Response.redirect(`${scopePath(scope)}${path}`, 307));
      return;
    }
    event.respondWith(answer(event.request, scope, path));
  });
}

/** Asks an app tab to dial; resolves with the stream it hands over. */
async function openStream(scope: Scope): Promise<MeshStream> {
  const windows = await self.clients.matchAll({ type: 'window' });
  const app = windows.find((c) => !new URL(c.url).pathname.startsWith(MESH_PREFIX));
  if (!app)
    throw new Error('no rtcmesh app tab is open to connect through: open the app, then reload');
  const channel = new MessageChannel();
  const reply = new Promise<{ data: PortReply; port: MessagePort | undefined }>(
    (resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no connection to the device in ${PORT_WAIT_MS / 1000} s`)),
        PORT_WAIT_MS,
      );
      channel.port1.onmessage = (ev: MessageEvent<PortReply>) => {
        clearTimeout(timer);
        channel.port1.close();
        resolve({ data: ev.data, port: ev.ports[0] });
      };
    },
  );
  app.postMessage(
    { type: PORT_REQUEST, peer: scope.peer, service: scope.service } satisfies PortRequest,
    [channel.port2],
  );
  const { data, port } = await reply;
  if (!data.ok || !port) throw new Error(data.ok ? 'the app sent no stream' : data.error);
  const stream = new MeshStream(
    data.peer,
    scope.service,
    new PortDataChannel(port, data.snapshot, { pending: data.pending }),
    () => Promise.reject(new Error('no path information in the service worker')),
  );
  return stream;
}

function problem(status: number, title: string, detail: string): Response {
  const esc = (t: string) => t.replace(/[&<>"]/g, (c) => `&#${c.charCodeAt(0)};`);
  return new Response(
    `<!doctype html><meta charset="utf-8"><title>${esc(title)}</title><h1>${esc(title)}</h1><p>${esc(detail)}</p>`,
    { status, headers: { 'content-type': 'text/html; charset=utf-8', 'x-rtcmesh-error': detail } },
  );
}

async function answer(request: Request, scope: Scope, path: string): Promise<Response> {
  let stream: MeshStream;
  try {
    stream = await openStream(scope);
  } catch (err) {
    return problem(502, 'Could not reach the device', (err as Error).message);
  }
  const writer = stream.writable.getWriter();
  const send = (m: StreamMessage) => writer.write(m);
  const reader = stream.readable.getReader();
  try {
    // Headers the page's fetch set; what the browser adds for the network (cookies) a service
    // worker never sees.
    await send(encodeHead({ method: request.method, path, headers: endToEnd(request.headers) }));
    const hasBody = request.method !== 'GET' && request.method !== 'HEAD';
    const body = hasBody ? (request.body ?? (await request.blob()).stream()) : null;
    // Not awaited: a device may answer before it has read the whole body (an error, say).
    void sendBody(send, body).catch(() => stream.close());
    const first = await reader.read();
    const head = first.done ? undefined : parseResponseHead(first.value);
    if (!head)
      throw new Error(
        `the device sent no answer (does it run \`rtcmesh expose ${scope.service} HOST:PORT --http\`?)`,
      );
    if ('error' in head) {
      stream.close();
      return problem(502, 'The device could not answer', head.error);
    }
    const headers = new Headers();
    for (const [name, value] of head.headers) {
      if (name.toLowerCase() === 'set-cookie') continue; // a service worker cannot set them
      // Redirects to absolute paths stay in the scope.
      const scoped =
        name.toLowerCase() === 'location' && value.startsWith('/') && !value.startsWith('//')
          ? `${scopePath(scope)}${value}`
          : value;
      headers.append(name, scoped);
    }
    const empty = request.method === 'HEAD' || [204, 205, 304].includes(head.status);
    if (empty) {
      stream.close();
      return new Response(null, { status: head.status, statusText: head.statusText, headers });
    }
    const bytes = bodyFrom(reader).getReader();
    const streamed = new ReadableStream<Uint8Array>({
      async pull(controller) {
        try {
          const { value, done } = await bytes.read();
          if (done) {
            controller.close();
            stream.close();
          } else controller.enqueue(value);
        } catch (err) {
          controller.error(err);
          stream.close();
        }
      },
      cancel: () => stream.close(),
    });
    return new Response(streamed, { status: head.status, statusText: head.statusText, headers });
  } catch (err) {
    stream.close();
    return problem(502, 'The device could not answer', (err as Error).message);
  }
}
