/**
 * The gateway process (DESIGN §5): one HTTP port serving the PWA and the control API, one
 * UDP port for every node's WebRTC association, a STUN/TURN relay on another UDP port, a
 * registry of nodes, and dial routing.
 */
import { existsSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { cleanup as cleanupRtc } from 'node-datachannel';
import {
  createNodeRecord,
  fingerprintsInSdp,
  IdentityError,
  MemoryReplayGuard,
  type NodeId,
  type NodeIdentity,
  RecordCache,
  type VerifiedRequest,
  verifyAuthorization,
  verifyNodeRecord,
} from '../../core/identity/index.ts';
import {
  type ConnectResponse,
  connectRequestSchema,
  type DialErrorCode,
  dialAnswerRequestSchema,
  dialRejectRequestSchema,
  type GatewayToNode,
  type HttpDialResponse,
  httpDialRequestSchema,
  type IceServerConfig,
  type NodeToGateway,
  type PushPayload,
  type RegisterResponse,
  registerRequestSchema,
} from '../../core/protocol/messages.ts';
import { VERSION } from '../../core/version.ts';
import { loadOrCreateCertificate, type StoredCertificate } from '../certificate-store.ts';
import { loadOrCreateIdentity } from '../identity-store.ts';
import {
  MemoryRegistry,
  RedisRegistry,
  type Registration,
  type Registry,
  RegistryUnavailableError,
  SqliteRegistry,
} from '../registry/index.ts';
import { issueCredentials } from '../turn/credentials.ts';
import { loadOrCreateTurnSecret } from '../turn/secret-store.ts';
import { TurnServer } from '../turn/server.ts';
import { readJsonBody } from './body.ts';
import { addressKey, clientAddress } from './client-address.ts';
import { Cluster, type ClusterGateway, type HttpDialAction } from './cluster.ts';
import {
  ConfigError,
  defaultTurnListen,
  type GatewayConfig,
  isWildcard,
  localUrl,
  stunUrlOf,
} from './config.ts';
import { HttpError, sendError, sendJson, sendText } from './http.ts';
import { Metrics } from './metrics.ts';
import { loadOrCreateVapidKeys, PushSender, pushEndpointProblem } from './push.ts';
import { RateLimiter } from './rate-limit.ts';
import { RtcEndpoint, resolveUdpPort } from './rtc-endpoint.ts';
import { GatewaySession } from './session.ts';
import { type DialLookup, type DialParty, Signaling } from './signaling.ts';
import { StaticFiles } from './static-files.ts';

/** The relay nodes are given: the built-in TURN server, or an external one (--turn-url). */
interface Relay {
  server: TurnServer | undefined;
  /** The host in the built-in server's URLs. */
  host: string;
  urls: string[];
  secret: string;
}

async function startRelay(config: GatewayConfig, udpPort: number): Promise<Relay> {
  const turn = config.turn;
  const secret = turn.secret ?? (await loadOrCreateTurnSecret(config.dataDir));
  if (turn.url) {
    const stun = stunUrlOf(turn.url);
    return { server: undefined, host: '', urls: stun ? [stun, turn.url] : [turn.url], secret };
  }
  const listen = turn.listen ?? defaultTurnListen(config.udp, udpPort);
  const relayIp = turn.relayIp ?? (isWildcard(listen.host) ? config.publicIp : listen.host);
  if (!relayIp) throw new Error('TURN on all interfaces needs --turn-relay-ip or --public-ip');
  const server = await TurnServer.start({
    listen,
    relayIp,
    secret,
    allowPrivatePeers: turn.allowPrivatePeers,
    rfc5766ChannelNumbers: turn.rfc5766ChannelNumbers,
    limits: turn.limits,
  }).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'EADDRNOTAVAIL')
      throw new ConfigError(
        `TURN: ${err.message}: --turn or --turn-relay-ip is not an address of this host`,
      );
    throw err;
  });
  const advertised = config.publicIp ?? (isWildcard(listen.host) ? relayIp : listen.host);
  const host = advertised.includes(':') ? `[${advertised}]` : advertised;
  const address = `${host}:${server.port}`;
  return {
    server,
    host,
    urls: [`stun:${address}`, `turn:${address}?transport=udp`],
    secret,
  };
}

export interface GatewayInfo {
  id: string;
  ip6: string;
  version: string;
  /** The VAPID public key (base64url raw point) nodes subscribe to push with. */
  vapidPublicKey: string;
  /** Cluster mode: the live gateways of the cluster, this one first (nodes fail over). */
  gateways?: ClusterGateway[];
}

/** How often a cluster gateway refreshes the presence of its sessions in Redis. */
const PRESENCE_REFRESH_MS = 10_000;

/** /v1/dials/:id, /v1/dials/:id/answer, /v1/dials/:id/reject */
const DIAL_PATH = /^\/v1\/dials\/([A-Za-z0-9_-]{16,64})(?:\/(answer|reject))?$/;

