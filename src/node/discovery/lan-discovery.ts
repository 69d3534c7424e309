/**
 * LAN discovery over UDP multicast (IPv4 and IPv6), the adapter around announcement.ts:
 * listens for gateways' signed announcements and devices' candidacies, asks "any gateway
 * here?", and announces a gateway of this process. What it reports is signature-checked but
 * still only a hint: GatewayClient makes a session only with a gateway that proves the ID.
 *
 * Bounded against a hostile LAN: a datagram is parsed only up to MAX_DATAGRAM bytes, the
 * tables keep at most MAX_SEEN entries, signature checks are cached (an honest gateway's
 * periodic announcement costs one check ever) and new ones are rate-limited.
 */
import { createSocket, type Socket } from 'node:dgram';
import { networkInterfaces } from 'node:os';
import type { NodeId, NodeIdentity } from '../../core/identity/index.ts';
import type { LocatedGateway } from '../../core/node/gateway-client.ts';
import { type Logger, silentLogger } from '../../core/node/logger.ts';
import {
  LAN_GROUP_V4,
  LAN_GROUP_V6,
  LAN_PORT,
  type LanMessage,
  parseLanDatagram,
  QUERY,
  signLanMessage,
  verifyLanMessage,
} from './announcement.ts';

/** A gateway heard on the LAN, its announcement's signature checked. */
export interface HeardGateway extends LocatedGateway {
  readonly id: NodeId;
  /** When its last announcement came (ms). */
  readonly heardAt: number;
}

export interface LanDiscoveryOptions {
  /** UDP port (default LAN_PORT): devices on one LAN must agree. */
  port?: number;
  logger?: Logger;
  signal?: AbortSignal;
}

/** How often a gateway announces itself. */
export const ANNOUNCE_EVERY_MS = 2000;
/** A gateway not heard for this long is gone. */
export const GATEWAY_FRESH_MS = 3 * ANNOUNCE_EVERY_MS;
/** A candidacy counts for this long. */
export const CANDIDATE_FRESH_MS = 2000;
/** How long a query waits for answers. */
const QUERY_WAIT_MS = 1000;
const MAX_SEEN = 32;
const MAX_VERIFIED_TOKENS = 64;
/** New signature checks per second; beyond this, unknown signed datagrams are dropped. */
const VERIFY_PER_S = 20;
/** A gateway answers queries at most this often (a query flood is not an amplifier). */
const ANSWER_GAP_MS = 250;
/** Interfaces may come and go: memberships are renewed this often. */
const INTERFACES_EVERY_MS = 10_000;

type Events = {
  /** A gateway's announcement (new, or after it had gone quiet): the federation's hook. */
  gateway: (gateway: HeardGateway) => void;
  /** A gateway said bye, or was not heard for GATEWAY_FRESH_MS. */
  gone: (id: NodeId) => void;
};

/** A bounded map that forgets its oldest entries. */
function remember<K, V>(map: Map<K, V>, key: K, value: V, max: number): void {
  map.delete(key);
  map.set(key, value);
  while (map.size > max) map.delete(map.keys().next().value as K);
}

export class LanDiscovery {
  private readonly sockets: { socket: Socket; family: 4 | 6 }[] = [];
  private readonly heard = new Map<NodeId, HeardGateway>();
  private readonly candidates = new Map<NodeId, number>();
  /** Tokens whose signature checked out (true) or not (false). */
  private readonly checked = new Map<string, boolean>();
  private verifyBudget = { second: 0, used: 0 };
  private readonly joined = new Set<string>();
  private readonly listeners: { [K in keyof Events]: Set<Events[K]> } = {
    gateway: new Set(),
    gone: new Set(),
  };
  private readonly timers: ReturnType<typeof setInterval>[] = [];
  private announcing: { id: NodeId; token: string; lastAnswer: number } | undefined;
  private closed = false;
  readonly port: number;
  private readonly log: Logger;
  /** Datagrams refused (malformed or a bad signature): a sign of noise or an attack. */
  refused = 0;

  private constructor(options: LanDiscoveryOptions) {
    this.port = options.port ?? LAN_PORT;
    this.log = options.logger ?? silentLogger;
    options.signal?.addEventListener('abort', () => this.close(), { once: true });
  }

