/**
 * The mesh node core, platform-neutral (DESIGN §2, §6): it keeps the gateway session,
 * dials and answers peers, and believes a peer only when its signed record checks out
 * against the DTLS fingerprint in the peer's session description. Platforms differ only in
 * the RtcPlatform they pass in (browser window, host tab, node-datachannel).
 */
import {
  createNodeRecord,
  encodeBase64url,
  fingerprintsInSdp,
  IdentityError,
  isMeshIp6Of,
  type NodeId,
  type NodeIdentity,
  type PeerName,
  parseNodeId,
  parsePeerName,
  RecordCache,
  type VerifiedRecord,
  verifyNodeRecord,
} from '../identity/index.ts';
import type {
  GatewayToNode,
  IceCandidate,
  PushSubscriptionJson,
  RegisterResponse,
} from '../protocol/messages.ts';
import { candidatesOf, withoutCandidates } from '../protocol/sdp.ts';
import { DialError } from './errors.ts';
import { GatewayClient, type GatewayClientOptions, type GatewayStatus } from './gateway-client.ts';
import { consoleLogger, type Logger } from './logger.ts';
import { PeerLink } from './peer-link.ts';
import {
  type CandidateInit,
  channelOpen,
  type DataChannelLike,
  gatheringComplete,
  type IceServer,
  type PeerConnectionLike,
  type RtcPlatform,
} from './rtc.ts';
import type { MeshStream, StreamOptions } from './stream.ts';
import { background } from './timers.ts';

export { PeerLink };

/** A device-wide policy for incoming calls (DESIGN §2). */
export type AcceptPolicy = 'ask' | 'known' | 'everyone';
/** What to do with one caller. */
export type CallDecision = 'ask' | 'accept' | 'decline';

/** The usual mapping of a device-wide policy, for a caller known or not. */
export function decideByPolicy(policy: AcceptPolicy, known: boolean): CallDecision {
  if (policy === 'everyone') return 'accept';
  if (policy === 'known') return known ? 'accept' : 'decline';
  return 'ask';
}

export interface MeshNodeOptions {
  gatewayUrl: string;
  identity: NodeIdentity;
  /** DTLS fingerprints of the certificate `rtc` uses; records list them. */
  fingerprints: readonly string[];
  rtc: RtcPlatform;
  name?: string;
  /** How to treat an incoming call (read at each call). */
  decide: (caller: VerifiedRecord, dialId: string) => CallDecision | Promise<CallDecision>;
  fetch?: typeof fetch;
  /** How long a dial waits for its answer, plus margin over the gateway's own bound. */
  dialTimeoutMs?: number;
  /** Close a peer connection after this long without streams. */
  idleMs?: number;
  /** Reach peers only through a relay (hides this node's addresses from them); read at each call. */
  relayOnly?: () => boolean;
  /** Cluster mode: gateways kept from an earlier run, to fail over to at once. */
  knownGateways?: readonly string[];
  /** The cluster's gateways as learned: keep them for the next run. */
  onGateways?: (urls: string[]) => void;
  /** Where gateways are now (LAN discovery), asked before every connection attempt. */
  locate?: GatewayClientOptions['locate'];
  /** A located gateway failed (unreachable, or could not prove its ID). */
  onLocatedFailed?: GatewayClientOptions['onLocatedFailed'];
  /** Where diagnostics go (default: warnings and errors on the console). */
  logger?: Logger;
  /**
   * Keep one peer connection (and its control channel) made ahead, so a dial or an answer
   * need not wait for one: worth it where making one is a round trip to another context
   * (the browser's RTC host tab). It gathers nothing until used.
   */
  prepareConnections?: boolean;
  /** Signal over HTTPS when no WebRTC session can be made, or only (GatewayClient). */
  httpSignaling?: 'fallback' | 'only';
}

export interface MeshNodeEvents {
  status: (status: GatewayStatus, detail: string) => void;
  /** A call that policy says to ask about. */
  incoming: (call: IncomingCall) => void;
  /** A call ended before it was answered (the caller hung up, or it timed out). */
  incomingCancelled: (call: IncomingCall, reason: string) => void;
  /** A peer link opened (dialed or answered). */
  link: (link: PeerLink) => void;
}