/**
 * The route label of a request: one of a fixed list, never the path a client chose (a label
 * per path was a table any stranger could grow without bound).
 */
function routeOf(path: string): string {
  if (path === '/healthz' || path === '/metrics') return path;
  if (!path.startsWith('/v1/')) return 'static';
  if (['/v1/info', '/v1/connect', '/v1/dial', '/v1/register'].includes(path)) return path;
  const dial = DIAL_PATH.exec(path);
  if (dial) return dial[2] ? `/v1/dials/:id/${dial[2]}` : '/v1/dials/:id';
  return '/v1/other';
}

/** Sent with every response: the app must not be framed by other sites (clickjacking). */
const SECURITY_HEADERS = {
  'x-frame-options': 'DENY',
  'content-security-policy': "frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
} as const;

/** RFC 8292 `sub`: how a push service can reach whoever runs this gateway. */
function vapidSubject(publicUrl: string | undefined): string {
  return publicUrl?.startsWith('https:') ? publicUrl : 'mailto:rtcmesh-gateway@localhost';
}

const DIAL_ERROR_STATUS: Record<DialErrorCode, number> = {
  'not-found': 404,
  offline: 409,
  declined: 403,
  timeout: 504,
  identity: 403,
  busy: 503,
  'rate-limited': 429,
  invalid: 400,
  cancelled: 409,
  gateway: 502,
};

export class Gateway {
  private readonly server: Server;
  private readonly metrics = new Metrics();
  private readonly countRequest = this.metrics.counter(
    'rtcmesh_http_requests_total',
    'HTTP requests by route and status.',
  );
  private readonly countRefused = this.metrics.counter(
    'rtcmesh_refused_total',
    'Requests and messages refused, by reason.',
  );
  private readonly countFault = this.metrics.counter(
    'rtcmesh_faults_total',
    'Errors that escaped every handler (logged; the gateway kept serving), by kind.',
  );
  private readonly countPush = this.metrics.counter(
    'rtcmesh_push_total',
    'Web Pushes to wake a node, by result (sent, gone: subscription dropped, failed, refused).',
  );
  /** One party per session, so a dial's party is recognised when its session goes away. */
  private readonly parties = new WeakMap<GatewaySession, DialParty>();
  private readonly staticFiles: StaticFiles | undefined;
  private readonly startedAt = Date.now();
  private readonly sessions = new Map<NodeId, GatewaySession>();
  private readonly replayGuard = new MemoryReplayGuard();
  /** Records of connects and dials: each signature verified once, its claims on every use. */
  private readonly records = new RecordCache();
  private readonly signaling: Signaling;
  private readonly limiters;
  private readonly timers: ReturnType<typeof setInterval>[] = [];
  private registrations = 0;
  private url = '';

  private constructor(
    readonly config: GatewayConfig,
    readonly identity: NodeIdentity,
    private readonly certificate: StoredCertificate,
    private readonly rtc: RtcEndpoint,
    private readonly registry: Registry,
    private readonly relay: Relay,
    private readonly push: PushSender,
    private readonly cluster: Cluster | undefined,
  ) {
    const limits = config.limits;
    this.limiters = {
      authFailuresIp: new RateLimiter(limits.authFailuresPerIp),
      newNodesIp: new RateLimiter(limits.newNodesPerIp),
      connectId: new RateLimiter(limits.connectPerId),
      dialId: new RateLimiter(limits.dialPerId),
    };
    this.signaling = new Signaling(
      registry,
      (id) => this.party(id),
      limits,
      (callee, payload) => this.wakeByPush(callee, payload),
      this.records,
      cluster && {
        find: (callee) => cluster.remoteParty(callee.id, callee.gatewayId),
        dialStarted: (dialId, ttlMs) => cluster.rememberDial(dialId, ttlMs),
      },
    );
    const pwaBuilt = existsSync(join(config.pwaDir, 'index.html'));
    this.staticFiles = pwaBuilt ? new StaticFiles(config.pwaDir) : undefined;
    if (!pwaBuilt)
      console.warn(
        `rtcmesh: no built PWA in ${config.pwaDir} (run npm run build); serving the API only`,
      );
    this.defineMetrics();
    // Timeouts are checked every 2 s (Node's default, 30 s, lets a stuck client keep its
    // connection for that much longer than the limits say).
    this.server = createServer({ connectionsCheckingInterval: 2000 }, (req, res) => {
      req.socket.setTimeout(0);
      this.handle(req, res).catch((err: unknown) => {
        console.error('rtcmesh: request failed', err);
        if (!res.headersSent) sendError(res, new HttpError(500, 'internal', 'internal error'));
        else res.destroy();
      });
    });
    // Slow or stuck clients must not hold connections forever: a whole request (headers and
    // body; not the wait for a dial's answer) must arrive in time, and connections are capped
    // in all and per address.
    this.server.requestTimeout = limits.requestTimeoutMs;
    this.server.headersTimeout = Math.min(10_000, limits.requestTimeoutMs);
    this.server.maxConnections = limits.maxConnections;
    const perAddress = new Map<string, number>();
    this.server.on('connection', (socket) => {
      const key = addressKey(socket.remoteAddress ?? 'unknown');
      const n = (perAddress.get(key) ?? 0) + 1;
      if (n > limits.maxConnectionsPerIp) {
        this.countRefused({ reason: 'too-many-connections' });
        socket.destroy();
        return;
      }
      perAddress.set(key, n);
      // A connection that never sends a request is closed too (headersTimeout counts only
      // from a request's first byte); a request lifts this, and keep-alive sets its own.
      socket.setTimeout(limits.requestTimeoutMs);
      socket.once('close', () => {
        const left = (perAddress.get(key) ?? 1) - 1;
        if (left <= 0) perAddress.delete(key);
        else perAddress.set(key, left);
      });
    });
  }

