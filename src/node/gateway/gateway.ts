/**
 * The gateway process (DESIGN §5): start-up and wiring. A TCP front door (front-door.ts: the
 * plain HTTP port and, with a certificate from tls/, the TLS port) hands HTTP to
 * http-front.ts, which serves the PWA and the API (api/), and TURN over TCP/TLS to the TURN
 * server; one UDP port carries every node's WebRTC association
 * (rtc-endpoint.ts, sessions.ts), a STUN/TURN relay runs on another UDP port (turn/), dials
 * are routed by signaling.ts, and in cluster mode cluster.ts joins the gateways over Redis.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Counter, collectDefaultMetrics, Gauge } from 'prom-client';
import {
  createNodeRecord,
  type NodeId,
  type NodeIdentity,
  RecordCache,
} from '../../core/identity/index.ts';
import type {
  GatewayInfo,
  IceServerConfig,
  NodeToGateway,
  PushPayload,
} from '../../core/protocol/messages.ts';
import { VERSION } from '../../core/version.ts';
import { loadOrCreateCertificate } from '../certificate-store.ts';
import { installNodeIdentityCrypto } from '../identity-crypto.ts';
import { loadOrCreateIdentity } from '../identity-store.ts';
import { createLogger, type Logger } from '../log.ts';
import {
  MemoryRegistry,
  RedisRegistry,
  type Registration,
  type Registry,
  RegistryUnavailableError,
  SqliteRegistry,
} from '../registry/index.ts';
import { normalIp } from '../turn/address-policy.ts';
import { issueCredentials } from '../turn/credentials.ts';
import { registerTurnMetrics } from '../turn/metrics.ts';
import { loadOrCreateTurnSecret } from '../turn/secret-store.ts';
import { TurnServer } from '../turn/server.ts';
import { batchedUdpAvailable } from '../turn/udp-listener.ts';
import { REGISTRY_DOWN } from './api/errors.ts';
import { RequestGuard } from './api/guard.ts';
import { apiHandlers } from './api/handlers.ts';
import { ApiRouter } from './api/router.ts';
import { Cluster, type ClusterBus } from './cluster.ts';
import {
  ConfigError,
  defaultTurnListen,
  type GatewayConfig,
  httpsUrl,
  isWildcard,
  localUrl,
  stunUrlOf,
} from './config.ts';
import { FEDERATION_PATH, Federation } from './federation/federation.ts';
import { FrontDoor } from './front-door.ts';
import { HttpFront } from './http-front.ts';
import { countedFrom, gaugeFrom, latencyHistogram, MetricsRegistry } from './metrics.ts';
import { PollTable } from './polls.ts';
import { loadOrCreateVapidKeys, PushSender } from './push.ts';
import { RtcEndpoint, resolveUdpPort } from './rtc-endpoint.ts';
import type { GatewaySession } from './session.ts';
import { SessionTable } from './sessions.ts';
import { type DialParty, Signaling } from './signaling.ts';
import { StaticFiles } from './static-files.ts';
import { AcmeCertificates } from './tls/acme.ts';
import { type CertificateSource, FileCertificates } from './tls/certificate-source.ts';
import { ChallengeStore } from './tls/challenges.ts';
import { createRedirectServer } from './tls/redirect.ts';

export type { GatewayInfo };

/** The relay nodes are given: the built-in TURN server, or an external one (--turn-url). */
interface Relay {
  server: TurnServer | undefined;
  /** The host in the built-in server's URLs. */
  host: string;
  urls: string[];
  /** TURN over TCP and TLS on the front door, known once it listens (after `urls`). */
  streamUrls: string[];
  secret: string;
}

