/**
 * A node's session with its gateway (DESIGN §2): a WebRTC association made with
 * POST /v1/connect, a `ctl` channel for signaling and heartbeats, and reconnection with
 * jittered backoff whenever the association is lost. One object owns the whole lifecycle.
 */
import {
  GatewayApi,
  GatewayHttpError,
  GatewayProtocolError,
  GatewayUnreachable,
} from '../api/index.ts';
import {
  fingerprintsInSdp,
  type NodeId,
  type NodeIdentity,
  verifyNodeRecord,
} from '../identity/index.ts';
import {
  DIAL_ERROR_CODES,
  type DialErrorCode,
  type GatewayToNode,
  gatewayToNodeSchema,
  type NodeToGateway,
  type PendingDialResponse,
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

/** A gateway found by a locator (LAN discovery): where it says it is, and who it says it is. */
export interface LocatedGateway {
  readonly url: string;
  /** Its node ID: the session is refused unless the gateway proves it (a record + DTLS). */
  readonly id: string;
}

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
  /**
   * Where gateways are now (LAN discovery), asked before every connection attempt, the
   * preferred first; a session is made only with a gateway whose record proves the ID the
   * locator gave. Without it, the given gateway (and its cluster) are used.
   */
  locate?: (signal: AbortSignal) => Promise<readonly LocatedGateway[]>;
  /** A located gateway failed (unreachable, or could not prove its ID). */
  onLocatedFailed?: (gateway: LocatedGateway) => void;
  logger?: Logger;
  /**
   * Signaling over HTTPS only (DESIGN §2, "HTTP only": calls by long-poll, GET /v1/dials;
   * dials over POST /v1/dial). `fallback`: when the WebRTC session cannot be made although
   * the gateway answers over HTTP (UDP blocked), while trying the session again now and then.
   * `only`: never make a session. Default: the session only.
   */
  httpSignaling?: 'fallback' | 'only';
}

/**
 * How this node signals: over its WebRTC session's `ctl` channel, or (no session could be
 * made) over plain HTTPS requests: a long-poll for incoming calls, gathered offers and answers.
 */
export type SignalingMode = 'session' | 'http';

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
/** The locator found no gateway: ask again this soon (a LAN query is cheap; one may be starting). */
const LOCATE_AGAIN_MS = 1000;
/**
 * A located gateway that failed (unreachable, or could not prove its ID) is tried last for
 * this long: anyone on a LAN can announce a gateway that never works, and must not keep the
 * honest one from being used.
 */
const FAILED_LAST_MS = 30_000;
/** In HTTP mode: how long one long-poll waits (the gateway caps it at 30 s). */
const POLL_WAIT_S = 25;
/** In HTTP mode: how often the node registers again (fresh relay credentials last an hour). */
const REGISTER_EVERY_MS = 20 * 60_000;
/** In HTTP mode: how often the WebRTC session is tried again. */
const SESSION_RETRY_MS = 60_000;
/**
 * In HTTP mode: after answering a call, ask for the caller's later candidates this long
 * apart (the gateway keeps them 30 s after the answer).
 */
const CANDIDATES_AFTER_ANSWER_MS = [500, 1000, 2000, 4000];
/** In HTTP mode: calls whose given candidates are remembered (to give each once). */
const GIVEN_CANDIDATES_MAX = 64;
const DIAL_CODES: ReadonlySet<string> = new Set(DIAL_ERROR_CODES);

