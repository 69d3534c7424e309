/**
 * `rtcmesh expose SERVICE HOST:PORT [--http]` and `node.expose()`: each stream a peer opens to
 * SERVICE becomes a TCP connection to HOST:PORT (tcp-bridge.ts). With `http`, streams that
 * start with an HTTP-over-stream request head (the app's service worker:
 * core/services/http-over-stream.ts) become real HTTP requests made with node:http, their
 * answers streamed back; other streams on it are still plain TCP (HTTP clients speak first,
 * so peeking at the first message never stalls them).
 */
import { type IncomingMessage, request } from 'node:http';
import { connect } from 'node:net';
import type { Logger } from '../../core/node/logger.ts';
import type { MeshStream, StreamMessage } from '../../core/node/stream.ts';
import {
  bodyFrom,
  END_OF_BODY,
  encodeHead,
  endToEnd,
  type HttpRequestHead,
  parseRequestHead,
} from '../../core/services/http-over-stream.ts';
import { bridge } from './tcp-bridge.ts';

export interface ExposeOptions {
  host: string;
  port: number;
  /** Also answer the app's HTTP requests (the service is an HTTP server). */
  http?: boolean;
  /** Connections open at once; streams past it are refused with an error (default 256). */
  maxConnections?: number;
  /** How long a connect or an HTTP request may stay silent (default 60 s). */
  idleTimeoutMs?: number;
  signal?: AbortSignal;
  logger?: Logger;
}

export interface ExposeHandle {
  readonly service: string;
  /** Connections open now. */
  readonly connections: number;
  /** Stops serving and resets this expose's connections (only those). */
  close(): void;
}

export const DEFAULT_MAX_CONNECTIONS = 256;
const DEFAULT_IDLE_TIMEOUT_MS = 60_000;
/** Refusals are logged at most this often (a flood must not flood the log). */
const REFUSAL_LOG_MS = 5_000;
const CALLER_CLOSE_MS = 10_000;

type Listen = (service: string, handler: (stream: MeshStream) => void) => () => void;