async function startRelay(config: GatewayConfig, udpPort: number): Promise<Relay> {
  const turn = config.turn;
  const secret = turn.secret ?? (await loadOrCreateTurnSecret(config.dataDir));
  if (turn.url) {
    const stun = stunUrlOf(turn.url);
    return {
      server: undefined,
      host: '',
      urls: stun ? [stun, turn.url] : [turn.url],
      streamUrls: [],
      secret,
    };
  }
  const listen = turn.listen ?? defaultTurnListen(config.udp, udpPort);
  const relayIp = turn.relayIp ?? (isWildcard(listen.host) ? config.publicIp : listen.host);
  if (!relayIp) throw new Error('TURN on all interfaces needs --turn-relay-ip or --public-ip');
  const server = await TurnServer.start({
    listen,
    relayIp,
    secret,
    allowPrivatePeers: turn.allowPrivatePeers,
    peerNetworks: turn.peerNetworks,
    rfc5766ChannelNumbers: turn.rfc5766ChannelNumbers,
    limits: turn.limits,
    // A browser whose UDP is blocked reaches the gateway's WebRTC endpoint through this relay.
    ownEndpoints: [
      ...new Set(
        [config.publicIp ?? config.udp.host, config.udp.host].filter((h) => !isWildcard(h)),
      ),
    ].map((address) => ({ address, port: udpPort })),
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
    streamUrls: [],
    secret,
  };
}

/** A transit relay (TURN chaining): for peer gateways' nodes, onto another network. */
interface TransitRelay {
  listen: string;
  server: TurnServer;
}

/** Transit credentials a peer's nodes get: refreshed over the link well before this. */
const TRANSIT_CREDENTIAL_LIFETIME_S = 3600;

async function startTransitRelays(config: GatewayConfig, relay: Relay): Promise<TransitRelay[]> {
  const turn = config.turn;
  const started: TransitRelay[] = [];
  try {
    for (const t of turn.transit) {
      const server = await TurnServer.start({
        listen: { host: t.listen, port: 0 },
        relayIp: t.relay,
        secret: relay.secret,
        allowPrivatePeers: turn.allowPrivatePeers,
        peerNetworks: turn.peerNetworks,
        rfc5766ChannelNumbers: turn.rfc5766ChannelNumbers,
        limits: turn.limits,
      });
      started.push({ listen: t.listen, server });
    }
  } catch (err) {
    await Promise.all(started.map((t) => t.server.close()));
    await relay.server?.close();
    throw new ConfigError(`--turn-transit: ${(err as Error).message}`);
  }
  return started;
}

/** Where the built-in TURN server listens (nodes reach forwarders there too). */
function relayListenHost(config: GatewayConfig, udpPort: number): string | undefined {
  const host = (config.turn.listen ?? defaultTurnListen(config.udp, udpPort)).host;
  return isWildcard(host) ? undefined : host;
}

/** RFC 8292 `sub`: how a push service can reach whoever runs this gateway. */
function vapidSubject(publicUrl: string | undefined): string {
  return publicUrl?.startsWith('https:') ? publicUrl : 'mailto:rtcmesh-gateway@localhost';
}

export interface GatewayOptions {
  /** Where the gateway logs (default: pino on stderr at info). */
  logger?: Logger;
}

export class Gateway {
  private readonly startedAt = Date.now();
  private readonly countFault: Counter;
  private readonly countPush: Counter;
  private url = '';

  private constructor(
    readonly config: GatewayConfig,
    readonly identity: NodeIdentity,
    private readonly logger: Logger,
    private readonly metrics: MetricsRegistry,
    private readonly front: HttpFront,
    private readonly sessions: SessionTable,
    private readonly polls: PollTable,
    private readonly signaling: Signaling,
    private readonly guard: RequestGuard,
    private readonly registry: Registry,
    private readonly relay: Relay,
    private readonly rtc: RtcEndpoint,
    private readonly push: PushSender,
    private readonly cluster: Cluster | undefined,
    private readonly transit: TransitRelay[],
    /** Federation without Redis (federation/): links to other gateways, when not in a cluster. */
    readonly federation: Federation | undefined,
    private readonly timers: ReturnType<typeof setInterval>[],
    private readonly door: FrontDoor,
  ) {
    this.countFault = new Counter({
      name: 'rtcmesh_faults_total',
      help: 'Errors that escaped every handler (logged; the gateway kept serving), by kind.',
      labelNames: ['kind'],
      registers: [metrics],
    });
    this.countPush = new Counter({
      name: 'rtcmesh_push_total',
      help: 'Web Pushes to wake a node, by result (sent, gone: subscription dropped, failed, refused).',
      labelNames: ['result'],
      registers: [metrics],
    });
  }

  static async start(config: GatewayConfig, options: GatewayOptions = {}): Promise<Gateway> {
    installNodeIdentityCrypto();
    const logger = options.logger ?? createLogger();
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
    if (relay.server?.udpIo === 'dgram') {
      const batched = batchedUdpAvailable();
      if (!batched.available)
        logger.warn(
          `TURN: batched UDP I/O unavailable (${batched.why}); relaying with Node's dgram, at nearly twice the CPU per datagram`,
        );
    }
    const transit = await startTransitRelays(config, relay);
    const cluster = config.redis
      ? await Cluster.connect({
          url: config.redis.url,
          prefix: config.redis.prefix,
          gatewayId: identity.id,
          routeTtlMs: config.limits.dialTimeoutMs + 30_000,
          logger,
        }).catch(async (err: unknown) => {
          await relay.server?.close();
          throw new ConfigError(`--redis: ${(err as Error).message}`);
        })
      : undefined;
    const federation = cluster
      ? undefined
      : new Federation({
          self: {
            identity,
            record: () =>
              createNodeRecord(identity, {
                fingerprints: [certificate.fingerprint],
                name: 'gateway',
              }),
          },
          accept: config.federation.accept,
          allow: config.federation.allow,
          routeTtlMs: config.limits.dialTimeoutMs + 30_000,
          logger,
          transitOffers: (local, peer) =>
            transit
              .filter((t) => normalIp(t.listen) === local)
              .map((t) => ({
                host: t.listen,
                port: t.server.port,
                ...issueCredentials(relay.secret, peer, TRANSIT_CREDENTIAL_LIFETIME_S),
              })),
          ...(relay.server ? { forwardHost: relayListenHost(config, port) } : {}),
        });
    const bus: ClusterBus | undefined = cluster ?? federation;
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

    // The parts, each given what it talks to. Their events reach the others through
    // closures, called only once everything below exists.
    const metrics = new MetricsRegistry();
    const records = new RecordCache();
    let gateway: Gateway | undefined;
    const sessions = new SessionTable({
      gatewayId: identity.id,
      registry,
      limits: config.limits,
      logger,
      presence: cluster ? () => cluster.up : undefined,
      events: {
        opened: (party) => {
          signaling.calleeConnected(party);
          bus?.nodeConnected(party.id);
        },
        gone: (party) => {
          signaling.partyGone(party);
          // Calls forwarded here stay routed while the node still takes them by poll.
          if (!polls.party(party.id)) bus?.nodeGone(party.id);
        },
        message: (session, party, msg) => gateway?.onCtl(session, party, msg),
        invalid: () => front.countRefused.inc({ reason: 'invalid-message' }),
      },
    });
    const polls = new PollTable({
      gatewayId: identity.id,
      registry,
      limits: config.limits,
      logger,
      registryError: (what, err) => sessions.registryError(what, err),
      hasSession: (id) => sessions.has(id),
      events: {
        live: (party) => {
          signaling.calleeConnected(party);
          cluster?.nodeConnected(party.id);
        },
        gone: (party) => {
          signaling.partyGone(party);
          // A node that stopped polling because its session is back keeps its routes.
          if (!sessions.has(party.id)) cluster?.nodeGone(party.id);
        },
      },
    });
    const signaling = new Signaling(
      registry,
      // A session first; else a node that takes calls by long-poll here.
      (id) => sessions.party(id) ?? polls.party(id),
      config.limits,
      (callee, payload) => gateway?.wakeByPush(callee, payload) ?? Promise.resolve('starting'),
      records,
      bus && {
        find: (callee) => bus.find(callee),
        dialStarted: (dialId, ttlMs) => bus.rememberDial(dialId, ttlMs),
        ...(bus.lookup
          ? { lookup: (to: string) => bus.lookup?.(to) ?? Promise.resolve(undefined) }
          : {}),
      },
      metrics,
    );
    const guard = new RequestGuard(config, registry, () => gateway?.url ?? '');
    const connectSeconds = latencyHistogram(
      metrics,
      'rtcmesh_connect_seconds',
      "From a node's POST /v1/connect to its ctl channel open.",
    );
    const router = new ApiRouter(
      guard,
      apiHandlers({
        config,
        identity,
        fingerprint: certificate.fingerprint,
        rtc,
        registry,
        sessions,
        polls,
        signaling,
        cluster: bus,
        guard,
        records,
        info: () => (gateway as Gateway).info,
        iceServersFor: (id) => [
          ...iceServersFor(relay, config, id),
          ...(federation?.transitIceServers() ?? []),
        ],
        routeFailure: (err) => routeFailure(logger, err),
        observeConnect: (s) => connectSeconds.observe(s),
      }),
      config.limits.maxBodyBytes,
    );
    const pwaBuilt = existsSync(join(config.pwaDir, 'index.html'));
    if (!pwaBuilt)
      logger.warn(`no built PWA in ${config.pwaDir} (run npm run build); serving the API only`);
    const front = new HttpFront({
      limits: config.limits,
      router,
      staticFiles: pwaBuilt ? new StaticFiles(config.pwaDir) : undefined,
      metrics,
      logger,
      upgrade: (req, socket, head, path) => {
        if (path !== FEDERATION_PATH || !federation) return false;
        federation.upgrade(req, socket, head);
        return true;
      },
    });
    const challenges = new ChallengeStore();
    const door = new FrontDoor({
      limits: config.limits,
      app: front.server,
      plain: config.tls
        ? createRedirectServer(() => gateway?.url ?? '', challenges, config.limits.requestTimeoutMs)
        : undefined,
      turn: relay.server,
      metrics,
      refused: (reason) => front.countRefused.inc({ reason }),
      logger,
    });
    await bus?.listen({
      deliverLocal: (node, msg) => sessions.deliver(node, msg) || polls.deliver(node, msg),
      fromRemote: (party, msg) => signaling.handle(party, msg),
      remoteGone: (node, dialId) => signaling.remoteGone(node, dialId),
      remoteConnected: (party) => signaling.calleeConnected(party),
      httpDial: async (node, dialId, request) => signaling.settleHttp(node, dialId, request),
      ready: () => sessions.assert(),
      holds: (node) => sessions.party(node) !== undefined || polls.party(node) !== undefined,
    });
    const timers = [setInterval(() => void gateway?.sweep(), 60_000)];
    for (const t of timers) t.unref();
    gateway = new Gateway(
      config,
      identity,
      logger,
      metrics,
      front,
      sessions,
      polls,
      signaling,
      guard,
      registry,
      relay,
      rtc,
      push,
      cluster,
      transit,
      federation,
      timers,
      door,
    );
    gateway.registerMetrics();
    try {
      gateway.plainPort = await door.listenPlain(config.listen);
      if (config.tls) {
        // ACME's http-01 challenge is answered on the plain port, which listens by now.
        gateway.certificates = await openCertificates(config, challenges, logger);
        gateway.tlsPort = await door.listenTls(config.tls.listen, gateway.certificates);
      }
    } catch (err) {
      polls.close();
      gateway.certificates?.close();
      await door.close(0);
      sessions.close('gateway stopping');
      await relay.server?.close();
      await Promise.all(transit.map((t) => t.server.close()));
      await bus?.close();
      throw err;
    }
    gateway.url =
      config.publicUrl ??
      (config.tls && gateway.tlsPort !== undefined
        ? httpsUrl(config.tls, gateway.tlsPort)
        : localUrl(config.listen, gateway.plainPort));
    relay.streamUrls = streamTurnUrls(config, gateway);
    cluster?.announce(gateway.url);
    for (const peer of config.federation.peers) federation?.addPeer(peer);
    void gateway.sweep();
    return gateway;
  }

  /** The plain HTTP port (HTTP, or with TLS challenges and redirects; and TURN over TCP). */
  plainPort = 0;
  /** The TLS front door's port (HTTPS and TURN over TLS), with TLS. */
  tlsPort: number | undefined;
  /** Where the TLS certificate comes from, with TLS. */
  certificates: CertificateSource | undefined;

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

  get info(): GatewayInfo {
    return {
      id: this.identity.id,
      ip6: this.identity.ip6,
      version: VERSION,
      vapidPublicKey: this.push.publicKey,
      ...(this.cluster ? { gateways: this.cluster.list } : {}),
      ...(this.federation?.linkedPeers.length
        ? {
            federation: {
              peers: this.federation.linkedPeers,
              gateways: this.federation.gateways.map((g) => ({ id: g.id, hops: g.path.length })),
            },
          }
        : {}),
    };
  }

  /**
   * The last-resort policy for an error that escaped every handler: the process that runs
   * the gateway calls this from its unhandledRejection / uncaughtException handlers, so one
   * bad input logs and counts instead of ending every session.
   */
  fault(kind: 'unhandled-rejection' | 'uncaught-exception', err: unknown): void {
    this.countFault.inc({ kind });
    this.logger.error({ err, kind }, 'an error escaped every handler; the gateway keeps serving');
  }

  /**
   * Stops accepting, lets open requests finish for a moment, then closes what this gateway
   * holds: its sessions' peer connections, its relay, its registry and cluster connections.
   * Nothing else in the process (other nodes, other gateways) is touched.
   */
  async stop(graceMs = 2000): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    // Open long-polls end first, so closing the front door need not wait for them.
    this.polls.close();
    this.certificates?.close();
    const front = Promise.all([this.door.close(graceMs), this.front.close(graceMs)]);
    this.signaling.close();
    this.sessions.close('gateway stopping');
    await Promise.all([
      front,
      this.relay.server?.close(),
      ...this.transit.map((t) => t.server.close()),
    ]);
    await this.registry.close();
    await this.cluster?.close();
    await this.federation?.close();
  }

  /** What a node says on its ctl channel. */
  private onCtl(session: GatewaySession, party: DialParty, msg: NodeToGateway): void {
    switch (msg.t) {
      case 'ping':
        session.send({ t: 'pong', n: msg.n });
        return;
      case 'dial':
        if (!this.guard.takeDial(session.id)) {
          this.front.countRefused.inc({ reason: 'rate-limited' });
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
            message: routeFailure(this.logger, err),
          });
        });
        return;
      default:
        // Cluster or federation: the callee's side of a dial another gateway owns goes back there.
        if ((this.cluster ?? this.federation)?.forwardFromNode(session.id, msg)) return;
        this.signaling.handle(party, msg);
    }
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
    this.countPush.inc({ result: outcome.result });
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
    this.logger.warn(
      { node: callee.id, result: outcome.result, said: printable(outcome.message) },
      'push service refused the wake-up',
    );
    return outcome.result === 'refused'
      ? 'its push service is not one this gateway may reach'
      : 'its push service did not take the message';
  }

  private async sweep(): Promise<void> {
    const now = Date.now();
    await this.registry
      .sweep(now)
      .catch((err: unknown) => this.logger.error({ err }, 'registry sweep failed'));
    await this.guard.countRegistrations(now);
  }

  private registerMetrics(): void {
    const m = this.metrics;
    collectDefaultMetrics({ register: m });
    new Gauge({
      name: 'rtcmesh_build_info',
      help: 'Version of this gateway.',
      labelNames: ['version', 'id'],
      registers: [m],
    }).set({ version: VERSION, id: this.identity.id }, 1);
    const gauge = (name: string, help: string, read: () => number) =>
      gaugeFrom(m, name, help, read);
    gauge('rtcmesh_uptime_seconds', 'Seconds since the gateway started.', () =>
      Math.floor((Date.now() - this.startedAt) / 1000),
    );
    gauge(
      'rtcmesh_sessions',
      'Nodes with a live session on this gateway.',
      () => this.sessions.openCount,
    );
    gauge(
      'rtcmesh_polling_nodes',
      'Nodes taking calls by long-poll (GET /v1/dials) on this gateway.',
      () => this.polls.size,
    );
    countedFrom(
      m,
      'rtcmesh_polls_total',
      'Long-polls for incoming calls (GET /v1/dials) taken.',
      () => this.polls.stats.polls,
    );
    countedFrom(
      m,
      'rtcmesh_poll_dials_total',
      'Calls handed to polling nodes.',
      () => this.polls.stats.dialsHanded,
    );
    gauge(
      'rtcmesh_registrations',
      'Registered nodes (as of the last sweep).',
      () => this.guard.registrations,
    );
    const cluster = this.cluster;
    if (cluster) {
      gauge('rtcmesh_cluster_redis_up', 'Whether Redis answers (cluster mode).', () =>
        cluster.up ? 1 : 0,
      );
      gauge(
        'rtcmesh_cluster_gateways',
        'Live gateways of the cluster, as last read from Redis.',
        () => cluster.list.length,
      );
      countedFrom(
        m,
        'rtcmesh_cluster_dials_forwarded_total',
        'Dials forwarded to a node on another gateway.',
        () => cluster.stats.forwarded,
      );
      countedFrom(
        m,
        'rtcmesh_cluster_redis_reconnects_total',
        'Times the connection to Redis came back.',
        () => cluster.stats.redisReconnects,
      );
    }
    const federation = this.federation;
    if (federation) {
      gauge(
        'rtcmesh_federation_links',
        'Gateways linked now (federation).',
        () => federation.linkedPeers.length,
      );
      gauge(
        'rtcmesh_federation_routes',
        "Routes held, every peer's offers (federation).",
        () => federation.routeCount,
      );
      countedFrom(
        m,
        'rtcmesh_federation_dials_forwarded_total',
        'Dials forwarded to a node on another gateway of the federation.',
        () => federation.stats.forwarded,
      );
      countedFrom(
        m,
        'rtcmesh_federation_dropped_total',
        'Federation messages dropped (lies, loops, no way on).',
        () => federation.stats.dropped,
      );
    }
    if (this.relay.server) registerTurnMetrics(m, this.relay.server);
  }
}