  /**
   * The last-resort policy for an error that escaped every handler: the process that runs
   * the gateway calls this from its unhandledRejection / uncaughtException handlers, so one
   * bad input logs and counts instead of ending every session.
   */
  fault(kind: 'unhandled-rejection' | 'uncaught-exception', err: unknown): void {
    this.countFault({ kind });
    console.error(`rtcmesh: ${kind} (the gateway keeps serving):`, err);
  }

  static async start(config: GatewayConfig): Promise<Gateway> {
    const { identity, keyFile } = await loadOrCreateIdentity(config.dataDir);
    const certificate = await loadOrCreateCertificate(config.dataDir, identity);
    const port = await resolveUdpPort(config.udp.host, config.udp.port);
    const rtc = new RtcEndpoint({
      bindHost: config.udp.host,
      port,
      publicIp: config.publicIp ?? config.udp.host,
      certFile: certificate.certFile,
      keyFile,
    });
    const relay = await startRelay(config, port);
    // Cluster mode: the registry and the signaling bus on Redis; handlers reach the gateway
    // once it exists (nothing arrives before its channel is subscribed, and the gateway is
    // made right after).
    let gateway: Gateway | undefined;
    const cluster = config.redis
      ? await Cluster.start({
          url: config.redis.url,
          prefix: config.redis.prefix,
          gatewayId: identity.id,
          routeTtlMs: config.limits.dialTimeoutMs + 30_000,
          handlers: {
            deliverLocal: (node, msg) => gateway?.deliverLocal(node, msg) ?? false,
            fromRemote: (party, msg) => gateway?.signaling.handle(party, msg),
            remoteGone: (node, dialId) => gateway?.signaling.remoteGone(node, dialId),
            remoteConnected: (party) => gateway?.signaling.calleeConnected(party),
            httpDial: async (node, dialId, request) =>
              gateway
                ? gateway.settleDial(node, dialId, request)
                : { ok: false, status: 503, code: 'unavailable', message: 'starting' },
            ready: () => gateway?.assertSessions(),
          },
        }).catch(async (err: unknown) => {
          await relay.server?.close();
          throw new ConfigError(`--redis: ${(err as Error).message}`);
        })
      : undefined;
    const registry = cluster
      ? new RedisRegistry(cluster.client, {
          prefix: config.redis?.prefix,
          presenceTtlMs: config.redis?.presenceTtlMs,
        })
      : config.registry === 'memory'
        ? new MemoryRegistry()
        : SqliteRegistry.open(join(config.dataDir, 'registry.sqlite'));
    const localVapid = await loadOrCreateVapidKeys(config.dataDir);
    const push = new PushSender({
      // A subscription is bound to the key it was made with: a cluster signs with one key.
      vapid: cluster ? await cluster.sharedVapidKeys(localVapid) : localVapid,
      subject: vapidSubject(config.publicUrl),
      allowPrivate: config.push.allowPrivateEndpoints,
    });
    gateway = new Gateway(config, identity, certificate, rtc, registry, relay, push, cluster);
    try {
      await new Promise<void>((resolve, reject) => {
        gateway.server.once('error', reject);
        gateway.server.listen(config.listen.port, config.listen.host, () => {
          gateway.server.off('error', reject);
          resolve();
        });
      });
    } catch (err) {
      await relay.server?.close();
      await cluster?.close();
      throw err;
    }
    gateway.url =
      config.publicUrl ?? localUrl(config.listen, (gateway.server.address() as AddressInfo).port);
    cluster?.announce(gateway.url);
    gateway.startTimers();
    return gateway;
  }

  /** Where nodes reach this gateway (the public URL, or the local listen address). */
  get publicUrl(): string {
    return this.url;
  }

  get udpPort(): number {
    return this.rtc.config.port;
  }

  /** Where nodes reach the built-in TURN server (`HOST:PORT`); undefined with --turn-url. */
  get turnAddress(): string | undefined {
    return this.relay.server ? `${this.relay.host}:${this.relay.server.port}` : undefined;
  }

