/**
 * Cluster mode (DESIGN §5): several gateways share one Redis. The registry lives there
 * (RedisRegistry), and so does a signaling bus on pub/sub: each gateway listens on its own
 * channel, and on one channel all of them hear.
 *
 * A dial is owned by the caller's gateway (Signaling, as without a cluster). When the callee
 * holds its session on another gateway, that gateway is a remote party: the caller's side
 * (incoming, candidates, cancel) is published to it, and it hands them to the callee's
 * session and remembers where the dial lives, so the callee's side (answer, candidates,
 * reject) goes back. A node that connects anywhere is announced to every gateway, so a
 * dial waiting for it (woken by push, or rung on a gateway it has since left) reaches it.
 *
 * Each gateway also announces its public URL with an expiry; /v1/info lists the live ones,
 * and nodes fail over between them. The gateways share one VAPID key, kept in Redis, since
 * a push subscription is bound to the key it was made with.
 *
 * Redis may go away: the clients reconnect by themselves, pub/sub is subscribed again, and
 * `onReady` lets the gateway assert its sessions' presence again. Nothing here throws
 * while Redis is down; a dial then fails with a clear error.
 */
import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import * as z from 'zod/mini';
import type { NodeId } from '../../core/identity/index.ts';
import {
  dialAnswerRequestSchema,
  dialRejectRequestSchema,
  type GatewayToNode,
  gatewayToNodeSchema,
  type NodeToGateway,
  nodeToGatewaySchema,
  pendingDialResponseSchema,
} from '../../core/protocol/messages.ts';
import { maxString, parseValue } from '../../core/protocol/schema.ts';
import type { Logger } from '../log.ts';
import { type Registration, RegistryUnavailableError } from '../registry/index.ts';
import { redactUrl, redisClient } from '../registry/redis-registry.ts';
import type { VapidKeys } from './push.ts';
import type { DialParty, HttpDialAction, HttpDialOutcome } from './signaling.ts';

export interface ClusterGateway {
  id: string;
  url: string;
}

/** A message about a dial in progress, as a node sends it (not dial, not ping). */
export type InDialMessage = Exclude<NodeToGateway, { t: 'dial' } | { t: 'ping' }>;

export interface ClusterHandlers {
  /** Hands a message to this gateway's session of `node`; false when there is none. */
  deliverLocal(node: NodeId, msg: GatewayToNode): boolean;
  /** A remote callee's message about a dial this gateway owns. */
  fromRemote(party: DialParty, msg: InDialMessage): void;
  /** The remote callee of a dial this gateway owns is not (or no longer) reachable. */
  remoteGone(node: NodeId, dialId: string): void;
  /** A node connected to another gateway: dials waiting for it go there. */
  remoteConnected(party: DialParty): void;
  /** An HTTP request about a dial this gateway owns, made at another gateway. */
  httpDial(node: NodeId, dialId: string, request: HttpDialAction): Promise<HttpDialOutcome>;
  /** Redis is (again) reachable: assert what this gateway holds. */
  ready(): void;
  /** Whether this gateway holds a session of `node` now. */
  holds(node: NodeId): boolean;
}

/**
 * The cluster bus as the gateway uses it: Redis (Cluster, one site) or links between
 * gateways (Federation, federation/, small meshes across networks).
 */
export interface ClusterBus {
  readonly stats: { forwarded: number };
  listen(handlers: ClusterHandlers): Promise<void>;
  /** The party for a callee held by another gateway; undefined when none holds it. */
  find(callee: Registration): Promise<DialParty | undefined>;
  /** A node unknown to this gateway's registry but held elsewhere (federation only). */
  lookup?(to: string): Promise<Registration | undefined>;
  /** The callee's side of a dial another gateway owns, sent there; false if none is. */
  forwardFromNode(node: NodeId, msg: InDialMessage): boolean;
  nodeConnected(node: NodeId): void;
  nodeGone(node: NodeId): void;
  rememberDial(id: string, ttlMs: number): Promise<void>;
  httpDial(node: NodeId, id: string, request: HttpDialAction): Promise<HttpDialOutcome | undefined>;
  close(): Promise<void>;
}