/** Opens before this long, or the connection attempt is given up. */
const LINK_OPEN_TIMEOUT_MS = 20_000;
/** Signaling over HTTP (no live channel to trickle on) sends descriptions gathered this far. */
const GATHER_TIMEOUT_MS = 8000;
const RECORD_REFRESH_S = 3600;

/** A call waiting for the user's answer. */
export interface IncomingCall {
  readonly dialId: string;
  readonly from: VerifiedRecord;
  accept(): Promise<PeerLink>;
  decline(): void;
}

/** How a dial is getting on: the callee is being rung, or woken by push first. */
export type DialProgress = 'ringing' | 'waking';

/** How a dial may be shaped and followed: the stream's options, a signal, and its progress. */
export type DialOptions = StreamOptions & {
  signal?: AbortSignal;
  /** The callee is being rung, or woken by push first. */
  onProgress?: (progress: DialProgress) => void;
};

interface OutgoingDial {
  progress: ((progress: DialProgress) => void) | undefined;
  pc: PeerConnectionLike;
  expected: PeerName;
  resolve: (answer: { sdp: string; record: VerifiedRecord }) => void;
  reject: (err: DialError) => void;
  pendingCandidates: IceCandidate[];
  answered: boolean;
  /** The answer is on its way into the connection: candidates may follow it directly. */
  applying: boolean;
}

interface IncomingDial {
  call: IncomingCall;
  offer: string;
  /** The caller gets no trickled candidates (it signals over HTTP): answer with all of them. */
  gathered: boolean;
  pc?: PeerConnectionLike;
  pendingCandidates: IceCandidate[];
  settled: boolean;
  /** The offer is on its way into the connection: candidates may follow it directly. */
  applying: boolean;
  /** The answer, being made or made, not sent yet. */
  made?: Promise<MadeAnswer>;
}

/** An answer made for an incoming call; its candidates wait until it is sent. */
interface MadeAnswer {
  pc: PeerConnectionLike;
  control: DataChannelLike;
  sdp: string;
  early: IceCandidate[];
  sent: boolean;
  /** A gathered offer's candidates: added a while after the answer is sent (holdCallerCandidatesMs). */
  held: CandidateInit[];
}

/** A peer connection with its control channel: made ahead, or for one dial. */
interface Prepared {
  pc: PeerConnectionLike;
  control: DataChannelLike;
  /** The configuration it was made with (a different one needs a new connection). */
  config: string;
}

export class MeshNode {
  readonly gateway: GatewayClient;
  private readonly outgoing = new Map<string, OutgoingDial>();
  private readonly incoming = new Map<string, IncomingDial>();
  /** Candidates for calls whose caller is still being checked (they arrive right behind). */
  private readonly checking = new Map<string, IceCandidate[]>();
  private readonly links = new Map<NodeId, PeerLink>();
  private readonly services = new Map<string, (stream: MeshStream) => void>();
  private record: { jws: string; exp: number } | undefined;
  /** Peers' records whose signatures checked out (a peer sends the same one each time). */
  private readonly records = new RecordCache(256);
  private spare: Prepared | undefined;
  /** What records list: the DTLS fingerprints of the certificates `rtc` may use. */
  private fingerprints: readonly string[];
  private readonly listeners: { [K in keyof MeshNodeEvents]: Set<MeshNodeEvents[K]> } = {
    status: new Set(),
    incoming: new Set(),
    incomingCancelled: new Set(),
    link: new Set(),
  };

  constructor(private readonly options: MeshNodeOptions) {
    this.fingerprints = options.fingerprints;
    this.gateway = new GatewayClient({
      gatewayUrl: options.gatewayUrl,
      identity: options.identity,
      record: () => this.ownRecord(),
      rtc: options.rtc,
      onMessage: (msg) => this.onGatewayMessage(msg),
      onStatus: (status, detail) => {
        if (status === 'connected') this.prepare();
        for (const l of this.listeners.status) l(status, detail);
      },
      ...(options.fetch ? { fetch: options.fetch } : {}),
      ...(options.knownGateways ? { knownGateways: options.knownGateways } : {}),
      ...(options.onGateways ? { onGateways: options.onGateways } : {}),
      ...(options.locate ? { locate: options.locate } : {}),
      ...(options.onLocatedFailed ? { onLocatedFailed: options.onLocatedFailed } : {}),
      ...(options.httpSignaling ? { httpSignaling: options.httpSignaling } : {}),
      logger: this.log,
    });
  }

