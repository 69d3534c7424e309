/**
 * Federation without Redis (docs/design.md "Federation and large meshes"): the second
 * implementation of the cluster bus (cluster.ts), for small meshes whose gateways sit on
 * different networks. Gateways link to each other over WebSockets (link.ts), each proving its
 * identity with its signed record; they keep the full presence table of the mesh (routes.ts),
 * passed on hop by hop, and route a dial's messages along the gateway graph toward the
 * gateway holding the callee, and back toward the one owning the dial.
 *
 * Nothing a peer says is believed beyond routing: nodes check each other's signed records
 * against the DTLS fingerprints end to end, so a lying gateway makes a dial fail, never
 * succeed with the wrong node.
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocket, WebSocketServer } from 'ws';
import {
  formatIp6,
  idPrefixFromMeshIp6,
  meshIp6,
  type NodeId,
  parseIp6,
  parseNodeId,
} from '../../../core/identity/index.ts';
import type { GatewayToNode, IceServerConfig } from '../../../core/protocol/messages.ts';
import type { Logger } from '../../log.ts';
import { RateLimiter } from '../../rate-limit.ts';
import type { Registration } from '../../registry/index.ts';
import { normalIp } from '../../turn/address-policy.ts';
import type { ClusterBus, ClusterHandlers, InDialMessage } from '../cluster.ts';
import type { DialParty, HttpDialOutcome } from '../signaling.ts';
import { Link, type LinkIdentity } from './link.ts';
import {
  type LinkMessage,
  MAX_FRAME_BYTES,
  MAX_HOPS,
  type RoutedBody,
  type RouteMessage,
  type TransitServer,
} from './protocol.ts';
import { RouteTable } from './routes.ts';
import { TransitForwarder } from './transit.ts';

export const FEDERATION_PATH = '/v1/federation';

/** Links at once (up or still proving who they are). */
const MAX_LINKS = 64;
/** Configured peers (--peer and addPeer). */
const MAX_PEERS = 64;
const MAX_ROUTES = 50_000;
const MAX_ROUTES_PER_PEER = 20_000;
/** Dials forwarded to a session here, remembered for the callee's way back. */
const MAX_DIAL_ROUTES = 10_000;
const RECONNECT_MIN_MS = 1000;
const RECONNECT_MAX_MS = 30_000;
/**
 * Calls one peer may ring on this gateway's nodes: dials crossing a link skip the caller's
 * gateway limits here, so a peer that floods calls is refused beyond this (a small mesh's
 * honest rate is far below).
 */
const INCOMING_PER_LINK = { perSecond: 50, burst: 200 };
/** A link whose peer stops answering pings for this long is cut. */
const PING_EVERY_MS = 15_000;

export interface FederationOptions {
  self: LinkIdentity;
  /** Accept links that other gateways open (also once addPeer is called, as --peer implies). */
  accept: boolean;
  /** Only these gateways may link (undefined: any gateway that proves its identity). */
  allow: ReadonlySet<string> | undefined;
  /** How long a forwarded dial is remembered on the callee's side. */
  routeTtlMs: number;
  logger: Logger;
  /**
   * TURN chaining, offering side: the transit servers this gateway runs on `local` (its
   * address on a link), with credentials for peer `peer`'s nodes.
   */
  transitOffers?: (local: string, peer: NodeId) => TransitServer[];
  /** TURN chaining, using side: where this gateway's nodes reach its forwarders (its TURN host). */
  forwardHost?: string;
}

/** Transit credentials are offered again this often (they last an hour). */
const TRANSIT_REFRESH_MS = 20 * 60_000;

interface Peer {
  url: string;
  wsUrl: string;
  expected: NodeId | undefined;
  link: Link | undefined;
  attempt: number;
  timer: ReturnType<typeof setTimeout> | undefined;
  /** Removed by removePeer: not linked to again. */
  removed: boolean;
}