export interface ClusterOptions {
  url: string;
  prefix: string;
  gatewayId: string;
  logger: Logger;
  /** How long a forwarded dial is remembered on the callee's side. */
  routeTtlMs: number;
  /** Connecting at start gives up after this long. */
  connectTimeoutMs?: number;
}

const ANNOUNCE_EVERY_MS = 5000;
/** A gateway not heard from for this long is left out of the list. */
const ANNOUNCE_TTL_MS = 15_000;
const RPC_TIMEOUT_MS = 5000;

const nodeId = maxString(64);
const dialId = maxString(64);
/** An HTTP request about a dial, asked of the gateway that owns it. */
const httpDialActionSchema = z.discriminatedUnion('action', [
  z.object({ action: z.literal('get') }),
  z.extend(dialAnswerRequestSchema, { action: z.literal('answer') }),
  z.extend(dialRejectRequestSchema, { action: z.literal('reject') }),
]);
/** Its outcome: the pending dial (get), nothing (answer, reject), or an HTTP error. */
const dialLookupSchema = z.union([
  z.object({ ok: z.literal(true), value: z.nullable(pendingDialResponseSchema) }),
  z.object({
    ok: z.literal(false),
    status: z.int().check(z.minimum(400), z.maximum(599)),
    code: maxString(64),
    message: maxString(512),
  }),
]);
const busSchema = z.discriminatedUnion('k', [
  z.object({ k: z.literal('to-node'), from: z.string(), node: nodeId, msg: gatewayToNodeSchema }),
  z.object({ k: z.literal('from-node'), from: z.string(), node: nodeId, msg: nodeToGatewaySchema }),
  z.object({ k: z.literal('gone'), from: z.string(), node: nodeId, dialId }),
  z.object({ k: z.literal('connected'), from: z.string(), node: nodeId }),
  /** A gateway joined (or came back): the others read the list again. */
  z.object({ k: z.literal('hello'), from: z.string() }),
  z.object({
    k: z.literal('http'),
    from: z.string(),
    rpc: z.string(),
    node: nodeId,
    dialId,
    request: httpDialActionSchema,
  }),
  z.object({
    k: z.literal('http-reply'),
    from: z.string(),
    rpc: z.string(),
    result: dialLookupSchema,
  }),
]);
type BusMessage = z.infer<typeof busSchema>;

export class Cluster implements ClusterBus {
  private gateways: ClusterGateway[] = [];
  private publicUrl = '';
  /** Dials forwarded to a session here: where they live. */
  private readonly routes = new Map<
    string,
    { owner: string; node: NodeId; timer: ReturnType<typeof setTimeout> }
  >();
  private readonly rpcs = new Map<string, (result: HttpDialOutcome) => void>();
  private announceTimer: ReturnType<typeof setInterval> | undefined;
  private vapid: VapidKeys | undefined;
  /** What this gateway does with what the bus brings (set by listen). */
  private handlers: ClusterHandlers | undefined;
  private wasReady = true;
  private closed = false;
  readonly stats = { forwarded: 0, received: 0, publishFailures: 0, redisReconnects: 0 };

  private constructor(
    private readonly options: ClusterOptions,
    /** Commands and PUBLISH; shared with the RedisRegistry. */
    readonly client: Redis,
    /** SUBSCRIBE only. */
    private readonly subscriber: Redis,
  ) {}