  private get log(): Logger {
    return this.options.logger ?? consoleLogger;
  }

  get id(): NodeId {
    return this.options.identity.id;
  }

  on<K extends keyof MeshNodeEvents>(event: K, listener: MeshNodeEvents[K]): () => void {
    this.listeners[event].add(listener);
    return () => this.listeners[event].delete(listener);
  }

  start(): void {
    this.gateway.start();
  }

  /**
   * Ends the gateway session and every peer connection of this node: links, dials in
   * progress (they fail as cancelled) and calls being answered. Nothing else in the process
   * is touched. The node can be started again.
   */
  stop(): void {
    this.gateway.stop();
    if (this.spare) closeQuietly(this.spare.pc);
    this.spare = undefined;
    for (const [dialId, dial] of this.outgoing) {
      if (dial.answered) closeQuietly(dial.pc);
      else this.failOutgoing(dialId, new DialError('cancelled', 'the node is closing'));
    }
    for (const [dialId, dial] of this.incoming) {
      if (dial.pc) closeQuietly(dial.pc);
      else if (!dial.settled) {
        dial.settled = true;
        for (const l of this.listeners.incomingCancelled) l(dial.call, 'the node is closing');
      }
      this.incoming.delete(dialId);
    }
    for (const link of this.links.values()) link.close();
  }

  /**
   * Registers (or with null removes) this node's push subscription with the gateway, so a
   * dial can wake it while it has no session (DESIGN §2).
   */
  async registerPush(push: PushSubscriptionJson | null): Promise<RegisterResponse> {
    return this.gateway.register(push);
  }

  /** The open link to a peer, if any. */
  link(id: NodeId): PeerLink | undefined {
    return this.links.get(id);
  }

  /** Every link this node holds now. */
  allLinks(): PeerLink[] {
    return [...this.links.values()];
  }

  /** Serves `service`: `handler` gets every stream a peer opens to it. */
  listen(service: string, handler: (stream: MeshStream) => void): () => void {
    this.services.set(service, handler);
    return () => {
      if (this.services.get(service) === handler) this.services.delete(service);
    };
  }

  /** Opens a stream to `service` on a peer (by ID or mesh IPv6), reusing an open link. */
  async dial(to: string, service: string, options: DialOptions = {}): Promise<MeshStream> {
    const link = this.openLink(to) ?? (await this.connect(to, options));
    return link.openStream(service, options);
  }

  /** The open link to a peer named by ID or mesh IPv6. */
  private openLink(to: string): PeerLink | undefined {
    const id = parseNodeId(to);
    for (const link of this.links.values()) {
      if (link.isOpen && (id ? link.id === id : isMeshIp6Of(link.id, to))) return link;
    }
    return undefined;
  }