/** A --peer URL: http(s) or ws(s), optionally pinned with `#<gateway ID>`. */
export function parsePeerUrl(text: string): { url: string; wsUrl: string; expected?: NodeId } {
  let url: URL;
  try {
    url = new URL(text.trim());
  } catch {
    throw new Error(`a peer must be a URL such as http://192.0.2.1:8080, not "${text}"`);
  }
  const scheme = { 'http:': 'ws:', 'https:': 'wss:', 'ws:': 'ws:', 'wss:': 'wss:' }[url.protocol];
  if (!scheme) throw new Error(`a peer URL must be http(s) or ws(s), not ${url.protocol}`);
  let expected: NodeId | undefined;
  if (url.hash) {
    expected = parseNodeId(url.hash.slice(1));
    if (!expected) throw new Error(`"${url.hash}" in peer URL ${text} is not a gateway ID`);
  }
  const base = `${scheme}//${url.host}${url.pathname.replace(/\/+$/, '')}`;
  return {
    url: `${url.protocol}//${url.host}${url.pathname.replace(/\/+$/, '')}`,
    wsUrl: base.endsWith(FEDERATION_PATH) ? base : `${base}${FEDERATION_PATH}`,
    ...(expected ? { expected } : {}),
  };
}

export class Federation implements ClusterBus {
  private readonly links = new Map<NodeId, Link>();
  private readonly handshaking = new Set<Link>();
  private readonly peers = new Map<string, Peer>();
  /** Nodes with a session here. */
  private readonly local = new Set<NodeId>();
  private readonly table = new RouteTable({
    maxRoutes: MAX_ROUTES,
    maxRoutesPerPeer: MAX_ROUTES_PER_PEER,
  });
  /** Dials forwarded to a session here: the gateway owning each. */
  private readonly dialRoutes = new Map<
    string,
    { owner: NodeId; node: NodeId; timer: ReturnType<typeof setTimeout> }
  >();
  private readonly incoming = new RateLimiter(INCOMING_PER_LINK, MAX_LINKS * 2);
  private readonly server = new WebSocketServer({ noServer: true, maxPayload: MAX_FRAME_BYTES });
  private handlers: ClusterHandlers | undefined;
  private readonly pinger: ReturnType<typeof setInterval>;
  private readonly transitTimer: ReturnType<typeof setInterval>;
  /** Forwarders to peers' transit TURN servers, by peer, with the credentials to use. */
  private readonly forwarders = new Map<
    NodeId,
    { forwarder: TransitForwarder; server: TransitServer }[]
  >();
  private closed = false;
  private accepting: boolean;
  readonly stats = { forwarded: 0, routed: 0, dropped: 0, refusedLinks: 0 };

  constructor(private readonly options: FederationOptions) {
    this.accepting = options.accept;
    this.pinger = setInterval(() => this.ping(), PING_EVERY_MS);
    this.pinger.unref();
    this.transitTimer = setInterval(() => {
      for (const link of this.links.values()) this.offerTransit(link);
    }, TRANSIT_REFRESH_MS);
    this.transitTimer.unref();
  }

  get id(): NodeId {
    return this.options.self.identity.id;
  }

  /** The gateways linked now. */
  get linkedPeers(): NodeId[] {
    return [...this.links.keys()];
  }

  /** Routes held (every peer's offers). */
  get routeCount(): number {
    return this.table.size;
  }

  /** Gateways reachable through the federation, with the gateways crossed to reach each. */
  get gateways(): { id: NodeId; path: readonly NodeId[] }[] {
    const out: { id: NodeId; path: readonly NodeId[] }[] = [];
    for (const node of this.table.nodes) {
      const best = this.table.best(node);
      if (best && best.path[0] === node) out.push({ id: node, path: [...best.path].reverse() });
    }
    return out;
  }

  async listen(handlers: ClusterHandlers): Promise<void> {
    this.handlers = handlers;
  }

