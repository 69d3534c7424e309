/**
 * The gateway process (DESIGN §5): one HTTP port serving the PWA and the control API.
 * Its own node identity lives in its data directory.
 */
import { existsSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { NodeIdentity } from '../../core/identity/index.ts';
import { VERSION } from '../../core/version.ts';
import { loadOrCreateIdentity } from '../identity-store.ts';
import { type GatewayConfig, localUrl } from './config.ts';
import { HttpError, sendError, sendJson, sendText } from './http.ts';
import { Metrics } from './metrics.ts';
import { StaticFiles } from './static-files.ts';

export interface GatewayInfo {
  id: string;
  ip6: string;
  version: string;
}

export class Gateway {
  private readonly server: Server;
  private readonly metrics = new Metrics();
  private readonly countRequest = this.metrics.counter(
    'rtcmesh_http_requests_total',
    'HTTP requests by route and status.',
  );
  private readonly staticFiles: StaticFiles | undefined;
  private readonly startedAt = Date.now();
  private url = '';

  private constructor(
    readonly config: GatewayConfig,
    readonly identity: NodeIdentity,
  ) {
    const pwaBuilt = existsSync(join(config.pwaDir, 'index.html'));
    this.staticFiles = pwaBuilt ? new StaticFiles(config.pwaDir) : undefined;
    if (!pwaBuilt)
      console.warn(
        `rtcmesh: no built PWA in ${config.pwaDir} (run npm run build); serving the API only`,
      );
    this.metrics.info('rtcmesh_build_info', 'Version of this gateway.', {
      version: VERSION,
      id: identity.id,
    });
    this.metrics.gauge('rtcmesh_uptime_seconds', 'Seconds since the gateway started.', () =>
      Math.floor((Date.now() - this.startedAt) / 1000),
    );
    this.metrics.gauge(
      'process_resident_memory_bytes',
      'Resident memory of the gateway process.',
      () => process.memoryUsage.rss(),
    );
    this.metrics.gauge('rtcmesh_sessions', 'Nodes with a live session on this gateway.', () => 0);
    this.server = createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        console.error('rtcmesh: request failed', err);
        if (!res.headersSent) sendError(res, new HttpError(500, 'internal', 'internal error'));
        else res.destroy();
      });
    });
    // Slow or stuck clients must not hold connections forever.
    this.server.requestTimeout = 30_000;
    this.server.headersTimeout = 10_000;
  }

  static async start(config: GatewayConfig): Promise<Gateway> {
    const { identity } = await loadOrCreateIdentity(config.dataDir);
    const gateway = new Gateway(config, identity);
    await new Promise<void>((resolve, reject) => {
      gateway.server.once('error', reject);
      gateway.server.listen(config.listen.port, config.listen.host, () => {
        gateway.server.off('error', reject);
        resolve();
      });
    });
    const port = (gateway.server.address() as AddressInfo).port;
    gateway.url = config.publicUrl ?? localUrl(config.listen, port);
    return gateway;
  }

  /** Where nodes reach this gateway (the public URL, or the local listen address). */
  get publicUrl(): string {
    return this.url;
  }

  get info(): GatewayInfo {
    return { id: this.identity.id, ip6: this.identity.ip6, version: VERSION };
  }

  /** Stops accepting, lets open requests finish for a moment, then closes everything. */
  async stop(graceMs = 2000): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeIdleConnections();
    const timer = setTimeout(() => this.server.closeAllConnections(), graceMs);
    await closed;
    clearTimeout(timer);
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let route = 'static';
    try {
      const url = new URL(req.url ?? '/', 'http://gateway');
      const path = url.pathname;
      if (path === '/healthz' || path === '/metrics' || path.startsWith('/v1/')) {
        route = path.startsWith('/v1/') ? path.split('/').slice(0, 3).join('/') : path;
        if (req.method !== 'GET' && req.method !== 'HEAD') {
          throw new HttpError(405, 'method-not-allowed', `${req.method} is not allowed on ${path}`);
        }
        if (path === '/healthz') return sendText(res, 200, 'ok\n');
        if (path === '/metrics')
          return sendText(
            res,
            200,
            this.metrics.render(),
            'text/plain; version=0.0.4; charset=utf-8',
          );
        if (path === '/v1/info') return sendJson(res, 200, this.info);
        throw new HttpError(404, 'not-found', `no API endpoint ${path}`);
      }
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        throw new HttpError(405, 'method-not-allowed', `${req.method} is not allowed here`);
      }
      if (!this.staticFiles)
        throw new HttpError(503, 'pwa-not-built', 'the PWA is not built: run npm run build');
      if (!(await this.staticFiles.serve(req, res, path)))
        throw new HttpError(404, 'not-found', `no file ${path}`);
    } catch (err) {
      if (!(err instanceof HttpError)) throw err;
      sendError(res, err);
    } finally {
      res.once('finish', () => this.countRequest({ route, status: String(res.statusCode) }));
    }
  }
}
