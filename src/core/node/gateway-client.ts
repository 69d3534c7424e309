/**
 * A node's session with its gateway (DESIGN §2): a WebRTC association made with
 * POST /v1/connect, a `ctl` channel for signaling and heartbeats, and reconnection with
 * jittered backoff whenever the association is lost. One object owns the whole lifecycle.
 */
import { GatewayApi, GatewayHttpError } from '../api/index.ts';
import { fingerprintsInSdp, type NodeIdentity, verifyNodeRecord } from '../identity/index.ts';
import {
  type GatewayToNode,
  gatewayToNodeSchema,
  type NodeToGateway,
  type PushSubscriptionJson,
  parseMessage,
  type RegisterResponse,
} from '../protocol/messages.ts';
import { Backoff } from './backoff.ts';
import { type Logger, silentLogger } from './logger.ts';
import {
  channelOpen,
  type DataChannelLike,
  type IceServer,
  type PeerConnectionLike,
  type RtcPlatform,
} from './rtc.ts';

export type GatewayStatus = 'offline' | 'connecting' | 'connected' | 'reconnecting';

export interface GatewayClientOptions {
  gatewayUrl: string;
  identity: NodeIdentity;
  /** This node's current record (signed with its certificate's fingerprints). */
  record: () => Promise<string>;
  rtc: RtcPlatform;
  onMessage: (msg: GatewayToNode) => void;
  onStatus: (status: GatewayStatus, detail: string) => void;
  fetch?: typeof fetch;
  /**
   * Cluster mode: gateways of the cluster learned in an earlier run, to fail over to
   * before /v1/info can be asked (the given gateway may be the one that is down).
   */
  knownGateways?: readonly string[];
  /** The cluster's gateways changed (learned from /v1/info): worth keeping for next time. */
  onGateways?: (urls: string[]) => void;
  logger?: Logger;
}

const PING_EVERY_MS = 5000;
/** No word from the gateway for this long: the session is dead. */
const SILENCE_MS = 15_000;
const OPEN_TIMEOUT_MS = 10_000;
/** Through the relay over TCP/TLS: allocations and checks take more round trips. */
const RELAYED_OPEN_TIMEOUT_MS = 30_000;
/**
 * A ping unanswered this long makes the node ask the gateway over HTTP whether it still
 * lives, so a gateway that died is noticed in seconds rather than after SILENCE_MS.
 */
const PONG_WAIT_MS = 1500;
const PROBE_TIMEOUT_MS = 5000;

export class GatewayClient {
  status: GatewayStatus = 'offline';
  iceServers: IceServer[] = [];
  /**
   * The gateway's TURN servers, from the last connect answer, once an association made without
   * them did not open although the answer came (a network that blocks UDP but lets HTTPS out):
   * the next ones reach the gateway's WebRTC endpoint through its relay, over TCP or TLS.
   */
  private sessionRelays: IceServer[] = [];
  gatewayId: string | null = null;
  /**
   * The gateway in use: the one given, or in cluster mode another of its cluster (learned
   * from /v1/info) while that one is unreachable. Requests are signed for this one.
   */
  gatewayUrl: string;
  /** The HTTP API of the cluster's gateways (the given one first), signed by this node. */
  readonly api: GatewayApi;
  /** Aborts the HTTP calls in flight when the client stops. */
  private calls = new AbortController();
  private pc: PeerConnectionLike | undefined;
  private ctl: DataChannelLike | undefined;
  private generation = 0;
  private running = false;
  private readonly backoff = new Backoff();
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private pingTimer: ReturnType<typeof setInterval> | undefined;
  private lastHeard = 0;
  private pingCount = 0;

  constructor(private readonly options: GatewayClientOptions) {
    this.gatewayUrl = options.gatewayUrl;
    this.api = new GatewayApi({
      gateways: [options.gatewayUrl, ...(options.knownGateways ?? [])],
      identity: options.identity,
      ...(options.fetch ? { fetch: options.fetch } : {}),
    });
  }