  /**
   * Links to another gateway (a --peer, or one found on the LAN), and keeps linking again
   * whenever the link drops. A URL already added is not added twice. From then on this
   * gateway also accepts links (two gateways that found each other may both dial).
   */
  addPeer(text: string): void {
    if (this.closed) return;
    const parsed = parsePeerUrl(text);
    this.accepting = true;
    if (this.peers.has(parsed.wsUrl)) return;
    if (this.peers.size >= MAX_PEERS)
      throw new Error(`a gateway links to at most ${MAX_PEERS} peers`);
    const peer: Peer = {
      url: parsed.url,
      wsUrl: parsed.wsUrl,
      expected: parsed.expected,
      link: undefined,
      attempt: 0,
      timer: undefined,
      removed: false,
    };
    this.peers.set(parsed.wsUrl, peer);
    this.connect(peer);
  }

  /**
   * Stops linking to a peer addPeer added (a gateway gone from the LAN, or moved to another
   * URL): it is not linked to again, and its place is free. A link open to it stays until it
   * drops.
   */
  removePeer(text: string): void {
    const parsed = parsePeerUrl(text);
    const peer = this.peers.get(parsed.wsUrl);
    if (!peer) return;
    this.peers.delete(parsed.wsUrl);
    peer.removed = true;
    clearTimeout(peer.timer);
    peer.timer = undefined;
  }