export function expose(
  listen: Listen,
  service: string,
  options: ExposeOptions,
  fallbackLog: Logger,
): ExposeHandle {
  const { host, port } = options;
  const log = options.logger ?? fallbackLog;
  const max = options.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
  const idleMs = options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
  const target = `${host.includes(':') ? `[${host}]` : host}:${port}`;
  const open = new Set<MeshStream>();
  let refused = 0;
  let lastRefusalLog = 0;
  let closed = false;

  // The far end closes once it has read why (a close of ours could overtake the text: see
  // tcp-bridge.ts); one that does not is closed on after a while.
  const refuse = (stream: MeshStream, why: string) => {
    const timer = setTimeout(() => stream.close(), CALLER_CLOSE_MS);
    stream.onClose(() => clearTimeout(timer));
    stream.send(why).catch(() => stream.close());
  };

  const serveTcp = (
    stream: MeshStream,
    reader: ReadableStreamDefaultReader<StreamMessage>,
    first?: StreamMessage,
  ) => {
    const socket = connect({ host, port, allowHalfOpen: true, timeout: idleMs });
    socket.once('timeout', () => socket.destroy(new Error(`no answer in ${idleMs / 1000} s`)));
    const onConnectError = (err: Error) => {
      log.warn(`${service}: could not connect to ${target} for ${stream.peer.id}: ${err.message}`);
      refuse(stream, `${service}: the device could not connect to ${target}: ${err.message}`);
    };
    socket.once('error', onConnectError);
    // Gone before the connection was made (once made, the bridge owns both).
    stream.onClose(() => {
      if (socket.connecting) socket.destroy();
    });
    socket.once('connect', () => {
      socket.off('error', onConnectError);
      socket.setTimeout(0);
      log.debug(`${service}: ${stream.peer.id} connected to ${target}`);
      void bridge(socket, stream, {
        onReset: (why) => log.debug(`${service}: a connection was reset: ${why}`),
        reader,
        ...(first !== undefined ? { first } : {}),
      });
    });
  };

  const serveHttp = (
    stream: MeshStream,
    reader: ReadableStreamDefaultReader<StreamMessage>,
    head: HttpRequestHead,
  ) => {
    const writer = stream.writable.getWriter();
    // No prototype: header names come from the peer.
    const headers: Record<string, string> = Object.create(null);
    for (const [name, value] of endToEnd(head.headers)) {
      const key = name.toLowerCase();
      headers[key] =
        headers[key] === undefined
          ? value
          : `${headers[key]}${key === 'cookie' ? '; ' : ', '}${value}`;
    }
    headers.host = target;
    let answered = false;
    // The caller closes once it has read the answer (a close of ours could overtake the last
    // bytes: see tcp-bridge.ts); one that does not is closed on after a while.
    const closeSoon = () => {
      const timer = setTimeout(() => stream.close(), CALLER_CLOSE_MS);
      stream.onClose(() => clearTimeout(timer));
    };
    const fail = (why: string) => {
      if (answered) return stream.close(); // mid-body: the cut shows as a failed body
      answered = true;
      log.warn(`${service}: ${head.method} ${head.path} for ${stream.peer.id}: ${why}`);
      writer.write(encodeHead({ error: why })).then(closeSoon, () => stream.close());
    };
    const req = request({
      host,
      port,
      method: head.method,
      path: head.path,
      headers,
      timeout: idleMs,
    });
    req.on('timeout', () =>
      req.destroy(new Error(`${target} sent nothing for ${idleMs / 1000} s`)),
    );
    req.on('error', (err) => {
      const code = (err as NodeJS.ErrnoException).code ?? '';
      fail(
        code.startsWith('HPE_')
          ? `the service at ${target} did not answer HTTP (${err.message})`
          : `no answer from ${target}: ${err.message}`,
      );
    });
    stream.onClose(() => req.destroy());
    req.on('response', (res: IncomingMessage) => {
      answered = true;
      const pairs: [string, string][] = [];
      for (let i = 0; i + 1 < res.rawHeaders.length; i += 2)
        pairs.push([res.rawHeaders[i] as string, res.rawHeaders[i + 1] as string]);
      void (async () => {
        try {
          await writer.write(
            encodeHead({
              status: res.statusCode ?? 502,
              statusText: res.statusMessage ?? '',
              headers: endToEnd(pairs),
            }),
          );
          for await (const chunk of res as AsyncIterable<Buffer>)
            await writer.write(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
          await writer.write(END_OF_BODY);
          closeSoon();
        } catch {
          res.destroy();
          stream.close();
        }
      })();
    });
    // The request body, message by message, with the socket's backpressure.
    void (async () => {
      const body = bodyFrom(reader).getReader();
      try {
        for (;;) {
          const { value, done } = await body.read();
          if (done) break;
          if (!req.write(value))
            await new Promise((r) => {
              req.once('drain', r);
              req.once('close', r);
            });
          if (req.destroyed) return;
        }
        req.end();
      } catch (err) {
        req.destroy(err as Error);
      }
    })();
  };

  const remove = listen(service, (stream) => {
    if (closed) return stream.close();
    if (open.size >= max) {
      refused++;
      const now = Date.now();
      if (now - lastRefusalLog > REFUSAL_LOG_MS) {
        log.warn(
          `${service}: refused ${refused} stream(s) from ${stream.peer.id}: ${max} connections are open (the limit)`,
        );
        lastRefusalLog = now;
        refused = 0;
      }
      refuse(stream, `${service}: busy, ${max} connections are open`);
      return;
    }
    open.add(stream);
    stream.onClose(() => open.delete(stream));
    const reader = stream.readable.getReader();
    if (!options.http) return serveTcp(stream, reader);
    void reader.read().then(
      ({ value, done }) => {
        if (done) return stream.close();
        const head = parseRequestHead(value);
        if (head) serveHttp(stream, reader, head);
        else serveTcp(stream, reader, value);
      },
      () => stream.close(),
    );
  });

  const handle: ExposeHandle = {
    service,
    get connections() {
      return open.size;
    },
    close() {
      if (closed) return;
      closed = true;
      options.signal?.removeEventListener('abort', onAbort);
      remove();
      for (const stream of open) stream.close();
      open.clear();
    },
  };
  const onAbort = () => handle.close();
  options.signal?.addEventListener('abort', onAbort, { once: true });
  if (options.signal?.aborted) handle.close();
  return handle;
}