  /** The gateways this client fails over between: the given one first. */
  get knownGateways(): readonly string[] {
    return this.api.gateways;
  }

  private get log(): Logger {
    return this.options.logger ?? silentLogger;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    if (this.calls.signal.aborted) this.calls = new AbortController();
    void this.connect();
  }

  stop(): void {
    this.running = false;
    this.calls.abort(new Error('the gateway client stopped'));
    this.teardown();
    clearTimeout(this.retryTimer);
    this.setStatus('offline', 'stopped');
  }

  /** Sends on `ctl`; false when there is no open session. */
  send(msg: NodeToGateway): boolean {
    if (this.status !== 'connected' || this.ctl?.readyState !== 'open') return false;
    this.ctl.send(JSON.stringify(msg));
    return true;
  }

  /** Drops the session now and reconnects (as if the network had gone away). */
  reconnectNow(): void {
    if (!this.running) return;
    this.lost('reconnect requested', 0);
  }

  private async connect(): Promise<void> {
    const generation = ++this.generation;
    this.setStatus(
      this.status === 'offline' || this.status === 'connecting' ? 'connecting' : 'reconnecting',
      'connecting',
    );
    let relays: IceServer[] | undefined;
    try {
      const pc = this.options.rtc.createPeerConnection({ iceServers: this.sessionRelays });
      this.pc = pc;
      const ctl = pc.createDataChannel('ctl', { negotiated: true, id: 0 });
      this.ctl = ctl;
      // The gateway ignores our candidates (it learns our address from our checks), so the
      // offer goes out at once instead of waiting for gathering.
      await pc.setLocalDescription();
      const offer = pc.localDescription?.sdp ?? '';
      // The gateway in use first; the others of the cluster when it cannot serve.
      const { data: response, gateway } = await this.api.send('connect', {
        body: { offer, record: await this.options.record() },
        from: this.gatewayUrl,
        signal: this.calls.signal,
      });
      if (generation !== this.generation) return pc.close();
      if (gateway !== this.gatewayUrl) {
        this.log.info(`${this.gatewayUrl} cannot serve; connecting through ${gateway}`);
        this.gatewayUrl = gateway;
      }
      await verifyNodeRecord(response.record, {
        fingerprintsInUse: fingerprintsInSdp(response.answer),
      });
      relays = relayServers(response.iceServers);
      await pc.setRemoteDescription({ type: 'answer', sdp: response.answer });
      await channelOpen(
        ctl,
        this.sessionRelays.length > 0 ? RELAYED_OPEN_TIMEOUT_MS : OPEN_TIMEOUT_MS,
      );
      if (generation !== this.generation) return pc.close();
      this.gatewayId = response.gateway;
      this.iceServers = response.iceServers;
      // Relayed it opened: keep relaying, with the fresh credentials; direct: no relay next time.
      this.sessionRelays = this.sessionRelays.length > 0 ? relays : [];
      ctl.addEventListener('message', (ev) => this.receive(ev.data));
      ctl.addEventListener('close', () => this.lost('the gateway closed the session'));
      pc.addEventListener('connectionstatechange', () => {
        if (pc.connectionState === 'failed' || pc.connectionState === 'closed')
          this.lost(`connection ${pc.connectionState}`);
      });
      this.lastHeard = Date.now();
      this.pingTimer = setInterval(() => this.heartbeat(), PING_EVERY_MS);
      this.backoff.reset();
      this.setStatus('connected', `connected to gateway ${response.gateway}`);
      void this.learnGateways(generation);
    } catch (err) {
      if (generation !== this.generation) return;
      // The answer came but the association did not open: UDP may be blocked.
      if (relays) this.sessionRelays = relays;
      const reason = err instanceof Error ? err.message : String(err);
      this.lost(
        err instanceof GatewayHttpError
          ? `${err.gateway} refused the connection (${err.status} ${err.code}): ${reason}`
          : reason,
      );
    }
  }