  /** An HTTP upgrade to FEDERATION_PATH: a gateway opening a link to us. */
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    if (!this.accepting || this.closed || this.linkCount >= MAX_LINKS) {
      this.stats.refusedLinks++;
      socket.end('HTTP/1.1 403 Forbidden\r\nconnection: close\r\n\r\n');
      return;
    }
    const addresses = {
      local: normalIp(req.socket.localAddress ?? ''),
      remote: normalIp(req.socket.remoteAddress ?? ''),
    };
    this.server.handleUpgrade(req, socket, head, (ws) =>
      this.adopt(ws, false, undefined, addresses),
    );
  }

  // --- the cluster bus ---

  async find(callee: Registration): Promise<DialParty | undefined> {
    if (this.local.has(callee.id)) return undefined;
    const best = this.table.best(callee.id);
    const holder = best?.path[0];
    return holder ? this.party(callee.id, holder) : undefined;
  }

  /** A node held by another gateway of the federation, as a registration for signaling. */
  async lookup(to: string): Promise<Registration | undefined> {
    let id = parseNodeId(to);
    const bytes = id ? undefined : idPrefixFromMeshIp6(to) && parseIp6(to);
    if (bytes) {
      const canonical = formatIp6(bytes); // one spelling, as meshIp6 writes it
      for (const node of this.table.nodes)
        if (meshIp6(node) === canonical) {
          id = node;
          break;
        }
    }
    if (!id || this.local.has(id)) return undefined;
    const best = this.table.best(id);
    if (!best) return undefined;
    const now = Date.now();
    return {
      id,
      ip6: meshIp6(id),
      record: '',
      gatewayId: best.path[0] ?? null,
      lastSeen: now,
      expiresAt: now + 60_000,
      push: null,
    };
  }

  forwardFromNode(node: NodeId, msg: InDialMessage): boolean {
    const route = this.dialRoutes.get(msg.dialId);
    if (!route || route.node !== node) return false;
    this.sendRouted(route.owner, { k: 'from-node', node, msg });
    if (msg.t === 'reject') this.dropDialRoute(msg.dialId);
    return true;
  }

  nodeConnected(node: NodeId): void {
    this.local.add(node);
    this.propagate(node);
  }

  nodeGone(node: NodeId): void {
    // A node that opened a new session before its old one ended is still here.
    if (this.handlers?.holds(node)) return;
    this.local.delete(node);
    this.propagate(node);
    for (const [id, route] of this.dialRoutes) {
      if (route.node !== node) continue;
      this.sendRouted(route.owner, { k: 'gone', node, dialId: id });
      this.dropDialRoute(id);
    }
  }

  /** Pushed callees answer at their own gateway only: nothing to remember across the mesh. */
  async rememberDial(): Promise<void> {}

  async httpDial(): Promise<HttpDialOutcome | undefined> {
    return undefined;
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.pinger);
    clearInterval(this.transitTimer);
    for (const peer of [...this.forwarders.keys()]) this.dropForwarders(peer);
    for (const peer of this.peers.values()) clearTimeout(peer.timer);
    for (const link of [...this.links.values(), ...this.handshaking])
      link.close('gateway stopping');
    for (const route of this.dialRoutes.values()) clearTimeout(route.timer);
    this.dialRoutes.clear();
    this.table.clear();
    this.server.close();
  }

  // --- links ---

  private get linkCount(): number {
    return this.links.size + this.handshaking.size;
  }

  private connect(peer: Peer): void {
    if (this.closed || peer.removed) return;
    peer.timer = undefined;
    if (this.linkCount >= MAX_LINKS) {
      this.retry(peer);
      return;
    }
    const ws = new WebSocket(peer.wsUrl, {
      maxPayload: MAX_FRAME_BYTES,
      handshakeTimeout: 10_000,
      perMessageDeflate: false,
    });
    let adopted = false;
    let addresses = { local: '', remote: '' };
    ws.once('upgrade', (res) => {
      addresses = {
        local: normalIp(res.socket.localAddress ?? ''),
        remote: normalIp(res.socket.remoteAddress ?? ''),
      };
    });
    ws.once('open', () => {
      adopted = true;
      peer.link = this.adopt(ws, true, peer, addresses);
    });
    ws.once('error', () => {
      if (!adopted) this.retry(peer);
    });
  }

  private retry(peer: Peer): void {
    if (this.closed || peer.removed || peer.timer) return;
    const delay = Math.min(RECONNECT_MAX_MS, RECONNECT_MIN_MS * 2 ** peer.attempt);
    peer.attempt = Math.min(peer.attempt + 1, 10);
    peer.timer = setTimeout(() => this.connect(peer), delay);
    peer.timer.unref();
  }

  private adopt(
    ws: WebSocket,
    initiator: boolean,
    peer: Peer | undefined,
    addresses: { local: string; remote: string },
  ): Link {
    const link = new Link({
      socket: ws,
      addresses,
      self: this.options.self,
      initiator,
      ...(peer ? { url: peer.url } : {}),
      ...(peer?.expected ? { expectedPeer: peer.expected } : {}),
      logger: this.options.logger,
      events: {
        up: (l) => this.linkUp(l, peer),
        message: (l, msg) => this.receive(l, msg),
        closed: (l, reason) => this.linkClosed(l, reason, peer),
      },
    });
    this.handshaking.add(link);
    return link;
  }

  private linkUp(link: Link, peer: Peer | undefined): boolean {
    this.handshaking.delete(link);
    const id = link.peer as NodeId;
    const allow = this.options.allow;
    if (allow && !allow.has(id)) {
      this.stats.refusedLinks++;
      this.options.logger.warn({ peer: id }, 'federation: refused a gateway not in --peer-allow');
      return false;
    }
    const existing = this.links.get(id);
    if (existing) {
      // Two links to one peer (each linked to the other): both sides keep the one opened by
      // the gateway with the lower ID.
      const keepInitiatedHere = this.id < id;
      if (existing.initiator === keepInitiatedHere) return false;
      this.links.delete(id);
      existing.close('a second link to the same gateway');
    }
    this.links.set(id, link);
    if (peer) peer.attempt = 0;
    this.options.logger.info(
      { peer: id, url: link.url, initiator: link.initiator },
      `federation: linked to gateway ${id}`,
    );
    this.offerTransit(link);
    // The whole table, as the peer should see it.
    link.send({ t: 'announce', node: this.id, path: [this.id] });
    for (const node of this.local) link.send({ t: 'announce', node, path: [this.id] });
    for (const node of this.table.nodes) {
      if (this.local.has(node)) continue;
      const offer = this.offerTo(node, id);
      if (offer) link.send(offer);
    }
    return true;
  }

  private linkClosed(link: Link, reason: string, peer: Peer | undefined): void {
    this.handshaking.delete(link);
    const id = link.peer;
    if (id && this.links.get(id) === link) {
      this.links.delete(id);
      this.options.logger.warn({ peer: id, reason }, `federation: link to gateway ${id} closed`);
      for (const node of this.table.removePeer(id)) this.propagate(node);
      this.dropForwarders(id);
    } else if (peer && !id) {
      this.options.logger.warn({ url: peer.url, reason }, 'federation: could not link');
    }
    if (peer && peer.link === link) {
      peer.link = undefined;
      this.retry(peer);
    }
  }

  private ping(): void {
    // ws answers pings by itself; a link whose socket errors or closes cleans up through
    // its close event.
    for (const link of this.links.values()) link.ping();
  }

  // --- presence ---

  /** What to tell peer `to` about `node`: our best path to it, or that we have none. */
  private offerTo(node: NodeId, to: NodeId): LinkMessage | undefined {
    if (node === to) return undefined;
    if (this.local.has(node)) return { t: 'announce', node, path: [this.id] };
    const best = this.table.best(node);
    // Split horizon: never offer a peer a path through itself; and the hop limit.
    if (!best || best.path.includes(to) || best.path.length + 1 > MAX_HOPS)
      return { t: 'withdraw', node };
    return { t: 'announce', node, path: [...best.path, this.id] };
  }

  /** The best route to `node` changed here: every peer hears the new one. */
  private propagate(node: NodeId): void {
    for (const [peer, link] of this.links) {
      const offer = this.offerTo(node, peer);
      if (offer) link.send(offer);
    }
  }

  private receive(link: Link, msg: LinkMessage): void {
    const from = link.peer as NodeId;
    switch (msg.t) {
      case 'announce': {
        const node = msg.node as NodeId;
        const path = msg.path as NodeId[];
        // The sender is the last gateway of the path it offers: otherwise it lies.
        if (path[path.length - 1] !== from) {
          this.dropped(link, 'a path not ending at its sender');
          return;
        }
        if (path.includes(this.id) || node === this.id) return; // a loop
        if (new Set(path).size !== path.length) {
          this.dropped(link, 'a path with a loop');
          return;
        }
        if (this.table.set(node, from, path)) this.propagate(node);
        return;
      }
      case 'withdraw':
        if (this.table.remove(msg.node as NodeId, from)) this.propagate(msg.node as NodeId);
        return;
      case 'route':
        this.route(link, msg);
        return;
      case 'transit':
        void this.useTransit(link, msg.servers).catch((err: unknown) =>
          this.options.logger.warn({ err, peer: from }, 'federation: transit forwarder failed'),
        );
        return;
    }
  }

  // --- TURN chaining ---

  /** The ICE servers a node here gets beside this gateway's own: peers' transit servers. */
  transitIceServers(): IceServerConfig[] {
    const host = this.options.forwardHost;
    if (!host) return [];
    const h = host.includes(':') ? `[${host}]` : host;
    return [...this.forwarders.values()].flat().map(({ forwarder, server }) => ({
      urls: [`turn:${h}:${forwarder.port}?transport=udp`],
      username: server.username,
      credential: server.credential,
    }));
  }

  private offerTransit(link: Link): void {
    const servers = this.options.transitOffers?.(link.addresses.local, link.peer as NodeId) ?? [];
    if (servers.length) link.send({ t: 'transit', servers: servers.slice(0, 4) });
  }

  /** A peer offers its transit servers: forward to them from our LAN (new credentials kept). */
  private async useTransit(link: Link, servers: TransitServer[]): Promise<void> {
    const peer = link.peer as NodeId;
    const host = this.options.forwardHost;
    if (!host) return;
    const current = this.forwarders.get(peer) ?? [];
    const next: { forwarder: TransitForwarder; server: TransitServer }[] = [];
    for (const server of servers) {
      // Only to the peer's own address on this link: a peer may not make us send anywhere else.
      if (normalIp(server.host) !== link.addresses.remote) {
        this.dropped(link, 'a transit server not at the peer itself');
        continue;
      }
      const same = current.find(
        (f) =>
          f.forwarder.upstream.host === server.host && f.forwarder.upstream.port === server.port,
      );
      next.push({
        forwarder:
          same?.forwarder ?? (await TransitForwarder.start(host, server, this.options.logger)),
        server,
      });
    }
    for (const old of current)
      if (!next.some((n) => n.forwarder === old.forwarder)) old.forwarder.close();
    if (!this.links.has(peer) || this.closed) {
      for (const n of next) n.forwarder.close();
      return;
    }
    this.forwarders.set(peer, next);
  }

  private dropForwarders(peer: NodeId): void {
    for (const f of this.forwarders.get(peer) ?? []) f.forwarder.close();
    this.forwarders.delete(peer);
  }

  private dropped(link: Link, what: string): void {
    this.stats.dropped++;
    if (this.stats.dropped % 100 === 1)
      this.options.logger.warn({ peer: link.peer }, `federation: dropped ${what}`);
  }

  // --- dials along the gateway graph ---

  private route(link: Link, msg: RouteMessage): void {
    if (msg.to !== this.id) {
      if (msg.ttl <= 0) {
        this.dropped(link, 'a message out of hops');
        return;
      }
      const best = this.table.best(msg.to as NodeId);
      if (!best || best.via === link.peer) {
        this.dropped(link, 'a message with no way on');
        return;
      }
      this.stats.routed++;
      this.links.get(best.via)?.send({ ...msg, ttl: msg.ttl - 1 });
      return;
    }
    const handlers = this.handlers;
    if (!handlers) return;
    const origin = msg.from as NodeId;
    const body = msg.body;
    const node = body.node as NodeId;
    switch (body.k) {
      case 'to-node': {
        const m = body.msg;
        if (m.t === 'incoming' && !this.incoming.take(link.peer ?? '')) {
          this.dropped(link, 'a call over the rate of calls a peer may ring');
          this.sendRouted(origin, { k: 'gone', node, dialId: m.dialId });
          return;
        }
        const delivered = handlers.deliverLocal(node, m);
        if (!('dialId' in m)) return;
        if (!delivered) {
          if (m.t === 'incoming') this.sendRouted(origin, { k: 'gone', node, dialId: m.dialId });
          return;
        }
        if (m.t === 'incoming') this.addDialRoute(m.dialId, origin, node);
        else if (m.t === 'cancel') this.dropDialRoute(m.dialId);
        return;
      }
      case 'from-node': {
        const m = body.msg;
        if (m.t === 'dial' || m.t === 'ping') return;
        handlers.fromRemote(this.party(node, origin), m);
        return;
      }
      case 'gone':
        handlers.remoteGone(node, body.dialId);
        return;
    }
  }

  /** Sends toward gateway `to`; false when no route leads there. */
  private sendRouted(to: NodeId, body: RoutedBody): boolean {
    const best = this.table.best(to);
    const link = best && this.links.get(best.via);
    if (!link) return false;
    link.send({ t: 'route', to, from: this.id, ttl: MAX_HOPS, body });
    return true;
  }

  /** A node held by gateway `holder`, as a party of a dial owned here. */
  private party(node: NodeId, holder: NodeId): DialParty {
    return {
      id: node,
      deliver: (msg: GatewayToNode) => {
        if (msg.t === 'incoming') this.stats.forwarded++;
        const sent = this.sendRouted(holder, { k: 'to-node', node, msg });
        if (!sent && 'dialId' in msg && msg.t !== 'cancel') {
          const dialId = msg.dialId;
          // Not from within the signaling call that is delivering.
          setImmediate(() => this.handlers?.remoteGone(node, dialId));
        }
      },
    };
  }

  private addDialRoute(id: string, owner: NodeId, node: NodeId): void {
    this.dropDialRoute(id);
    if (this.dialRoutes.size >= MAX_DIAL_ROUTES) {
      const oldest = this.dialRoutes.keys().next().value;
      if (oldest !== undefined) this.dropDialRoute(oldest);
    }
    const timer = setTimeout(() => this.dialRoutes.delete(id), this.options.routeTtlMs);
    timer.unref();
    this.dialRoutes.set(id, { owner, node, timer });
  }

  private dropDialRoute(id: string): void {
    const route = this.dialRoutes.get(id);
    if (!route) return;
    clearTimeout(route.timer);
    this.dialRoutes.delete(id);
  }
}