  /**
   * Connects to Redis (both connections ready). Nothing is received until `listen`, so the
   * gateway can build what handles the bus (it needs this cluster's Redis client) first.
   */
  static async connect(options: ClusterOptions): Promise<Cluster> {
    const client = redisClient(options.url, `rtcmesh-gw-${options.gatewayId.slice(0, 8)}`);
    const subscriber = redisClient(options.url, `rtcmesh-gw-${options.gatewayId.slice(0, 8)}-sub`);
    const cluster = new Cluster(options, client, subscriber);
    const timeoutMs = options.connectTimeoutMs ?? 10_000;
    try {
      await Promise.all(
        [client, subscriber].map(
          (c) =>
            new Promise<void>((resolve, reject) => {
              const timer = setTimeout(
                () =>
                  reject(
                    new Error(`cannot reach Redis at ${redactUrl(options.url)} in ${timeoutMs} ms`),
                  ),
                timeoutMs,
              );
              c.once('ready', () => {
                clearTimeout(timer);
                resolve();
              });
              c.connect().catch(() => {}); // retried until ready or the timeout
            }),
        ),
      );
    } catch (err) {
      client.disconnect();
      subscriber.disconnect();
      throw err;
    }
    client.on('ready', () => cluster.onReady());
    client.on('close', () => {
      if (cluster.wasReady && !cluster.closed)
        options.logger.warn('lost the connection to Redis; reconnecting');
      cluster.wasReady = false;
    });
    return cluster;
  }

  /** Subscribes this gateway's channels: from now on the bus reaches `handlers`. */
  async listen(handlers: ClusterHandlers): Promise<void> {
    this.handlers = handlers;
    this.subscriber.on('messageBuffer', (_channel: Buffer, message: Buffer) =>
      this.receive(message.toString()),
    );
    await this.subscriber.subscribe(this.channel(this.gatewayId), this.channel('all'));
  }

  get gatewayId(): string {
    return this.options.gatewayId;
  }

  /** Whether Redis answers now. */
  get up(): boolean {
    return this.client.status === 'ready' && this.subscriber.status === 'ready';
  }

  /** The live gateways of the cluster (this one first), as last read from Redis. */
  get list(): ClusterGateway[] {
    const self = { id: this.gatewayId, url: this.publicUrl };
    return [self, ...this.gateways.filter((g) => g.id !== self.id)];
  }

  /** Starts announcing this gateway's URL (and reading the others'). */
  announce(publicUrl: string): void {
    this.publicUrl = publicUrl;
    void this.refreshGateways().then(() =>
      this.publish('all', { k: 'hello', from: this.gatewayId }),
    );
    this.announceTimer = setInterval(() => void this.refreshGateways(), ANNOUNCE_EVERY_MS);
    this.announceTimer.unref();
  }

  /**
   * The cluster's VAPID key: the one in Redis, or `local` made the cluster's own when there is
   * none yet (the first gateway's key wins; every gateway then signs pushes alike).
   */
  async sharedVapidKeys(local: VapidKeys): Promise<VapidKeys> {
    const key = `${this.options.prefix}vapid`;
    await this.client.set(key, JSON.stringify(local), 'NX');
    const stored = JSON.parse((await this.client.get(key)) ?? 'null') as VapidKeys | null;
    if (!stored?.publicKey || !stored.privateKey) throw new Error(`Redis holds no usable ${key}`);
    this.vapid = stored;
    return stored;
  }

  /**
   * The party for a node whose presence names another gateway, when that gateway listens
   * (a gateway that died has no subscriber, even while its nodes' presence lingers).
   */
  async remoteParty(node: NodeId, gatewayId: string | null): Promise<DialParty | undefined> {
    if (!gatewayId || gatewayId === this.gatewayId) return undefined;
    let reply: [string, number];
    try {
      reply = (await this.client.pubsub('NUMSUB', this.channel(gatewayId))) as [string, number];
    } catch (err) {
      if (this.client.status !== 'ready')
        throw new RegistryUnavailableError(`Redis is unreachable: ${(err as Error).message}`);
      throw err;
    }
    if (!(Number(reply[1]) > 0)) return undefined;
    return this.party(node, gatewayId);
  }