export class GatewayClient {
  status: GatewayStatus = 'offline';
  /** Why the last attempt to connect (or to stay connected) failed, as the node was told. */
  lastProblem: string | undefined;
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
  /** With a locator: the ID each located gateway must prove. */
  private located = new Map<string, string>();
  /** With a locator: gateways that failed lately, and until when they are tried last. */
  private readonly failedUntil = new Map<string, number>();
  /** How the node signals now (HTTP: only while no session could be made, with httpFallback). */
  mode: SignalingMode = 'session';
  /** In HTTP mode: why the WebRTC session could not be made. */
  sessionProblem: string | undefined;
  /** Ends the HTTP mode's long-poll loop and its requests. */
  private httpMode: AbortController | undefined;
  /** Outgoing dials made over HTTP, by the node's dial id: cancelling aborts the request. */
  private readonly httpDials = new Map<string, AbortController>();
  /** While a new session waits for the gateway's first word (firstWord). */
  private heard: (() => void) | undefined;
  /** In HTTP mode: the caller's candidates given to the node, per call taken (bounded). */
  private readonly givenCandidates = new Map<string, Set<string>>();

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
    if (this.options.httpSignaling === 'only') this.enterHttpMode('HTTPS-only signaling');
    else void this.connect();
  }

  stop(): void {
    this.running = false;
    this.calls.abort(new Error('the gateway client stopped'));
    this.leaveHttpMode();
    this.teardown();
    clearTimeout(this.retryTimer);
    this.setStatus('offline', 'stopped');
  }

  /** Sends on `ctl`; false when there is no open session. */
  send(msg: NodeToGateway): boolean {
    if (this.mode === 'http') return this.status === 'connected' && this.sendOverHttp(msg);
    if (this.status !== 'connected' || this.ctl?.readyState !== 'open') return false;
    this.ctl.send(JSON.stringify(msg));
    return true;
  }

  /** Drops the session now and reconnects (as if the network had gone away). */
  reconnectNow(): void {
    if (!this.running) return;
    this.lost('reconnect requested', 0);
  }

  /** Whether candidates can follow offers and answers (a live channel), or must be gathered first. */
  get trickles(): boolean {
    return this.mode === 'session';
  }

  private async connect(): Promise<void> {
    const generation = ++this.generation;
    // In HTTP mode the node stays reachable while the session is tried again.
    if (this.mode !== 'http')
      this.setStatus(
        this.status === 'offline' || this.status === 'connecting' ? 'connecting' : 'reconnecting',
        'connecting',
      );
    /** The gateway that answered over HTTP (its record then checked): a failure after it is the WebRTC path's. */
    let answered: string | undefined;
    let relays: IceServer[] | undefined;
    try {
      if (this.options.locate) {
        const found = await this.options.locate(this.calls.signal);
        if (generation !== this.generation) return;
        const first = found[0];
        if (!first) {
          this.lost('no gateway found', LOCATE_AGAIN_MS + Math.random() * LOCATE_AGAIN_MS);
          return;
        }
        this.located = new Map(found.map((g) => [g.url, g.id]));
        const now = Date.now();
        const failed = (url: string) => (this.failedUntil.get(url) ?? 0) > now;
        const ordered = [
          ...found.filter((g) => !failed(g.url)),
          ...found.filter((g) => failed(g.url)),
        ].map((g) => g.url);
        this.api.setGateways(ordered);
        this.gatewayUrl = ordered[0] ?? first.url;
      }
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
      answered = gateway;
      // Kept even if the session does not form: HTTP mode relays with them too.
      this.iceServers = response.iceServers;
      if (gateway !== this.gatewayUrl) {
        this.log.info(`${this.gatewayUrl} cannot serve; connecting through ${gateway}`);
        this.gatewayUrl = gateway;
      }
      const expectedId = this.options.locate ? this.located.get(gateway) : undefined;
      if (this.options.locate && !expectedId) throw new Error(`${gateway} was not located`);
      await verifyNodeRecord(response.record, {
        fingerprintsInUse: fingerprintsInSdp(response.answer),
        // A located gateway must be the one its announcement named (ID, key and DTLS).
        ...(expectedId ? { expectedId: expectedId as NodeId } : {}),
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
      // The gateway may see ctl open after we do (its events and another node's dial race in
      // its event loop), and a call for us reaching it in between would find us "not
      // connected". Its answer to a ping proves it has the session: on one channel nothing
      // comes before the open. Only then are we connected.
      await this.firstWord(ctl);
      if (generation !== this.generation) return;
      this.backoff.reset();
      if (this.mode === 'http') {
        this.leaveHttpMode();
        this.log.info('the WebRTC session with the gateway is up: signaling on it again');
      }
      this.setStatus('connected', `connected to gateway ${response.gateway}`);
      // A located gateway's cluster list is not verified: the locator is the only source.
      if (!this.options.locate) void this.learnGateways(generation);
    } catch (err) {
      if (generation !== this.generation) return;
      if (this.options.locate) this.failedLately(err, answered);
      // The answer came but the association did not open: UDP may be blocked.
      if (relays) this.sessionRelays = relays;
      const reason = err instanceof Error ? err.message : String(err);
      // In HTTP mode a failed retry changes nothing: the node stays reachable by poll.
      if (this.mode === 'http' || (answered && this.options.httpSignaling === 'fallback')) {
        // A retry that did not reach the gateway says nothing new about the WebRTC path.
        this.sessionFailed(
          answered
            ? `the gateway answered over HTTP, but no WebRTC session formed: ${reason}`
            : undefined,
        );
        return;
      }
      this.lost(
        err instanceof GatewayHttpError
          ? `${err.gateway} refused the connection (${err.status} ${err.code}): ${reason}`
          : reason,
      );
    }
  }

  /** Marks the located gateways an attempt failed with, to be tried last for a while. */
  private failedLately(err: unknown, answered: string | undefined): void {
    const until = Date.now() + FAILED_LAST_MS;
    const urls =
      err instanceof GatewayUnreachable
        ? err.attempts.map((a) => a.gateway)
        : err instanceof GatewayHttpError || err instanceof GatewayProtocolError
          ? [err.gateway]
          : answered
            ? [answered]
            : [];
    for (const url of urls) {
      const id = this.located.get(url);
      if (!id) continue;
      this.failedUntil.set(url, until);
      this.options.onLocatedFailed?.({ url, id });
    }
    // Bounded by the located gateways: forget the others.
    for (const url of [...this.failedUntil.keys()])
      if (!this.located.has(url)) this.failedUntil.delete(url);
  }

  /**
   * The session cannot be made (typically UDP is blocked): signal over HTTP meanwhile, and
   * try the session again later.
   */
  private sessionFailed(problem: string | undefined): void {
    this.generation++;
    this.teardown();
    if (!this.running) return;
    if (problem) this.sessionProblem = problem;
    if (this.mode !== 'http')
      this.enterHttpMode(
        `${problem ?? 'no WebRTC session'}. Trying the WebRTC session again every ${SESSION_RETRY_MS / 1000} s`,
      );
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => void this.connect(), SESSION_RETRY_MS);
  }

  private enterHttpMode(why: string): void {
    this.mode = 'http';
    this.log.warn(
      `HTTP mode (${why}): taking calls by HTTPS long-poll (GET /v1/dials), dialing over HTTP`,
    );
    this.httpMode = new AbortController();
    void this.pollLoop(this.httpMode.signal);
  }

  private leaveHttpMode(): void {
    this.mode = 'session';
    this.sessionProblem = undefined;
    this.httpMode?.abort(new Error('left HTTP mode'));
    this.httpMode = undefined;
    for (const dial of this.httpDials.values()) dial.abort(new Error('left HTTP mode'));
    this.httpDials.clear();
  }

  /**
   * HTTP mode: register (so callers find this node), then long-poll for calls, again and
   * again (which also keeps the NAT mapping to the gateway open).
   */
  private async pollLoop(signal: AbortSignal): Promise<void> {
    let registered = false;
    let registeredAt = 0;
    const backoff = new Backoff();
    while (!signal.aborted) {
      try {
        let waitS = POLL_WAIT_S;
        if (!registered || Date.now() - registeredAt > REGISTER_EVERY_MS) {
          // Also renews the registration and the relay credentials that come with it.
          const registration = await this.register(null, signal);
          if (registration.iceServers) this.iceServers = registration.iceServers;
          registeredAt = Date.now();
        }
        if (!registered) {
          registered = true;
          // A first poll that returns at once: when it has, the gateway hands this node its
          // calls, and only then does the node say it is reachable.
          waitS = 0;
        }
        const { dials, replaced } = await this.api.pollDials(waitS, {
          from: this.gatewayUrl,
          signal,
        });
        if (waitS === 0)
          this.setStatus('connected', `HTTP mode: polling ${this.gatewayUrl} for calls`);
        backoff.reset();
        if (replaced) this.log.warn('another poll for this node took over (is it running twice?)');
        for (const dial of dials) {
          const { dialId, from, offer, record } = dial;
          this.options.onMessage({ t: 'incoming', dialId, from, offer, record });
          this.giveCandidates(dialId, dial.candidates);
        }
        if (replaced) await sleep(backoff.next(), signal);
      } catch (err) {
        if (signal.aborted) return;
        if (err instanceof GatewayHttpError && err.code === 'not-registered') registered = false;
        const delay = backoff.next();
        this.setStatus(
          'reconnecting',
          `HTTP mode: polling for calls failed (${(err as Error).message}); retrying in ${(delay / 1000).toFixed(1)} s`,
        );
        registered = false;
        await sleep(delay, signal);
      }
    }
  }

  /** HTTP mode: what the node would have said on ctl, as requests. */
  private sendOverHttp(msg: NodeToGateway): boolean {
    const options = { from: this.gatewayUrl, signal: this.calls.signal };
    const warn = (what: string) => (err: unknown) =>
      this.log.warn(`${what} failed: ${err instanceof Error ? err.message : String(err)}`);
    switch (msg.t) {
      case 'dial': {
        const abort = new AbortController();
        this.httpDials.set(msg.dialId, abort);
        const { dialId, to, offer, record } = msg;
        void this.api
          .dial(
            { to, offer, record },
            { ...options, signal: AbortSignal.any([abort.signal, this.calls.signal]) },
          )
          .then(
            (res) =>
              this.options.onMessage({
                t: 'answer',
                dialId,
                answer: res.answer,
                record: res.record,
              }),
            (err: unknown) => {
              if (abort.signal.aborted) return;
              const code: DialErrorCode =
                err instanceof GatewayHttpError && DIAL_CODES.has(err.code)
                  ? (err.code as DialErrorCode)
                  : 'gateway';
              const message = (err instanceof Error ? err.message : String(err)).slice(0, 512);
              this.options.onMessage({ t: 'dial-failed', dialId, code, message });
            },
          )
          .finally(() => this.httpDials.delete(dialId));
        return true;
      }
      case 'cancel':
        this.httpDials.get(msg.dialId)?.abort(new Error('cancelled'));
        return true;
      case 'answer': {
        const { dialId, answer, record } = msg;
        void (async () => {
          // Candidates the caller trickled after the poll took the call…
          await this.fetchCallerCandidates(dialId);
          await this.api.answerDial(dialId, { answer, record }, options);
          // …and after the answer: a Node caller gives out none before it has applied the
          // answer, and a callee that can only relay (UDP blocked) opens its relay to no
          // address it has not been given, so the caller's checks alone cannot reach it.
          for (const ms of CANDIDATES_AFTER_ANSWER_MS) {
            await sleep(ms, this.calls.signal);
            if (!(await this.fetchCallerCandidates(dialId))) return;
          }
        })().catch((err: unknown) => {
          if (!this.calls.signal.aborted) warn(`answering call ${dialId}`)(err);
        });
        return true;
      }
      case 'reject': {
        const { dialId, reason, message } = msg;
        void this.api
          .rejectDial(dialId, { reason, ...(message !== undefined ? { message } : {}) }, options)
          .catch(warn(`declining call ${dialId}`));
        return true;
      }
      case 'candidate':
        // Offers and answers over HTTP are gathered in full.
        return true;
      case 'ping':
        return false;
    }
  }

  /**
   * HTTP mode: the caller's candidates for a call this node takes, those not given before;
   * false once the gateway no longer has the call.
   */
  private async fetchCallerCandidates(dialId: string): Promise<boolean> {
    let pending: PendingDialResponse;
    try {
      pending = await this.api.pendingDial(dialId, {
        from: this.gatewayUrl,
        signal: this.calls.signal,
      });
    } catch {
      return false;
    }
    this.giveCandidates(dialId, pending.candidates);
    return true;
  }

  /** HTTP mode: gives the node the caller's candidates it has not had yet. */
  private giveCandidates(dialId: string, candidates: PendingDialResponse['candidates']): void {
    const given = this.givenCandidates.get(dialId) ?? new Set<string>();
    this.givenCandidates.delete(dialId);
    for (const candidate of candidates) {
      if (given.has(candidate.candidate)) continue;
      given.add(candidate.candidate);
      this.options.onMessage({ t: 'candidate', dialId, candidate });
    }
    // Re-inserted: the oldest calls' sets go first when the table is full.
    this.givenCandidates.set(dialId, given);
    if (this.givenCandidates.size > GIVEN_CANDIDATES_MAX) {
      const oldest = this.givenCandidates.keys().next().value;
      if (oldest !== undefined) this.givenCandidates.delete(oldest);
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
  async register(
    push: PushSubscriptionJson | null,
    signal: AbortSignal = this.calls.signal,
  ): Promise<RegisterResponse> {
    return this.api.register(
      { record: await this.options.record(), push },
      { from: this.gatewayUrl, signal },
    );
  }

  /** Pings on a new session's `ctl`; resolves when the gateway first says anything. */
  private firstWord(ctl: DataChannelLike): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.heard = undefined;
        reject(new Error(`the gateway did not answer on ctl in ${OPEN_TIMEOUT_MS} ms`));
      }, OPEN_TIMEOUT_MS);
      this.heard = () => {
        clearTimeout(timer);
        resolve();
      };
      ctl.send(JSON.stringify({ t: 'ping', n: ++this.pingCount } satisfies NodeToGateway));
    });
  }

  private receive(data: unknown): void {
    this.lastHeard = Date.now();
    const heard = this.heard;
    this.heard = undefined;
    heard?.();
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
    this.lastProblem = reason;
    // In HTTP mode the node stays reachable by poll while the session is tried again.
    if (this.mode === 'http') {
      this.sessionFailed(undefined);
      return;
    }
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

/** Resolves after `ms`, or at once when `signal` aborts. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener(
      'abort',
      () => {
        clearTimeout(timer);
        resolve();
      },
      { once: true },
    );
  });
}

/** The TURN entries of a gateway's ICE servers (no STUN: the gateway is reachable directly). */
function relayServers(servers: readonly IceServer[]): IceServer[] {
  return servers.flatMap((s) => {
    const urls = (Array.isArray(s.urls) ? s.urls : [s.urls]).filter((u) => /^turns?:/.test(u));
    return urls.length > 0 ? [{ ...s, urls }] : [];
  });
}