  /** The ICE servers a node gets with its session: STUN and TURN, credentials for its ID. */
  iceServersFor(id: NodeId): IceServerConfig[] {
    const { username, credential } = issueCredentials(
      this.relay.secret,
      id,
      this.config.turn.limits.credentialLifetimeS,
    );
    return [{ urls: this.relay.urls, username, credential }];
  }

  get info(): GatewayInfo {
    return {
      id: this.identity.id,
      ip6: this.identity.ip6,
      version: VERSION,
      vapidPublicKey: this.push.publicKey,
      ...(this.cluster ? { gateways: this.cluster.list } : {}),
    };
  }

  /** Stops accepting, lets open requests finish for a moment, then closes everything. */
  async stop(graceMs = 2000): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeIdleConnections();
    const timer = setTimeout(() => this.server.closeAllConnections(), graceMs);
    this.signaling.close();
    for (const session of this.sessions.values()) session.close('gateway stopping');
    await Promise.all([closed, this.relay.server?.close()]);
    clearTimeout(timer);
    await this.registry.close();
    await this.cluster?.close();
    cleanupRtc();
  }

  private defineMetrics(): void {
    const m = this.metrics;
    m.info('rtcmesh_build_info', 'Version of this gateway.', {
      version: VERSION,
      id: this.identity.id,
    });
    m.gauge('rtcmesh_uptime_seconds', 'Seconds since the gateway started.', () =>
      Math.floor((Date.now() - this.startedAt) / 1000),
    );
    m.gauge('process_resident_memory_bytes', 'Resident memory of the gateway process.', () =>
      process.memoryUsage.rss(),
    );
    m.gauge('rtcmesh_sessions', 'Nodes with a live session on this gateway.', () =>
      this.openSessions(),
    );
    m.gauge(
      'rtcmesh_registrations',
      'Registered nodes (as of the last sweep).',
      () => this.registrations,
    );
    m.gauge(
      'rtcmesh_dials_pending',
      'Dials waiting for an answer or trickling candidates.',
      () => this.signaling.pending,
    );
    m.gauge(
      'rtcmesh_dials_started_total',
      'Dials forwarded to a callee.',
      () => this.signaling.stats.dialsStarted,
    );
    m.gauge(
      'rtcmesh_dials_woken_total',
      'Dials to a node without a session, woken by push.',
      () => this.signaling.stats.dialsWoken,
    );
    m.gauge(
      'rtcmesh_dials_answered_total',
      'Dials the callee answered.',
      () => this.signaling.stats.dialsAnswered,
    );
    const cluster = this.cluster;
    if (cluster) {
      m.gauge('rtcmesh_cluster_redis_up', 'Whether Redis answers (cluster mode).', () =>
        cluster.up ? 1 : 0,
      );
      m.gauge(
        'rtcmesh_cluster_gateways',
        'Live gateways of the cluster, as last read from Redis.',
        () => cluster.list.length,
      );
      m.gauge(
        'rtcmesh_cluster_dials_forwarded_total',
        'Dials forwarded to a node on another gateway.',
        () => cluster.stats.forwarded,
      );
      m.gauge(
        'rtcmesh_cluster_redis_reconnects_total',
        'Times the connection to Redis came back.',
        () => cluster.stats.redisReconnects,
      );
    }
    const turn = this.relay.server;
    if (!turn) return;
    m.gauge('rtcmesh_turn_allocations', 'TURN allocations now.', () => turn.allocationCount);
    m.gauge(
      'rtcmesh_turn_allocations_total',
      'TURN allocations made.',
      () => turn.stats.allocationsTotal,
    );
    m.gauge(
      'rtcmesh_turn_relayed_bytes_to_peer_total',
      'Bytes relayed from clients to peers.',
      () => turn.stats.bytesToPeer,
    );
    m.gauge(
      'rtcmesh_turn_relayed_bytes_to_client_total',
      'Bytes relayed from peers to clients.',
      () => turn.stats.bytesToClient,
    );
    m.gauge('rtcmesh_turn_requests_total', 'STUN/TURN requests.', () => turn.stats.requests);
    m.gauge(
      'rtcmesh_turn_error_responses_total',
      'STUN/TURN requests answered with an error (including 401 challenges).',
      () => turn.stats.errorResponses,
    );
    m.gauge(
      'rtcmesh_turn_dropped_total',
      'Datagrams the TURN server dropped, for any reason.',
      () => Object.values(turn.stats.dropped).reduce((a, b) => a + b, 0),
    );
  }

  /** Sessions from one client address whose association is not up yet. */
  private connecting(source: string): number {
    let n = 0;
    for (const s of this.sessions.values()) if (s.isConnecting && s.remoteAddress === source) n++;
    return n;
  }

  private openSessions(): number {
    let n = 0;
    for (const s of this.sessions.values()) if (s.isOpen) n++;
    return n;
  }

  private startTimers(): void {
    const limits = this.config.limits;
    this.timers.push(
      setInterval(() => {
        const idleSince = Date.now() - limits.sessionIdleMs;
        for (const s of this.sessions.values())
          if (s.isOpen && s.lastHeard < idleSince) s.close('idle');
      }, 5000),
      setInterval(() => void this.sweep(), 60_000),
    );
    if (this.cluster)
      this.timers.push(setInterval(() => void this.refreshPresence(), PRESENCE_REFRESH_MS));
    for (const t of this.timers) t.unref();
    void this.sweep();
  }

  private async sweep(): Promise<void> {
    const now = Date.now();
    await this.registry
      .sweep(now)
      .catch((err: unknown) => console.error('rtcmesh: registry sweep failed', err));
    this.registrations = await this.registry.count(now).catch(() => this.registrations);
    for (const l of Object.values(this.limiters)) l.sweep(now);
  }

  /**
   * Cluster mode: keeps the presence of every open session alive in Redis (it expires unless
   * refreshed, so a gateway that dies leaves no node falsely "connected" for long).
   */
  private async refreshPresence(): Promise<void> {
    const cluster = this.cluster;
    if (!cluster?.up) return;
    const now = Date.now();
    await Promise.all(
      [...this.sessions.values()]
        .filter((s) => s.isOpen)
        .map(async (s) => {
          // False when the registration is gone (a Redis that lost its data): write it again.
          if (!(await this.registry.setSession(s.id, this.identity.id, now)))
            await this.registerSession(s, now);
        }),
    ).catch((err: unknown) => logRegistryError('refreshing presence', err));
  }

  /** Redis is back: this gateway's sessions are asserted again (registration and presence). */
  assertSessions(): void {
    void this.refreshPresence();
  }

  /** The registration of a session's node (its record), keeping a stored push subscription. */
  private async registerSession(session: GatewaySession, now: number): Promise<void> {
    const existing = await this.registry.get(session.id, now);
    const record = session.record;
    await this.registry.upsert({
      id: session.id,
      ip6: record.ip6,
      record: record.jws,
      ...(record.name !== undefined ? { name: record.name } : {}),
      gatewayId: session.isOpen ? this.identity.id : (existing?.gatewayId ?? null),
      lastSeen: now,
      expiresAt: Math.max(existing?.expiresAt ?? 0, now + this.config.limits.registrationTtlMs),
      push: existing?.push ?? null,
    });
  }

  /** Cluster mode: a message from another gateway for a node whose session is here. */
  deliverLocal(id: NodeId, msg: GatewayToNode): boolean {
    const session = this.sessions.get(id);
    return session?.isOpen === true && session.send(msg);
  }

  private party(id: NodeId): DialParty | undefined {
    const session = this.sessions.get(id);
    return session?.isOpen ? this.sessionParty(session) : undefined;
  }

  private sessionParty(session: GatewaySession): DialParty {
    let party = this.parties.get(session);
    if (!party) {
      party = {
        id: session.id,
        source: session.remoteAddress,
        deliver: (msg) => session.send(msg),
      };
      this.parties.set(session, party);
    }
    return party;
  }

  /** Wakes a node without a session by Web Push; says why not when it cannot. */
  private async wakeByPush(
    callee: Registration,
    payload: PushPayload,
  ): Promise<string | undefined> {
    const subscription = callee.push;
    if (!subscription) return 'it has no push subscription';
    const outcome = await this.push.send(
      subscription,
      payload,
      this.config.limits.dialTimeoutMs / 1000,
    );
    this.countPush({ result: outcome.result });
    if (outcome.result === 'sent') return undefined;
    if (outcome.result === 'gone') {
      // Unless the node registered a new subscription meanwhile.
      const current = await this.registry.get(callee.id);
      if (current?.push?.endpoint === subscription.endpoint)
        await this.registry.setPush(callee.id, null);
      return 'its push subscription is gone (the push service said so) and was dropped';
    }
    // The push service's own words stay in the log: they may say more about the service,
    // or about the callee, than a caller should learn.
    console.warn(`rtcmesh: push to ${callee.id} ${outcome.result}: ${outcome.message}`);
    return outcome.result === 'refused'
      ? 'its push service is not one this gateway may reach'
      : 'its push service did not take the message';
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let route = 'static';
    res.once('finish', () => this.countRequest({ route, status: String(res.statusCode) }));
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
      if (path === '/healthz' || path === '/metrics' || path.startsWith('/v1/')) {
        if (path.startsWith('/v1/')) {
          // A page served by one gateway of a cluster signals through another when its own
          // is down. Requests carry no cookies; a signed token (audience: this gateway) is
          // what authorizes them, so any origin may make them.
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
        }
        return await this.api(req, res, path).catch((err: unknown) => {
          if (err instanceof RegistryUnavailableError)
            throw new HttpError(
              503,
              'unavailable',
              `the cluster's registry is unreachable (Redis is down); try again shortly`,
            );
          throw err;
        });
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
      if (err.status === 429 || err.status === 401 || err.status === 403 || err.status === 413)
        this.countRefused({ reason: refusedReason(err.code) });
      // Refused before its body was read: close the connection rather than wait for the rest
      // of a body that may come one byte a second.
      if (!req.complete) {
        res.setHeader('connection', 'close');
        res.once('finish', () => req.socket.destroySoon());
      }
      sendError(res, err);
    }
  }

  private async api(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    const get = req.method === 'GET' || req.method === 'HEAD';
    const post = req.method === 'POST';
    if (path === '/healthz' && get) return sendText(res, 200, 'ok\n');
    if (path === '/metrics' && get)
      return sendText(res, 200, this.metrics.render(), 'text/plain; version=0.0.4; charset=utf-8');
    if (path === '/v1/info' && get) return sendJson(res, 200, this.info);
    if (path === '/v1/connect' && post) return this.connect(req, res);
    if (path === '/v1/dial' && post) return this.httpDial(req, res);
    if (path === '/v1/register' && post) return this.register(req, res);
    const dial = DIAL_PATH.exec(path);
    if (dial?.[1]) {
      const action = dial[2] as 'answer' | 'reject' | undefined;
      if (action ? post : get) return this.dialRequest(req, res, dial[1], action);
      throw new HttpError(405, 'method-not-allowed', `${req.method} is not allowed on ${path}`);
    }
    if (
      ['/healthz', '/metrics', '/v1/info', '/v1/connect', '/v1/dial', '/v1/register'].includes(path)
    ) {
      throw new HttpError(405, 'method-not-allowed', `${req.method} is not allowed on ${path}`);
    }
    throw new HttpError(404, 'not-found', `no API endpoint ${path}`);
  }

  /** The limits key of a request's client: its address (IPv6: /64), behind --trust-proxy the forwarded one. */
  private clientKey(req: IncomingMessage): string {
    return addressKey(clientAddress(req, this.config.trustProxy));
  }

  /**
   * The signed caller of a request. Failures are charged to the client's address (beyond its
   * allowance they get 429); requests that authenticate are never refused for what others at
   * the same address did. Then the allowlist (private mesh) and the caller's own rate.
   */
  private async authenticate(
    req: IncomingMessage,
    rate: 'connect' | 'dial',
  ): Promise<VerifiedRequest> {
    let caller: VerifiedRequest;
    try {
      caller = await verifyAuthorization(req.headers.authorization, {
        audience: this.url,
        replayGuard: this.replayGuard,
        maxLifetimeS: this.config.limits.maxTokenLifetimeS,
      });
    } catch (err) {
      if (!this.limiters.authFailuresIp.take(this.clientKey(req)))
        throw new HttpError(429, 'rate-limited', 'too many failed requests from your address');
      if (err instanceof IdentityError) throw new HttpError(401, `token-${err.code}`, err.message);
      throw new HttpError(503, 'unavailable', (err as Error).message);
    }
    if (this.config.allow && !this.config.allow.has(caller.id))
      throw new HttpError(403, 'not-allowed', `node ${caller.id} is not allowed on this gateway`);
    const limiter = rate === 'connect' ? this.limiters.connectId : this.limiters.dialId;
    if (!limiter.take(caller.id))
      throw new HttpError(429, 'rate-limited', 'too many requests for this node; wait a little');
    return caller;
  }

  /**
   * A node ID this gateway has no registration for costs its client's address a token, and
   * is refused while the registry is full: identities are free, so this is what bounds how
   * many one address can make (docs/design.md §8). Known IDs pass.
   */
  private async admitNode(req: IncomingMessage, existing: Registration | undefined): Promise<void> {
    if (existing) return;
    if (!this.limiters.newNodesIp.take(this.clientKey(req)))
      throw new HttpError(429, 'rate-limited', 'too many new nodes from your address');
    if (this.registrations >= this.config.limits.maxRegistrations) {
      // The count is refreshed every minute; look again before refusing.
      this.registrations = await this.registry.count(Date.now()).catch(() => this.registrations);
      if (this.registrations >= this.config.limits.maxRegistrations)
        throw new HttpError(503, 'full', 'this gateway has no room for another node');
    }
    this.registrations++;
  }

  /** POST /v1/connect: a node's gathered offer in, the gateway's answer out (DESIGN §2). */
  private async connect(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const caller = await this.authenticate(req, 'connect');
    const body = await readJsonBody(req, connectRequestSchema, this.config.limits.maxBodyBytes);
    let record: Awaited<ReturnType<typeof verifyNodeRecord>>;
    try {
      record = await this.records.verify(body.record, {
        expectedId: caller.id,
        fingerprintsInUse: fingerprintsInSdp(body.offer),
      });
    } catch (err) {
      if (err instanceof IdentityError) throw new HttpError(403, `record-${err.code}`, err.message);
      throw err;
    }
    if (!this.sessions.has(caller.id) && this.sessions.size >= this.config.limits.maxSessions) {
      throw new HttpError(503, 'full', 'this gateway has no room for another session');
    }
    const source = this.clientKey(req);
    if (this.connecting(source) >= this.config.limits.maxConnectingPerIp)
      throw new HttpError(429, 'rate-limited', 'too many connects in progress from your address');
    const existing = await this.registry.get(caller.id, Date.now());
    await this.admitNode(req, existing);
    let association: Awaited<ReturnType<RtcEndpoint['accept']>>;
    try {
      association = await this.rtc.accept(body.offer, caller.id.slice(0, 8));
    } catch (err) {
      throw new HttpError(
        400,
        'bad-offer',
        `the offer could not be answered: ${(err as Error).message}`,
      );
    }
    const session = new GatewaySession(
      caller.id,
      record,
      source,
      association,
      this.config.limits.messagesPerSession,
      {
        open: (s) => {
          void this.registry
            .setSession(s.id, this.identity.id, Date.now())
            .catch((err: unknown) => logRegistryError('recording a session', err));
          // A node woken by push (or reconnecting while rung) gets the calls waiting for it,
          // here and, in a cluster, on every other gateway.
          this.signaling.calleeConnected(this.sessionParty(s));
          this.cluster?.nodeConnected(s.id);
        },
        message: (s, msg) => this.onMessage(s, msg),
        invalid: () => this.countRefused({ reason: 'invalid-message' }),
        close: (s) => {
          if (this.sessions.get(s.id) !== s) return; // replaced by a newer session
          this.sessions.delete(s.id);
          this.signaling.partyGone(this.sessionParty(s));
          this.cluster?.nodeGone(s.id);
          void this.registry
            .setSession(s.id, null, Date.now(), this.identity.id)
            .catch((err: unknown) => logRegistryError('ending a session', err));
        },
      },
    );
    // A new connect from the same node replaces its old session (DESIGN §6).
    const previous = this.sessions.get(caller.id);
    this.sessions.set(caller.id, session);
    previous?.close('replaced');
    const now = Date.now();
    try {
      await this.registry.upsert({
        id: caller.id,
        ip6: record.ip6,
        record: record.jws,
        ...(record.name !== undefined ? { name: record.name } : {}),
        gatewayId: existing?.gatewayId ?? null,
        lastSeen: now,
        expiresAt: now + this.config.limits.registrationTtlMs,
        push: existing?.push ?? null,
      });
    } catch (err) {
      // Cluster mode with Redis away: the session still works here, and is registered once
      // Redis is back (assertSessions).
      if (!(err instanceof RegistryUnavailableError)) throw err;
      logRegistryError('registering a session', err);
    }
    const response: ConnectResponse = {
      answer: association.answer,
      record: await createNodeRecord(this.identity, {
        fingerprints: [this.certificate.fingerprint],
        name: 'gateway',
      }),
      gateway: this.identity.id,
      iceServers: this.iceServersFor(caller.id),
    };
    sendJson(res, 200, response);
  }

  private onMessage(session: GatewaySession, msg: NodeToGateway): void {
    const party = this.sessionParty(session);
    switch (msg.t) {
      case 'ping':
        session.send({ t: 'pong', n: msg.n });
        return;
      case 'dial':
        if (!this.limiters.dialId.take(session.id)) {
          this.countRefused({ reason: 'rate-limited' });
          session.send({
            t: 'dial-failed',
            dialId: msg.dialId,
            code: 'rate-limited',
            message: 'too many dials; wait a little',
          });
          return;
        }
        this.signaling.dial(party, msg).catch((err: unknown) => {
          session.send({
            t: 'dial-failed',
            dialId: msg.dialId,
            code: 'gateway',
            message: routeFailure(err),
          });
        });
        return;
      default:
        // Cluster mode: the callee's side of a dial another gateway owns goes back there.
        if (this.cluster?.forwardFromNode(session.id, msg)) return;
        this.signaling.handle(party, msg);
    }
  }

  /** Checks a record signed by the requester; an HTTP error says what is wrong with it. */
  private async verifiedRecord(
    jws: string,
    id: NodeId,
    sdp?: string,
  ): Promise<Awaited<ReturnType<typeof verifyNodeRecord>>> {
    try {
      return await verifyNodeRecord(jws, {
        expectedId: id,
        ...(sdp !== undefined ? { fingerprintsInUse: fingerprintsInSdp(sdp) } : {}),
      });
    } catch (err) {
      if (err instanceof IdentityError) throw new HttpError(403, `record-${err.code}`, err.message);
      throw err;
    }
  }

  /**
   * POST /v1/register: a node's record and push subscription, without a session (DESIGN §2).
   * A null `push` removes the subscription.
   */
  private async register(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const node = await this.authenticate(req, 'connect');
    const body = await readJsonBody(req, registerRequestSchema, this.config.limits.maxBodyBytes);
    const record = await this.verifiedRecord(body.record, node.id);
    if (body.push) {
      const problem = pushEndpointProblem(
        body.push.endpoint,
        this.config.push.allowPrivateEndpoints,
      );
      if (problem) throw new HttpError(400, 'bad-push-endpoint', problem);
    }
    const now = Date.now();
    const existing = await this.registry.get(node.id, now);
    await this.admitNode(req, existing);
    const expiresAt = now + this.config.limits.registrationTtlMs;
    await this.registry.upsert({
      id: node.id,
      ip6: record.ip6,
      record: record.jws,
      ...(record.name !== undefined ? { name: record.name } : {}),
      gatewayId: existing?.gatewayId ?? null,
      lastSeen: now,
      expiresAt,
      push: body.push,
    });
    const response: RegisterResponse = { id: node.id, push: body.push !== null, expiresAt };
    sendJson(res, 200, response);
  }

  /**
   * GET /v1/dials/:id (the call waiting for the signed node), POST …/answer (a gathered
   * answer) and …/reject: how a woken node or its service worker settles a call over HTTP.
   */
  private async dialRequest(
    req: IncomingMessage,
    res: ServerResponse,
    dialId: string,
    action: 'answer' | 'reject' | undefined,
  ): Promise<void> {
    const callee = await this.authenticate(req, 'dial');
    const maxBytes = this.config.limits.maxBodyBytes;
    let request: HttpDialAction;
    if (action === undefined) request = { action: 'get' };
    else if (action === 'answer') {
      const body = await readJsonBody(req, dialAnswerRequestSchema, maxBytes);
      await this.verifiedRecord(body.record, callee.id, body.answer);
      request = { action: 'answer', ...body };
    } else
      request = {
        action: 'reject',
        ...(await readJsonBody(req, dialRejectRequestSchema, maxBytes)),
      };
    let lookup = await this.settleDial(callee.id, dialId, request);
    // Cluster mode: a dial another gateway owns is settled there.
    if (!lookup.ok && lookup.status === 404 && this.cluster)
      lookup = (await this.cluster.httpDial(callee.id, dialId, request)) ?? lookup;
    if (!lookup.ok) throw new HttpError(lookup.status, lookup.code, lookup.message);
    if (action === undefined) return sendJson(res, 200, lookup.value);
    sendJson(
      res,
      200,
      action === 'answer' ? { dialId, answered: true } : { dialId, rejected: true },
    );
  }

  /** A callee's HTTP request about a dial this gateway owns (the record already checked). */
  async settleDial(
    calleeId: NodeId,
    dialId: string,
    request: HttpDialAction,
  ): Promise<DialLookup<unknown>> {
    if (request.action === 'get') return this.signaling.pendingFor(calleeId, dialId);
    if (request.action === 'answer') {
      const { answer, record } = request;
      return this.signaling.settleOverHttp(calleeId, { t: 'answer', dialId, answer, record });
    }
    const { reason, message } = request;
    return this.signaling.settleOverHttp(calleeId, {
      t: 'reject',
      dialId,
      reason,
      ...(message !== undefined ? { message } : {}),
    });
  }

  /** POST /v1/dial: for nodes without a session; waits for the answer (bounded). */
  private async httpDial(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const caller = await this.authenticate(req, 'dial');
    const body = await readJsonBody(req, httpDialRequestSchema, this.config.limits.maxBodyBytes);
    const dialId = Buffer.from(crypto.getRandomValues(new Uint8Array(16))).toString('base64url');
    const outcome = await new Promise<Extract<GatewayToNode, { t: 'answer' | 'dial-failed' }>>(
      (resolve) => {
        const party: DialParty = {
          id: caller.id,
          source: this.clientKey(req),
          deliver: (msg) => {
            if (msg.t === 'answer' || msg.t === 'dial-failed') resolve(msg);
          },
        };
        // The caller hung up: end the dial so the callee stops ringing.
        res.once('close', () => {
          if (!res.writableFinished) this.signaling.handle(party, { t: 'cancel', dialId });
        });
        this.signaling.dial(party, { t: 'dial', dialId, ...body }).catch((err: unknown) => {
          resolve({ t: 'dial-failed', dialId, code: 'gateway', message: routeFailure(err) });
        });
      },
    );
    if (outcome.t === 'dial-failed')
      throw new HttpError(DIAL_ERROR_STATUS[outcome.code], outcome.code, outcome.message);
    const response: HttpDialResponse = { dialId, answer: outcome.answer, record: outcome.record };
    sendJson(res, 200, response);
  }
}

/** What a caller is told when its dial could not be routed. */
function routeFailure(err: unknown): string {
  if (err instanceof RegistryUnavailableError)
    return "the cluster's registry is unreachable (Redis is down); try again shortly";
  console.error('rtcmesh: dial failed', err);
  return 'the gateway could not route the call';
}

let lastRegistryWarning = 0;

/** Registry errors in the background: said at most every few seconds, never thrown. */
function logRegistryError(what: string, err: unknown): void {
  const now = Date.now();
  if (now - lastRegistryWarning < 5000) return;
  lastRegistryWarning = now;
  console.warn(`rtcmesh: ${what} failed: ${(err as Error).message ?? String(err)}`);
}

/** A bounded label for a refusal: error codes are the gateway's own, but say so explicitly. */
function refusedReason(code: string): string {
  return /^[a-z0-9-]{1,40}$/.test(code) ? code : 'other';
}