  find(callee: Registration): Promise<DialParty | undefined> {
    return this.remoteParty(callee.id, callee.gatewayId);
  }

  /**
   * A message from a node of this gateway about a dial another gateway owns: forwarded there.
   * False when no such dial was forwarded here.
   */
  forwardFromNode(node: NodeId, msg: InDialMessage): boolean {
    const route = this.routes.get(msg.dialId);
    if (!route || route.node !== node) return false;
    void this.publish(route.owner, { k: 'from-node', from: this.gatewayId, node, msg });
    if (msg.t === 'reject') this.dropRoute(msg.dialId);
    return true;
  }

  /** A node's session opened here: every gateway hears it. */
  nodeConnected(node: NodeId): void {
    void this.publish('all', { k: 'connected', from: this.gatewayId, node });
  }

  /** A node's session here ended: the gateways owning its dials are told. */
  nodeGone(node: NodeId): void {
    for (const [id, route] of this.routes) {
      if (route.node !== node) continue;
      void this.publish(route.owner, { k: 'gone', from: this.gatewayId, node, dialId: id });
      this.dropRoute(id);
    }
  }

  /**
   * Where a dial lives, for HTTP requests about it at other gateways (a woken node's service
   * worker declines at its own origin). Kept as long as the dial may ring.
   */
  async rememberDial(id: string, ttlMs: number): Promise<void> {
    await this.client.set(`${this.options.prefix}dial:${id}`, this.gatewayId, 'PX', ttlMs);
  }

