/**
 * The gateway's HTTP service: one node:http server for the PWA, the API, /healthz and
 * /metrics, handed its connections by the TCP front door (front-door.ts, which caps them).
 * It owns what every request gets alike: timeouts, security headers, CORS for the API,
 * request metrics, and turning errors into JSON answers.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { Counter, type Registry } from 'prom-client';
import { API, matchApiPath } from '../../core/protocol/api.ts';
import type { Logger } from '../log.ts';
import { httpErrorOf } from './api/errors.ts';
import type { ApiRouter } from './api/router.ts';
import { HttpError, sendError, sendText } from './http.ts';
import type { GatewayLimits } from './limits.ts';
import type { StaticFiles } from './static-files.ts';

/** Sent with every response: the app must not be framed by other sites (clickjacking). */
const SECURITY_HEADERS = {
  'x-frame-options': 'DENY',
  'content-security-policy': "frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
} as const;

/**
 * The route label of a request: one of a fixed list, never the path a client chose (a label
 * per path was a table any stranger could grow without bound).
 */
function routeOf(path: string): string {
  if (path === '/healthz' || path === '/metrics') return path;
  if (!path.startsWith('/v1/')) return 'static';
  const match = matchApiPath(path);
  return match ? API[match.name].path : '/v1/other';
}

export interface HttpFrontOptions {
  limits: GatewayLimits;
  router: ApiRouter;
  staticFiles: StaticFiles | undefined;
  metrics: Registry;
  logger: Logger;
  /** A WebSocket upgrade (federation links); false when nothing serves that path. */
  upgrade?: (req: IncomingMessage, socket: Duplex, head: Buffer, path: string) => boolean;
}

export class HttpFront {
  readonly server: Server;
  private readonly countRequest: Counter;
  readonly countRefused: Counter;

  constructor(private readonly options: HttpFrontOptions) {
    const { limits, metrics } = options;
    this.countRequest = new Counter({
      name: 'rtcmesh_http_requests_total',
      help: 'HTTP requests by route and status.',
      labelNames: ['route', 'status'],
      registers: [metrics],
    });
    this.countRefused = new Counter({
      name: 'rtcmesh_refused_total',
      help: 'Requests, messages and connections refused, by reason.',
      labelNames: ['reason'],
      registers: [metrics],
    });
    // Timeouts are checked every 2 s (Node's default, 30 s, lets a stuck client keep its
    // connection for that much longer than the limits say).
    this.server = createServer({ connectionsCheckingInterval: 2000 }, (req, res) => {
      req.socket.setTimeout(0);
      this.handle(req, res).catch((err: unknown) => {
        options.logger.error({ err }, 'request failed');
        if (!res.headersSent) sendError(res, new HttpError(500, 'internal', 'internal error'));
        else res.destroy();
      });
    });
    // Slow or stuck clients must not hold connections forever: a whole request (headers and
    // body; not the wait for a dial's answer) must arrive in time. The front door caps
    // connections in all and per address.
    this.server.requestTimeout = limits.requestTimeoutMs;
    this.server.headersTimeout = Math.min(10_000, limits.requestTimeoutMs);
    this.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      let path = '';
      try {
        path = new URL(req.url ?? '/', 'http://gateway').pathname;
      } catch {
        // not a path: refused below
      }
      // A long-lived link: the request timeouts no longer apply.
      req.socket.setTimeout(0);
      if (options.upgrade?.(req, socket, head, path)) return;
      this.countRefused.inc({ reason: 'upgrade' });
      socket.end('HTTP/1.1 404 Not Found\r\nconnection: close\r\n\r\n');
    });
    this.server.on('connection', (socket) => {
      // A connection that sends no further request is closed too (headersTimeout counts only
      // from a request's first byte); a request lifts this, and keep-alive sets its own.
      socket.setTimeout(limits.requestTimeoutMs);
    });
  }

  /** Stops accepting, lets open requests finish for `graceMs`, then closes what is left. */
  async close(graceMs: number): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeIdleConnections();
    const timer = setTimeout(() => this.server.closeAllConnections(), graceMs);
    await closed;
    clearTimeout(timer);
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let route = 'static';
    res.once('finish', () => this.countRequest.inc({ route, status: String(res.statusCode) }));
    for (const [name, value] of Object.entries(SECURITY_HEADERS)) res.setHeader(name, value);
    try {
      let url: URL;
      try {
        url = new URL(req.url ?? '/', 'http://gateway');
      } catch {
        throw new HttpError(400, 'bad-url', 'the request target is not a valid path');
      }
      const path = url.pathname;
      route = routeOf(path);
      const read = req.method === 'GET' || req.method === 'HEAD';
      if (path === '/healthz' || path === '/metrics') {
        if (!read)
          throw new HttpError(405, 'method-not-allowed', `${req.method} is not allowed on ${path}`);
        if (path === '/healthz') return sendText(res, 200, 'ok\n');
        const text = await this.options.metrics.metrics();
        return sendText(res, 200, text, this.options.metrics.contentType);
      }
      if (path.startsWith('/v1/')) {
        // A page served by one gateway of a cluster signals through another when its own is
        // down. Requests carry no cookies; a signed token (audience: this gateway) is what
        // authorizes them, so any origin may make them.
        res.setHeader('access-control-allow-origin', '*');
        if (req.method === 'OPTIONS') {
          res.writeHead(204, {
            'access-control-allow-methods': 'GET, POST',
            'access-control-allow-headers': 'authorization, content-type',
            'access-control-max-age': '600',
          });
          res.end();
          return;
        }
        if (await this.options.router.serve(req, res, path)) return;
        throw new HttpError(404, 'not-found', `no API endpoint ${path}`);
      }
      if (!read)
        throw new HttpError(405, 'method-not-allowed', `${req.method} is not allowed here`);
      if (!this.options.staticFiles)
        throw new HttpError(503, 'pwa-not-built', 'the PWA is not built: run npm run build');
      if (!(await this.options.staticFiles.serve(req, res, path)))
        throw new HttpError(404, 'not-found', `no file ${path}`);
    } catch (thrown) {
      const err = httpErrorOf(thrown);
      if (err.status === 500) throw thrown;
      if ([401, 403, 413, 429].includes(err.status))
        this.countRefused.inc({ reason: /^[a-z0-9-]{1,40}$/.test(err.code) ? err.code : 'other' });
      // Refused before its body was read: close the connection rather than wait for the rest
      // of a body that may come one byte a second.
      if (!req.complete) {
        res.setHeader('connection', 'close');
        res.once('finish', () => req.socket.destroySoon());
      }
      sendError(res, err);
    }
  }
}