  /** Opens the multicast sockets (IPv4 and, where the host has it, IPv6). */
  static async start(options: LanDiscoveryOptions = {}): Promise<LanDiscovery> {
    const discovery = new LanDiscovery(options);
    await discovery.open(4);
    await discovery.open(6).catch((err: unknown) => {
      discovery.log.debug(`LAN discovery: no IPv6 (${(err as Error).message})`);
    });
    if (!discovery.sockets.length) throw new Error('LAN discovery could not open a socket');
    discovery.joinInterfaces();
    discovery.timers.push(
      setInterval(() => discovery.joinInterfaces(), INTERFACES_EVERY_MS),
      setInterval(() => discovery.expire(), 500),
    );
    return discovery;
  }

  private open(family: 4 | 6): Promise<void> {
    const socket = createSocket({ type: family === 4 ? 'udp4' : 'udp6', reuseAddr: true });
    return new Promise((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(this.port, family === 4 ? '0.0.0.0' : '::', () => {
        socket.off('error', reject);
        socket.on('error', (err) => this.log.debug(`LAN discovery socket: ${err.message}`));
        socket.on('message', (data) => void this.receive(data));
        socket.setMulticastLoopback(true);
        socket.setMulticastTTL(1);
        this.sockets.push({ socket, family });
        resolve();
      });
    });
  }

  /** The LAN interfaces: their IPv4 addresses, and IPv6 scopes (`::%name`). */
  private interfaces(): { v4: string[]; v6: string[] } {
    const v4: string[] = [];
    const v6: string[] = [];
    for (const [name, addresses] of Object.entries(networkInterfaces())) {
      for (const a of addresses ?? []) {
        if (a.internal) continue;
        if (a.family === 'IPv4') v4.push(a.address);
        else if (!v6.includes(`::%${name}`)) v6.push(`::%${name}`);
      }
    }
    return { v4, v6 };
  }

  private joinInterfaces(): void {
    const { v4, v6 } = this.interfaces();
    for (const { socket, family } of this.sockets) {
      for (const iface of family === 4 ? v4 : v6) {
        const key = `${family} ${iface}`;
        if (this.joined.has(key)) continue;
        try {
          socket.addMembership(family === 4 ? LAN_GROUP_V4 : LAN_GROUP_V6, iface);
          this.joined.add(key);
        } catch (err) {
          this.log.debug(`LAN discovery: cannot join on ${iface}: ${(err as Error).message}`);
        }
      }
    }
  }

  /** Sends a datagram to the group on every LAN interface; resolves once it has left. */
  private send(text: string): Promise<void> {
    if (this.closed) return Promise.resolve();
    const data = Buffer.from(text);
    const { v4, v6 } = this.interfaces();
    const sent: Promise<void>[] = [];
    for (const { socket, family } of this.sockets) {
      for (const iface of family === 4 ? v4 : v6) {
        try {
          socket.setMulticastInterface(iface);
          sent.push(
            new Promise((resolve) =>
              socket.send(data, this.port, family === 4 ? LAN_GROUP_V4 : LAN_GROUP_V6, () =>
                resolve(),
              ),
            ),
          );
        } catch (err) {
          this.log.debug(`LAN discovery: cannot send on ${iface}: ${(err as Error).message}`);
        }
      }
    }
    return Promise.all(sent).then(() => undefined);
  }

  private async receive(data: Buffer): Promise<void> {
    const decoded = parseLanDatagram(data);
    if (!decoded.ok) {
      this.refused++;
      return;
    }
    const message = decoded.message;
    if (message.kind === 'query') {
      const a = this.announcing;
      if (a && Date.now() - a.lastAnswer >= ANSWER_GAP_MS) {
        a.lastAnswer = Date.now();
        void this.send(a.token);
      }
      return;
    }
    if (!(await this.verified(message))) {
      this.refused++;
      return;
    }
    if (this.closed) return;
    if (message.kind === 'candidate') {
      remember(this.candidates, message.id, Date.now(), MAX_SEEN);
      return;
    }
    if (message.kind === 'bye') {
      if (this.heard.get(message.id)?.url === message.url) this.forget(message.id);
      return;
    }
    if (!message.url) return;
    const before = this.heard.get(message.id);
    const gateway: HeardGateway = { id: message.id, url: message.url, heardAt: Date.now() };
    remember(this.heard, message.id, gateway, MAX_SEEN);
    if (!before || before.url !== gateway.url) {
      this.log.debug(`LAN discovery: gateway ${gateway.id} at ${gateway.url}`);
      for (const l of this.listeners.gateway) l(gateway);
    }
  }