  /** An HTTP request about a dial owned by another gateway, answered by that gateway. */
  async httpDial(
    node: NodeId,
    id: string,
    request: HttpDialAction,
  ): Promise<HttpDialOutcome | undefined> {
    const owner = await this.client.get(`${this.options.prefix}dial:${id}`);
    if (!owner || owner === this.gatewayId) return undefined;
    const rpc = randomBytes(12).toString('base64url');
    const result = new Promise<HttpDialOutcome | undefined>((resolve) => {
      const timer = setTimeout(() => {
        this.rpcs.delete(rpc);
        resolve(undefined);
      }, RPC_TIMEOUT_MS);
      this.rpcs.set(rpc, (value) => {
        clearTimeout(timer);
        this.rpcs.delete(rpc);
        resolve(value);
      });
    });
    const sent = await this.publish(owner, {
      k: 'http',
      from: this.gatewayId,
      rpc,
      node,
      dialId: id,
      request,
    });
    if (!sent) this.rpcs.get(rpc)?.({ ok: false, status: 404, code: 'not-found', message: '' });
    return result;
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.announceTimer);
    for (const route of this.routes.values()) clearTimeout(route.timer);
    this.routes.clear();
    if (this.client.status === 'ready')
      await this.client.zrem(`${this.options.prefix}gateways`, this.gatewayId).catch(() => 0);
    await Promise.all(
      [this.client, this.subscriber].map((c) => c.quit().catch(() => c.disconnect())),
    );
  }

  private party(node: NodeId, gatewayId: string): DialParty {
    return {
      id: node,
      deliver: (msg) => {
        if (msg.t === 'incoming') this.stats.forwarded++;
        void this.publish(gatewayId, { k: 'to-node', from: this.gatewayId, node, msg }).then(
          (sent) => {
            if (!sent && 'dialId' in msg && msg.t !== 'cancel')
              this.handlers?.remoteGone(node, msg.dialId);
          },
        );
      },
    };
  }

  private channel(gatewayId: string): string {
    return `${this.options.prefix}bus:${gatewayId}`;
  }

  /** Publishes; false when Redis is down or nobody listens on that channel. */
  private async publish(to: string, message: BusMessage): Promise<boolean> {
    try {
      const receivers = await this.client.publish(this.channel(to), JSON.stringify(message));
      return receivers > 0;
    } catch {
      this.stats.publishFailures++;
      return false;
    }
  }

  private receive(text: string): void {
    let message: BusMessage;
    try {
      const parsed = parseValue(busSchema, JSON.parse(text));
      if (!parsed.ok) return;
      message = parsed.value;
    } catch {
      return;
    }
    if (message.from === this.gatewayId) return;
    this.stats.received++;
    const handlers = this.handlers;
    if (!handlers) return;
    switch (message.k) {
      case 'to-node': {
        const { msg, node } = message;
        const delivered = handlers.deliverLocal(node as NodeId, msg);
        if (!('dialId' in msg)) return;
        if (!delivered) {
          if (msg.t === 'incoming')
            void this.publish(message.from, {
              k: 'gone',
              from: this.gatewayId,
              node,
              dialId: msg.dialId,
            });
          return;
        }
        if (msg.t === 'incoming') this.addRoute(msg.dialId, message.from, node as NodeId);
        else if (msg.t === 'cancel') this.dropRoute(msg.dialId);
        return;
      }
      case 'from-node': {
        const msg = message.msg;
        if (msg.t === 'dial' || msg.t === 'ping') return;
        handlers.fromRemote(this.party(message.node as NodeId, message.from), msg);
        return;
      }
      case 'gone':
        handlers.remoteGone(message.node as NodeId, message.dialId);
        return;
      case 'connected':
        handlers.remoteConnected(this.party(message.node as NodeId, message.from));
        return;
      case 'hello':
        void this.refreshGateways();
        return;
      case 'http': {
        const request: HttpDialAction = message.request;
        const reply = (result: HttpDialOutcome) =>
          void this.publish(message.from, {
            k: 'http-reply',
            from: this.gatewayId,
            rpc: message.rpc,
            result,
          });
        handlers
          .httpDial(message.node as NodeId, message.dialId, request)
          .then(reply, (err: unknown) =>
            reply({ ok: false, status: 502, code: 'gateway', message: String(err).slice(0, 512) }),
          );
        return;
      }
      case 'http-reply':
        this.rpcs.get(message.rpc)?.(message.result);
        return;
    }
  }

  private addRoute(id: string, owner: string, node: NodeId): void {
    this.dropRoute(id);
    const timer = setTimeout(() => this.routes.delete(id), this.options.routeTtlMs);
    timer.unref();
    this.routes.set(id, { owner, node, timer });
  }

  private dropRoute(id: string): void {
    const route = this.routes.get(id);
    if (!route) return;
    clearTimeout(route.timer);
    this.routes.delete(id);
  }

  private onReady(): void {
    if (this.closed || this.wasReady) return;
    this.wasReady = true;
    this.stats.redisReconnects++;
    this.options.logger.warn('connected to Redis again');
    // A Redis that lost its data (no persistence) gets the cluster's key back from us.
    if (this.vapid)
      void this.client
        .set(`${this.options.prefix}vapid`, JSON.stringify(this.vapid), 'NX')
        .catch(() => undefined);
    void this.refreshGateways();
    this.handlers?.ready();
  }

  private async refreshGateways(): Promise<void> {
    if (this.closed || this.client.status !== 'ready') return;
    const now = Date.now();
    const key = `${this.options.prefix}gateways`;
    const urls = `${this.options.prefix}gateway-urls`;
    try {
      const replies = await this.client
        .multi()
        .zadd(key, now + ANNOUNCE_TTL_MS, this.gatewayId)
        .hset(urls, this.gatewayId, this.publicUrl)
        .zremrangebyscore(key, '-inf', now)
        .zrangebyscore(key, now, '+inf')
        .exec();
      const ids = (replies?.[3]?.[1] as string[] | undefined) ?? [];
      const found = ids.length ? await this.client.hmget(urls, ...ids) : [];
      this.gateways = ids.flatMap((id, i) => {
        const url = found[i];
        return url ? [{ id, url }] : [];
      });
    } catch {
      // Redis is away: keep the last list; announced again once it is back.
    }
  }
}