/**
 * The ICE servers a node gets with its session: STUN and TURN, credentials for its ID. UDP
 * first, then TCP, then TLS: ICE tries them all, and the TCP and TLS relays carry the node
 * where UDP is blocked.
 */
function iceServersFor(relay: Relay, config: GatewayConfig, id: NodeId): IceServerConfig[] {
  const { username, credential } = issueCredentials(
    relay.secret,
    id,
    config.turn.limits.credentialLifetimeS,
  );
  return [{ urls: [...relay.urls, ...relay.streamUrls], username, credential }];
}

/**
 * TURN over TCP on the plain port and over TLS on the TLS port, named by the gateway URL's
 * host (the certificate's name, for TLS). None with an external TURN server, and no TCP one
 * behind a reverse proxy (--public-url without TLS: the proxy speaks HTTP only).
 */
function streamTurnUrls(config: GatewayConfig, gateway: Gateway): string[] {
  if (config.turn.url) return [];
  const url = new URL(gateway.publicUrl);
  const urls: string[] = [];
  if (!config.publicUrl || config.tls)
    urls.push(`turn:${url.hostname}:${gateway.plainPort}?transport=tcp`);
  if (config.tls && gateway.tlsPort !== undefined) {
    const port = config.publicUrl ? Number(url.port || 443) : gateway.tlsPort;
    urls.push(`turns:${url.hostname}:${port}?transport=tcp`);
  }
  return urls;
}

/** The TLS certificate: from files, or from the ACME CA. */
async function openCertificates(
  config: GatewayConfig,
  challenges: ChallengeStore,
  logger: Logger,
): Promise<CertificateSource> {
  const tls = config.tls;
  if (tls?.files) return FileCertificates.open(tls.files.certFile, tls.files.keyFile, logger);
  if (tls?.acme)
    return AcmeCertificates.start({ ...tls.acme, dataDir: config.dataDir, challenges, logger });
  throw new ConfigError('TLS needs --tls-cert and --tls-key, or --domain and --acme-email');
}

/** Text from outside, safe for a log line: no control characters, bounded. */
function printable(text: string): string {
  let out = '';
  for (const ch of text.slice(0, 300)) {
    const code = ch.codePointAt(0) ?? 0;
    out += code < 0x20 || (code >= 0x7f && code < 0xa0) ? '?' : ch;
  }
  return out;
}

/** What a caller is told when its dial could not be routed. */
function routeFailure(logger: Logger, err: unknown): string {
  if (err instanceof RegistryUnavailableError) return REGISTRY_DOWN;
  logger.error({ err }, 'dial failed');
  return 'the gateway could not route the call';
}