  /** A signed message's signature, checked once per distinct datagram, within the budget. */
  private async verified(message: Extract<LanMessage, { token: string }>): Promise<boolean> {
    const known = this.checked.get(message.token);
    if (known !== undefined) return known;
    const second = Math.floor(Date.now() / 1000);
    if (this.verifyBudget.second !== second) this.verifyBudget = { second, used: 0 };
    if (++this.verifyBudget.used > VERIFY_PER_S) return false;
    const ok = await verifyLanMessage(message.token);
    remember(this.checked, message.token, ok, MAX_VERIFIED_TOKENS);
    return ok;
  }

  private forget(id: NodeId): void {
    if (!this.heard.delete(id)) return;
    for (const l of this.listeners.gone) l(id);
  }

  private expire(): void {
    const now = Date.now();
    for (const g of [...this.heard.values()])
      if (now - g.heardAt > GATEWAY_FRESH_MS) this.forget(g.id);
    for (const [id, at] of [...this.candidates])
      if (now - at > CANDIDATE_FRESH_MS) this.candidates.delete(id);
  }

  /** The gateways heard lately, the lowest ID first (the one two gateways settle on). */
  gateways(): HeardGateway[] {
    const now = Date.now();
    return [...this.heard.values()]
      .filter((g) => now - g.heardAt <= GATEWAY_FRESH_MS)
      .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  /** Devices that said lately they would start a gateway. */
  candidateIds(): NodeId[] {
    const now = Date.now();
    return [...this.candidates]
      .filter(([, at]) => now - at <= CANDIDATE_FRESH_MS)
      .map(([id]) => id);
  }

  /** Asks the LAN for gateways; resolves with those heard by the first answer (or the wait). */
  async query(signal?: AbortSignal, waitMs = QUERY_WAIT_MS): Promise<HeardGateway[]> {
    void this.send(QUERY);
    // Again a little later: one datagram may be lost.
    const again = setTimeout(() => void this.send(QUERY), waitMs / 3);
    const deadline = Date.now() + waitMs;
    try {
      while (!this.gateways().length && Date.now() < deadline && !signal?.aborted && !this.closed)
        await new Promise((r) => setTimeout(r, 50));
    } finally {
      clearTimeout(again);
    }
    return this.gateways();
  }

  /** Says "I would start a gateway" (a device that may serve, while none is heard). */
  async announceCandidacy(identity: NodeIdentity): Promise<void> {
    await this.send(await signLanMessage(identity, 'candidate'));
  }

  /** Announces a gateway of this process now and every ANNOUNCE_EVERY_MS until withdrawn. */
  async announceGateway(identity: NodeIdentity, url: string): Promise<() => Promise<void>> {
    const token = await signLanMessage(identity, 'gateway', url);
    const bye = await signLanMessage(identity, 'bye', url);
    this.announcing = { id: identity.id, token, lastAnswer: 0 };
    void this.send(token);
    const timer = setInterval(() => void this.send(token), ANNOUNCE_EVERY_MS);
    this.timers.push(timer);
    return async () => {
      clearInterval(timer);
      if (this.announcing?.token === token) this.announcing = undefined;
      this.forget(identity.id);
      await this.send(bye);
    };
  }

  on<K extends keyof Events>(event: K, listener: Events[K]): () => void {
    this.listeners[event].add(listener);
    return () => this.listeners[event].delete(listener);
  }

  /** Closes this discovery's sockets and timers (only those). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const t of this.timers) clearInterval(t);
    for (const { socket } of this.sockets) {
      try {
        socket.close();
      } catch {
        // already closed
      }
    }
  }
}