  /** Connects to a node by ID or mesh IPv6; resolves once a verified, open link exists. */
  async connect(
    to: string,
    options: { signal?: AbortSignal; onProgress?: (progress: DialProgress) => void } = {},
  ): Promise<PeerLink> {
    const target = to.trim();
    const peer = parsePeerName(target);
    if (!peer)
      throw new DialError('invalid', `"${to}" is neither a node ID nor a mesh IPv6 address`);
    const id = 'id' in peer ? peer.id : undefined;
    if (id === this.id) throw new DialError('invalid', 'that is this node');
    if (this.gateway.status !== 'connected')
      throw new DialError('not-connected', 'not connected to the gateway yet');

    const dialId = encodeBase64url(crypto.getRandomValues(new Uint8Array(16)));
    const { pc, control } = this.connection();
    const answered = new Promise<{ sdp: string; record: VerifiedRecord }>((resolve, reject) => {
      this.outgoing.set(dialId, {
        progress: options.onProgress,
        pc,
        expected: peer,
        resolve,
        reject,
        pendingCandidates: [],
        answered: false,
        applying: false,
      });
    });
    const timeout = setTimeout(
      () => this.failOutgoing(dialId, new DialError('timeout', `${target} did not answer in time`)),
      this.options.dialTimeoutMs ?? 65_000,
    );
    const onAbort = () =>
      this.failOutgoing(dialId, new DialError('cancelled', 'the dial was cancelled'));
    options.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      // Trickle: candidates follow the offer on ctl as they are found (DESIGN §2).
      let dialSent = false;
      const early: IceCandidate[] = [];
      pc.addEventListener('icecandidate', (ev) => {
        const candidate = ev.candidate ? toCandidate(ev.candidate.toJSON()) : null;
        if (!dialSent) {
          if (candidate) early.push(candidate);
          return;
        }
        this.gateway.send({ t: 'candidate', dialId, candidate });
      });
      await pc.setLocalDescription();
      if (!this.gateway.trickles) await gatheringComplete(pc, GATHER_TIMEOUT_MS);
      // Trickling, the offer goes without the candidates libdatachannel already put in it:
      // they follow as candidate messages, which a Node node sends only once the answer is
      // applied (rtc-platform.ts). A callee that reached us earlier could finish ICE and DTLS
      // inside libdatachannel's setRemoteDescription, before it records the fingerprint:
      // "unknown CA", or "Got a remote candidate without ICE transport" (DESIGN §7).
      const local = pc.localDescription?.sdp ?? '';
      const offer = this.gateway.trickles ? withoutCandidates(local) : local;
      if (
        !this.gateway.send({ t: 'dial', dialId, to: target, offer, record: await this.ownRecord() })
      ) {
        throw new DialError('not-connected', 'lost the gateway while dialing');
      }
      dialSent = true;
      for (const candidate of early) this.gateway.send({ t: 'candidate', dialId, candidate });
      const answer = await answered;
      // Made before the connection opens, so streams the callee opens at once find their listener.
      const link = new PeerLink(
        answer.record,
        'outgoing',
        pc,
        control,
        (s) => this.route(s),
        this.options.idleMs,
      );
      // The answer and every candidate so far, issued together (one step for a remote
      // connection); the connection applies them in order, and later candidates follow.
      const applied = pc.setRemoteDescription({ type: 'answer', sdp: answer.sdp });
      const dial = this.outgoing.get(dialId);
      if (dial) {
        dial.applying = true;
        dial.answered = true;
        for (const c of dial.pendingCandidates.splice(0))
          pc.addIceCandidate(c).catch(() => undefined);
      }
      // The channel opens only after the answer is in, so its opening is word enough (in a
      // browser it comes from the channel worker, ahead of the host tab's reply): the dial is
      // done then. An answer that cannot be applied fails the dial, if it comes first.
      const opened = channelOpen(control, LINK_OPEN_TIMEOUT_MS).catch((err: Error) => {
        throw (
          this.udpBlocked(`no connection to ${answer.record.id}`) ??
          new DialError(
            'timeout',
            `no connection to ${answer.record.id}: ${err.message} (the connection was ${pc.connectionState})`,
          )
        );
      });
      const appliedThenOpened = applied.then(
        () => opened,
        (err: unknown) => {
          throw new DialError(
            'gateway',
            `the answer from ${answer.record.id} could not be applied: ${err instanceof Error ? err.message : String(err)}`,
          );
        },
      );
      await Promise.race([opened, appliedThenOpened]);
      return this.addLink(link);
    } catch (err) {
      pc.close();
      if (this.outgoing.has(dialId)) this.gateway.send({ t: 'cancel', dialId });
      throw err instanceof DialError
        ? err
        : new DialError('gateway', err instanceof Error ? err.message : String(err));
    } finally {
      this.prepare();
      clearTimeout(timeout);
      options.signal?.removeEventListener('abort', onAbort);
      // Keep the entry briefly so late candidates still reach the connection.
      background(() => this.outgoing.delete(dialId), 10_000);
    }
  }

  /** A connection and its control channel: the spare made ahead if it fits, else a new one. */
  private connection(): Prepared {
    const config = this.peerConfig();
    const key = JSON.stringify(config);
    const spare = this.spare;
    this.spare = undefined;
    let made: Prepared;
    if (spare && spare.config === key && spare.pc.connectionState === 'new') made = spare;
    else {
      if (spare) closeQuietly(spare.pc);
      const pc = this.options.rtc.createPeerConnection(config);
      made = {
        pc,
        control: pc.createDataChannel('mesh', { negotiated: true, id: 0 }),
        config: key,
      };
    }
    return made;
  }

  /**
   * Makes the next spare connection, after the current task. Called once a dial or answer is
   * done with the host, so making one never competes with the steps of a call.
   */
  private prepare(): void {
    if (!this.options.prepareConnections) return;
    setTimeout(() => {
      if (this.spare || this.gateway.status !== 'connected') return;
      try {
        const config = this.peerConfig();
        const pc = this.options.rtc.createPeerConnection(config);
        const control = pc.createDataChannel('mesh', { negotiated: true, id: 0 });
        this.spare = { pc, control, config: JSON.stringify(config) };
      } catch (err) {
        this.log.debug(`no spare connection: ${err instanceof Error ? err.message : String(err)}`);
      }
    }, 0);
  }

  /**
   * A peer link that did not open while the gateway's WebRTC session cannot be made either
   * (HTTP mode) on a platform that relays over UDP only: say so, rather than "timed out".
   */
  private udpBlocked(what: string): DialError | undefined {
    const noTcpRelay = this.options.rtc.noTcpRelay;
    const problem = this.gateway.sessionProblem;
    if (this.gateway.mode !== 'http' || !noTcpRelay || !problem) return undefined;
    return new DialError(
      'udp-blocked',
      `UDP is blocked and ${noTcpRelay}: ${what}; peer links from this node cannot form (its WebRTC session with the gateway failed too: ${problem}). Use a network that lets UDP out, or the app in a browser, which relays over TURN/TLS on 443`,
    );
  }

  private peerConfig(): { iceServers: IceServer[]; iceTransportPolicy: 'all' | 'relay' } {
    return {
      iceServers: this.gateway.iceServers,
      iceTransportPolicy: this.options.relayOnly?.() ? 'relay' : 'all',
    };
  }

  private route(stream: MeshStream): boolean {
    const handler = this.services.get(stream.service);
    if (!handler) return false;
    handler(stream);
    return true;
  }

  private addLink(link: PeerLink): PeerLink {
    // One connection per peer: a new one replaces the old (DESIGN §6).
    const old = this.links.get(link.id);
    this.links.set(link.id, link);
    old?.close();
    link.onClose(() => {
      if (this.links.get(link.id) === link) this.links.delete(link.id);
    });
    for (const l of this.listeners.link) l(link);
    return link;
  }

  private failOutgoing(dialId: string, err: DialError): void {
    const dial = this.outgoing.get(dialId);
    if (!dial || dial.answered) return;
    dial.reject(err);
  }

  /**
   * The certificates `rtc` may use changed (a renewal): records list these from now on.
   * Whoever already holds the old record keeps it; it only matters for new connections.
   */
  useFingerprints(fingerprints: readonly string[]): void {
    if (fingerprints.join(' ') === this.fingerprints.join(' ')) return;
    this.fingerprints = [...fingerprints];
    this.record = undefined;
  }

  private async ownRecord(): Promise<string> {
    const now = Math.floor(Date.now() / 1000);
    if (!this.record || this.record.exp - now < RECORD_REFRESH_S) {
      const fingerprints = this.fingerprints;
      const jws = await createNodeRecord(this.options.identity, {
        fingerprints,
        ...(this.options.name ? { name: this.options.name } : {}),
      });
      const { exp } = await verifyNodeRecord(jws);
      // Kept unless the fingerprints changed meanwhile (then the next call makes a new one).
      if (fingerprints === this.fingerprints) this.record = { jws, exp };
      return jws;
    }
    return this.record.jws;
  }

  private onGatewayMessage(msg: GatewayToNode): void {
    switch (msg.t) {
      case 'answer':
        void this.onAnswer(msg.dialId, msg.answer, msg.record);
        return;
      case 'dial-failed': {
        // The gateway has ended this dial: nothing to cancel there.
        const dial = this.outgoing.get(msg.dialId);
        this.outgoing.delete(msg.dialId);
        if (dial && !dial.answered) dial.reject(new DialError(msg.code, msg.message));
        return;
      }
      case 'candidate':
        void this.onCandidate(msg.dialId, msg.candidate);
        return;
      case 'incoming':
        void this.onIncoming(msg.dialId, msg.from, msg.offer, msg.record, msg.gathered === true);
        return;
      case 'cancel': {
        const dial = this.incoming.get(msg.dialId);
        if (dial && !dial.settled) {
          dial.settled = true;
          this.incoming.delete(msg.dialId);
          if (dial.pc) closeQuietly(dial.pc);
          for (const l of this.listeners.incomingCancelled) l(dial.call, msg.reason);
        }
        return;
      }
      case 'error':
        this.log.warn(`gateway says ${msg.code}: ${msg.message}`);
        return;
      case 'ringing':
      case 'waking': {
        const dial = this.outgoing.get(msg.dialId);
        if (dial && !dial.answered) dial.progress?.(msg.t);
        return;
      }
      case 'pong':
        return;
    }
  }

  /** Checks the answer is from the node we dialed (DESIGN §1) before anything applies it. */
  private async onAnswer(dialId: string, sdp: string, record: string): Promise<void> {
    const dial = this.outgoing.get(dialId);
    if (!dial || dial.answered) return;
    try {
      const verified = await this.records.verify(record, {
        ...('id' in dial.expected ? { expectedId: dial.expected.id } : {}),
        fingerprintsInUse: fingerprintsInSdp(sdp),
      });
      if ('ip6' in dial.expected && !isMeshIp6Of(verified.id, dial.expected.ip6)) {
        throw new IdentityError(
          'wrong-peer',
          `the answer is from ${verified.id}, whose address is not ${dial.expected.ip6}`,
        );
      }
      dial.resolve({ sdp, record: verified });
    } catch (err) {
      const message = err instanceof IdentityError ? err.message : String(err);
      dial.reject(new DialError('identity', `refused the answer: ${message}`));
    }
  }

  private async onCandidate(dialId: string, candidate: IceCandidate | null): Promise<void> {
    if (!candidate?.candidate) return;
    const out = this.outgoing.get(dialId);
    if (out) {
      if (out.applying) await out.pc.addIceCandidate(candidate).catch(() => undefined);
      else if (out.pendingCandidates.length < 64) out.pendingCandidates.push(candidate);
      return;
    }
    const inc = this.incoming.get(dialId);
    if (inc) {
      if (inc.pc && inc.applying) await inc.pc.addIceCandidate(candidate).catch(() => undefined);
      else if (inc.pendingCandidates.length < 64) inc.pendingCandidates.push(candidate);
      return;
    }
    const checking = this.checking.get(dialId);
    if (checking && checking.length < 64) checking.push(candidate);
  }

  /** Checks the caller's record against its offer before anyone sees the call. */
  private async onIncoming(
    dialId: string,
    from: string,
    offer: string,
    record: string,
    gathered = false,
  ): Promise<void> {
    // The gateway hands a call again to a new session (a reconnect while it rings).
    if (this.incoming.has(dialId) || this.checking.has(dialId)) return;
    const pendingCandidates: IceCandidate[] = [];
    this.checking.set(dialId, pendingCandidates);
    let caller: VerifiedRecord;
    try {
      caller = await this.records.verify(record, { fingerprintsInUse: fingerprintsInSdp(offer) });
      if (caller.id !== from)
        throw new IdentityError(
          'wrong-peer',
          `the gateway says the caller is ${from}, its record says ${caller.id}`,
        );
    } catch (err) {
      this.gateway.send({
        t: 'reject',
        dialId,
        reason: 'identity',
        message: `caller refused: ${(err as Error).message}`.slice(0, 500),
      });
      return;
    } finally {
      this.checking.delete(dialId);
    }
    const dial: IncomingDial = {
      offer,
      gathered,
      pendingCandidates,
      settled: false,
      applying: false,
      call: {
        dialId,
        from: caller,
        accept: () => this.answer(dial),
        decline: () => {
          if (dial.settled) return;
          dial.settled = true;
          if (dial.pc) closeQuietly(dial.pc);
          this.gateway.send({ t: 'reject', dialId, reason: 'declined' });
          background(() => this.incoming.delete(dialId), 1000);
        },
      },
    };
    this.incoming.set(dialId, dial);
    // Where a connection's steps are costly (another context's), the answer is made while
    // the decision is read (from storage, in a browser): an accepted call answers at once.
    // It is sent only once accepted; a declined or cancelled call closes it. Its steps are
    // issued first, so they leave ahead of the storage reads.
    if (this.options.prepareConnections) this.makeAnswer(dial).catch(() => undefined);
    const decision = await this.options.decide(caller, dialId);
    if (decision === 'accept') {
      void dial.call
        .accept()
        .catch((err: unknown) =>
          this.log.warn(
            `answering a call from ${caller.id} failed: ${err instanceof Error ? err.message : String(err)}`,
          ),
        );
    } else if (decision === 'decline') {
      dial.call.decline();
      this.prepare();
    } else {
      for (const l of this.listeners.incoming) l(dial.call);
    }
  }

  /** Makes the answer to an incoming call (once), without sending it. */
  private makeAnswer(dial: IncomingDial): Promise<MadeAnswer> {
    dial.made ??= (async () => {
      const { dialId } = dial.call;
      const channelAfterOffer = this.options.rtc.channelAfterOffer === true;
      const prepared = channelAfterOffer ? undefined : this.connection();
      const pc = prepared?.pc ?? this.options.rtc.createPeerConnection(this.peerConfig());
      dial.pc = pc;
      const early: IceCandidate[] = [];
      let made: MadeAnswer | undefined;
      pc.addEventListener('icecandidate', (ev) => {
        const candidate = ev.candidate ? toCandidate(ev.candidate.toJSON()) : null;
        if (!made?.sent) {
          if (candidate) early.push(candidate);
          return;
        }
        this.gateway.send({ t: 'candidate', dialId, candidate });
      });
      const hold = dial.gathered && this.options.rtc.holdCallerCandidatesMs !== undefined;
      // Offer, candidates so far and answer issued together: one step for a remote connection.
      const applied = pc.setRemoteDescription({
        type: 'offer',
        sdp: hold ? withoutCandidates(dial.offer) : dial.offer,
      });
      dial.applying = true;
      for (const c of dial.pendingCandidates.splice(0))
        pc.addIceCandidate(c).catch(() => undefined);
      if (channelAfterOffer) await applied;
      const control =
        prepared?.control ?? pc.createDataChannel('mesh', { negotiated: true, id: 0 });
      made = {
        pc,
        control,
        sdp: '',
        early,
        sent: false,
        held: hold ? candidatesOf(dial.offer) : [],
      };
      await Promise.all([applied, pc.setLocalDescription()]);
      // Over HTTP signaling nothing trickles: the answer carries every candidate.
      if (!this.gateway.trickles || dial.gathered) await gatheringComplete(pc, GATHER_TIMEOUT_MS);
      made.sdp = pc.localDescription?.sdp ?? '';
      return made;
    })();
    return dial.made;
  }

  private async answer(dial: IncomingDial): Promise<PeerLink> {
    if (dial.settled) throw new DialError('cancelled', 'this call is no longer waiting');
    dial.settled = true;
    const { dialId } = dial.call;
    try {
      const made = await this.makeAnswer(dial);
      // Made before the answer goes, so streams the caller opens at once find their listener.
      const link = new PeerLink(
        dial.call.from,
        'incoming',
        made.pc,
        made.control,
        (s) => this.route(s),
        this.options.idleMs,
      );
      if (
        !this.gateway.send({
          t: 'answer',
          dialId,
          answer: made.sdp,
          record: await this.ownRecord(),
        })
      ) {
        throw new DialError('not-connected', 'lost the gateway while answering');
      }
      made.sent = true;
      for (const candidate of made.early) this.gateway.send({ t: 'candidate', dialId, candidate });
      // From the answer's sending, not the offer's arrival: making a gathered answer can take
      // seconds, and the caller is at risk until it has the answer and has applied it.
      if (made.held.length) {
        const { pc, held } = made;
        background(() => {
          for (const c of held) pc.addIceCandidate(c).catch(() => undefined);
        }, this.options.rtc.holdCallerCandidatesMs ?? 0);
      }
      await channelOpen(made.control, LINK_OPEN_TIMEOUT_MS).catch((err: Error) => {
        throw (
          this.udpBlocked(`no connection from ${dial.call.from.id}`) ??
          new DialError(
            'timeout',
            `the caller never connected (${err.message}; the connection was ${made.pc.connectionState})`,
          )
        );
      });
      return this.addLink(link);
    } catch (err) {
      if (dial.pc) closeQuietly(dial.pc);
      throw err;
    } finally {
      this.prepare();
      background(() => this.incoming.delete(dialId), 10_000);
    }
  }
}

function closeQuietly(pc: PeerConnectionLike): void {
  try {
    pc.close();
  } catch {
    // already closed
  }
}

function toCandidate(init: {
  candidate?: string;
  sdpMid?: string | null;
  sdpMLineIndex?: number | null;
}): IceCandidate {
  return {
    candidate: init.candidate ?? '',
    sdpMid: init.sdpMid ?? null,
    sdpMLineIndex: init.sdpMLineIndex ?? null,
  };
}
