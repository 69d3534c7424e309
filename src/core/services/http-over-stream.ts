/**
 * HTTP over a mesh stream (`rtcmesh expose … --http`, the app's service worker): one request
 * per stream. Text messages carry heads, binary messages carry body bytes, and an empty
 * binary message ends a body (the same end-of-input the CLI's byte pipes use):
 *
 *   caller → device   {"rtcmeshHttp":{"method","path","headers"}}   body…   <empty>
 *   device → caller   {"rtcmeshHttp":{"status","statusText","headers"}}   body…   <empty>
 *                  or {"rtcmeshHttp":{"error":"why"}}   (no answer from the service)
 *
 * Bodies are streamed message by message, never joined. Platform-neutral: the service worker
 * and the Node device share it. Checked by hand (no schema library: the service worker stays small).
 */
import type { StreamMessage } from '../node/stream.ts';

export type HeaderList = [string, string][];

export interface HttpRequestHead {
  method: string;
  /** Path and query, starting with "/". */
  path: string;
  headers: HeaderList;
}

export interface HttpResponseHead {
  status: number;
  statusText: string;
  headers: HeaderList;
}

export interface HttpErrorHead {
  error: string;
}

/** A head larger than this is refused (a browser's own limits are lower). */
export const MAX_HEAD_BYTES = 64 * 1024;
const MAX_HEADERS = 200;

/** Headers that describe one hop, not the message: never carried over the mesh. */
export const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
  'host',
  'content-length',
]);

export const END_OF_BODY = new Uint8Array(0);

export function encodeHead(head: HttpRequestHead | HttpResponseHead | HttpErrorHead): string {
  return JSON.stringify({ rtcmeshHttp: head });
}

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

function parseEnvelope(message: StreamMessage): Record<string, unknown> | undefined {
  if (typeof message !== 'string' || message.length > MAX_HEAD_BYTES) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(message);
  } catch {
    return undefined;
  }
  const head = (parsed as { rtcmeshHttp?: unknown } | null)?.rtcmeshHttp;
  return typeof head === 'object' && head !== null ? (head as Record<string, unknown>) : undefined;
}

function parseHeaders(value: unknown): HeaderList | undefined {
  if (!Array.isArray(value) || value.length > MAX_HEADERS) return undefined;
  const out: HeaderList = [];
  for (const pair of value) {
    if (!Array.isArray(pair) || pair.length !== 2) return undefined;
    const [name, text] = pair as unknown[];
    if (typeof name !== 'string' || typeof text !== 'string' || !TOKEN.test(name)) return undefined;
    if (/[\r\n\0]/.test(text)) return undefined;
    out.push([name, text]);
  }
  return out;
}

/** A request head, or undefined when `message` is not one. */
export function parseRequestHead(message: StreamMessage): HttpRequestHead | undefined {
  const head = parseEnvelope(message);
  if (!head) return undefined;
  const { method, path } = head;
  const headers = parseHeaders(head.headers);
  if (typeof method !== 'string' || !TOKEN.test(method) || !headers) return undefined;
  if (typeof path !== 'string' || !path.startsWith('/') || /[\s\0]/.test(path)) return undefined;
  return { method, path, headers };
}

/** A response head, an error, or undefined when `message` is neither. */
export function parseResponseHead(
  message: StreamMessage,
): HttpResponseHead | HttpErrorHead | undefined {
  const head = parseEnvelope(message);
  if (!head) return undefined;
  if (typeof head.error === 'string') return { error: head.error.slice(0, 1000) };
  const { status, statusText } = head;
  const headers = parseHeaders(head.headers);
  if (typeof status !== 'number' || !Number.isInteger(status) || status < 200 || status > 599)
    return undefined;
  if (typeof statusText !== 'string' || !headers) return undefined;
  return { status, statusText, headers };
}

/** Headers worth carrying: without the hop-by-hop ones. */
export function endToEnd(headers: Iterable<[string, string]>): HeaderList {
  const out: HeaderList = [];
  for (const [name, value] of headers)
    if (!HOP_BY_HOP.has(name.toLowerCase())) out.push([name, value]);
  return out;
}

/**
 * The body that follows a head, as a byte stream: binary messages until the empty one. A
 * stream that closes first, or a text message in a body, errors it (a cut-off body must not
 * look complete).
 */
export function bodyFrom(
  reader: ReadableStreamDefaultReader<StreamMessage>,
): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      const { value, done } = await reader.read();
      if (done) return controller.error(new Error('the stream closed before the body ended'));
      if (typeof value === 'string') return controller.error(new Error('text inside a body'));
      if (value.byteLength === 0) return controller.close();
      controller.enqueue(value);
    },
    cancel: (reason) => reader.cancel(reason),
  });
}

/** Sends `body` (if any) as binary messages, then the end of body. */
export async function sendBody(
  send: (message: StreamMessage) => Promise<void>,
  body: ReadableStream<Uint8Array> | null,
): Promise<void> {
  if (body) {
    const reader = body.getReader();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      if (value.byteLength) await send(value);
    }
  }
  await send(END_OF_BODY);
}