  /** Cluster mode: the cluster's gateways, from /v1/info, to fail over to. */
  private async learnGateways(generation: number): Promise<void> {
    try {
      const info = await this.api.info({
        from: this.gatewayUrl,
        failover: false,
        signal: this.calls.signal,
      });
      if (!info.gateways || generation !== this.generation) return;
      const before = this.api.gateways;
      this.api.setGateways([
        this.options.gatewayUrl,
        this.gatewayUrl,
        ...info.gateways.map((g) => g.url),
      ]);
      const known = this.api.gateways;
      // The same gateways (in another order, as after a start from the kept list): nothing
      // new to keep.
      if (known.length === before.length && known.every((u) => before.includes(u))) return;
      this.options.onGateways?.([...known]);
    } catch {
      // Keep what we knew: failover is a bonus, the session works without it.
    }
  }

  /**
   * POST /v1/register (signed): this node's record and its push subscription, so the
   * gateway can wake it when it has no session; null removes the subscription.
   */
  async register(push: PushSubscriptionJson | null): Promise<RegisterResponse> {
    return this.api.register(
      { record: await this.options.record(), push },
      { from: this.gatewayUrl, signal: this.calls.signal },
    );
  }

  private receive(data: unknown): void {
    this.lastHeard = Date.now();
    if (typeof data !== 'string') return;
    const parsed = parseMessage(gatewayToNodeSchema, data);
    if (!parsed.ok) {
      this.log.warn(`ignoring a bad message from the gateway: ${parsed.message}`);
      return;
    }
    if (parsed.value.t === 'pong') return;
    this.options.onMessage(parsed.value);
  }

  private heartbeat(): void {
    if (Date.now() - this.lastHeard > SILENCE_MS) {
      this.lost('the gateway stopped answering');
      return;
    }
    const sentAt = Date.now();
    if (!this.send({ t: 'ping', n: ++this.pingCount })) return;
    const generation = this.generation;
    setTimeout(() => {
      if (generation === this.generation && this.lastHeard < sentAt) void this.probe(generation);
    }, PONG_WAIT_MS);
  }

  /** The gateway's HTTP side does not answer either: it is gone; reconnect (or fail over). */
  private async probe(generation: number): Promise<void> {
    const alive = await this.api
      .info({
        from: this.gatewayUrl,
        failover: false,
        timeoutMs: PROBE_TIMEOUT_MS,
        signal: this.calls.signal,
      })
      .then(
        () => true,
        () => false,
      );
    if (!alive && generation === this.generation) this.lost('the gateway does not answer');
  }

  private lost(reason: string, delayMs = this.backoff.next()): void {
    this.generation++;
    this.teardown();
    if (!this.running) return;
    this.setStatus('reconnecting', `${reason}; retrying in ${(delayMs / 1000).toFixed(1)} s`);
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => void this.connect(), delayMs);
  }

  private teardown(): void {
    clearInterval(this.pingTimer);
    this.pingTimer = undefined;
    const pc = this.pc;
    this.pc = undefined;
    this.ctl = undefined;
    try {
      pc?.close();
    } catch {
      // already closed
    }
  }

  private setStatus(status: GatewayStatus, detail: string): void {
    const changed = status !== this.status;
    this.status = status;
    if (changed || status === 'reconnecting') this.options.onStatus(status, detail);
  }
}

/** The TURN entries of a gateway's ICE servers (no STUN: the gateway is reachable directly). */
function relayServers(servers: readonly IceServer[]): IceServer[] {
  return servers.flatMap((s) => {
    const urls = (Array.isArray(s.urls) ? s.urls : [s.urls]).filter((u) => /^turns?:/.test(u));
    return urls.length > 0 ? [{ ...s, urls }] : [];
  });
}
