/**
 * The mesh node as the browser runs it (DESIGN §6): one MeshNode for every tab. It lives
 * in the node worker: a SharedWorker, or where SharedWorker is missing a dedicated worker of
 * the one tab holding the node lock. It decides, signs, signals and verifies, and it decides
 * incoming calls itself, by the settings and contacts in IndexedDB (only a call to ask
 * about goes to a tab); the peer connections it drives live in the RTC host tab, and
 * streams go to the tab that dialed or listens as data ports.
 */
import { type Remote, releaseProxy, transfer } from 'comlink';
import { contact } from '../browser/chat-store.ts';
import { loadKnownGateways, saveKnownGateways } from '../browser/gateway-store.ts';
import {
  loadOrCreateNodeIdentity,
  saveIdentitySummary,
  summaryOf,
} from '../browser/identity-store.ts';
import type {
  IdentitySummary,
  LinkInfo,
  NodeApi,
  NodeInspection,
  NodeStatus,
  StreamHandle,
  TabEvents,
} from '../browser/node-api.ts';
import { errorForTab, LOCKS } from '../browser/node-api.ts';
import { PortDataChannel } from '../browser/port-channel.ts';
import type { PeerConfig, RtcHostApi } from '../browser/rtc-host-api.ts';
import {
  DEFAULT_SETTINGS,
  loadSettings,
  rememberPeers,
  type Settings,
  watchSettings,
} from '../browser/settings-store.ts';
import type { NodeId, NodeIdentity, VerifiedRecord } from '../core/identity/index.ts';
import { DialError } from '../core/node/errors.ts';
import {
  type CallDecision,
  type DialProgress,
  decideByPolicy,
  type IncomingCall,
  MeshNode,
  type PeerLink,
} from '../core/node/mesh-node.ts';
import type { PathInfo, PeerConnectionLike, RtcPlatform } from '../core/node/rtc.ts';
import type { MeshStream, StreamOptions } from '../core/node/stream.ts';
import type { PushSubscriptionJson, RegisterResponse } from '../core/protocol/messages.ts';
import { RemoteRtcHost } from './remote-rtc.ts';

interface Tab {
  id: string;
  events: Remote<TabEvents>;
  lastActive: number;
  services: Set<string>;
}

/** A node record lists at most this many DTLS fingerprints (core/identity/record.ts). */
const MAX_RECORD_FINGERPRINTS = 4;
/** How often streams handed to tabs are checked for a tab that went away. */
const SWEEP_MS = 5000;

export class BrowserNode implements NodeApi, RtcPlatform {
  private identityPromise: Promise<NodeIdentity> | undefined;
  /**
   * Every certificate the tabs offered, by fingerprints: a tab that renewed the certificate
   * holds the new one while older tabs (the host among them) still use theirs, and
   * whichever tab hosts next, records must cover its certificate. The newest is the one
   * this device's identity shows.
   */
  private readonly certificates = new Map<string, { fingerprints: string[]; expires: number }>();
  private mesh: MeshNode | undefined;
  private meshMade: Promise<void> | undefined;
  private host: RemoteRtcHost | undefined;
  /** The settings as last read; `relayOnly` is read synchronously by the core. */
  private settings: Settings = { ...DEFAULT_SETTINGS };
  /** Calls the user accepted on a notification, not arrived yet: answered without asking. */
  private readonly acceptedCalls = new Set<string>();
  private wanted = true;
  private started = false;
  private status: NodeStatus = {
    status: 'offline',
    detail: 'waiting for a tab',
    gatewayId: null,
    gatewayUrl: null,
  };
  private readonly tabs = new Map<string, Tab>();
  private readonly calls = new Map<string, AbortController>();
  private readonly ringing = new Map<string, { call: IncomingCall; tabId: string }>();
  private readonly serials = new WeakMap<PeerLink, number>();
  private readonly linksBySerial = new Map<number, PeerLink>();
  private nextSerial = 1;
  private readonly listening = new Set<string>();
  /** Streams handed to tabs, by owner: closed if that tab goes away without closing them. */
  private readonly handed = new Map<MeshStream, string>();
  private sweepTimer: ReturnType<typeof setInterval> | undefined;
  /** Peers whose links had open streams when the host went away: dialed again. */
  private readonly redial = new Set<NodeId>();

  constructor() {
    // Any context may change a setting (a tab, mostly): read them again.
    watchSettings(() => void this.readSettings());
  }

  private async readSettings(): Promise<Settings> {
    this.settings = await loadSettings();
    return this.settings;
  }

  private loadIdentity(): Promise<NodeIdentity> {
    this.identityPromise ??= loadOrCreateNodeIdentity().catch((err: unknown) => {
      this.identityPromise = undefined; // let the next call try again
      throw err;
    });
    return this.identityPromise;
  }

  async identity(): Promise<IdentitySummary> {
    const newest = this.newestCertificates()[0];
    return summaryOf(
      await this.loadIdentity(),
      newest?.fingerprints ?? [],
      newest?.expires ?? null,
    );
  }

  async useCertificate(fingerprints: string[], expires: number): Promise<IdentitySummary> {
    this.certificates.set(fingerprints.join(' '), { fingerprints: [...fingerprints], expires });
    this.mesh?.useFingerprints(this.recordFingerprints());
    const summary = await this.identity();
    await saveIdentitySummary(summary);
    // Every tab (and every new worker's first tabs, at once) offers the certificate: one node.
    this.meshMade ??= Promise.all([
      this.loadIdentity(),
      loadKnownGateways(),
      this.readSettings(),
    ]).then(([identity, gateways]) => {
      this.mesh = this.makeNode(identity, gateways);
    });
    await this.meshMade;
    return summary;
  }

  // RtcPlatform: peer connections come from the current host tab.
  createPeerConnection(config: PeerConfig): PeerConnectionLike {
    if (!this.host) throw new Error('no tab is holding connections yet');
    return this.host.createPeerConnection(config);
  }

  async attach(tabId: string, events: TabEvents): Promise<void> {
    const remote = events as unknown as Remote<TabEvents>;
    this.tabs.set(tabId, {
      id: tabId,
      events: remote,
      lastActive: Date.now(),
      services: new Set(),
    });
    // What the tab must show now, in order with every later event (same port).
    tell(remote, (events) => events.status(this.status));
    for (const link of this.mesh?.allLinks() ?? [])
      if (link.isOpen) tell(remote, (events) => events.link(this.info(link)));
  }

  active(tabId: string): void {
    const tab = this.tabs.get(tabId);
    if (tab) tab.lastActive = Date.now();
  }

  hostReady(tabId: string, host: RtcHostApi): void {
    if (this.host?.tabId === tabId) return; // offered again by a tab that re-attached
    this.replaceHost(new RemoteRtcHost(tabId, host as unknown as Remote<RtcHostApi>));
  }

  resignHost(tabId: string): void {
    if (this.host?.tabId === tabId) this.replaceHost(undefined);
  }

  start(): void {
    this.wanted = true;
    this.startGateway();
  }

  stop(): void {
    this.wanted = false;
    this.started = false;
    this.mesh?.stop();
  }

  reconnectNow(): void {
    if (this.started) this.mesh?.gateway.reconnectNow();
    else this.start();
  }

  async connect(
    callId: string,
    to: string,
    onProgress?: (p: DialProgress) => void,
  ): Promise<LinkInfo> {
    const mesh = this.requireNode();
    const link = await this.withAbort(callId, (signal) =>
      mesh.connect(to, { signal, ...(onProgress ? { onProgress } : {}) }),
    );
    return this.info(link);
  }

  async dial(
    tabId: string,
    callId: string,
    to: string,
    service: string,
    options: StreamOptions,
    onProgress?: (p: DialProgress) => void,
  ): Promise<StreamHandle> {
    const mesh = this.requireNode();
    const stream = await this.withAbort(callId, (signal) =>
      mesh.dial(to, service, { ...options, signal, ...(onProgress ? { onProgress } : {}) }),
    );
    return this.handOver(stream, tabId); // last: nothing may run between hand-over and return
  }

  abort(callId: string): void {
    this.calls.get(callId)?.abort();
  }

  listen(tabId: string, service: string): void {
    this.tabs.get(tabId)?.services.add(service);
    this.listenFor(service);
  }

  unlisten(tabId: string, service: string): void {
    this.tabs.get(tabId)?.services.delete(service);
  }

  async answer(dialId: string): Promise<LinkInfo> {
    const ringing = this.ringing.get(dialId);
    if (!ringing) throw errorForTab(new DialError('cancelled', 'this call is no longer waiting'));
    this.ringing.delete(dialId);
    try {
      return this.info(await ringing.call.accept());
    } catch (err) {
      throw errorForTab(err);
    }
  }

  decline(dialId: string): void {
    this.ringing.get(dialId)?.call.decline();
    this.ringing.delete(dialId);
  }

  expectAcceptedCall(dialId: string): void {
    this.acceptedCalls.add(dialId);
  }

  async dropAcceptedCall(dialId: string): Promise<boolean> {
    return this.acceptedCalls.delete(dialId);
  }

  closeLink(serial: number): void {
    this.linksBySerial.get(serial)?.close();
  }

  async path(serial: number): Promise<PathInfo | null> {
    const link = this.linksBySerial.get(serial);
    return link?.isOpen ? link.path() : null;
  }

  async inspect(): Promise<NodeInspection> {
    return {
      status: this.status,
      hostTab: this.host?.tabId ?? null,
      gatewayStarted: this.started,
      gateways: [...(this.mesh?.gateway.knownGateways ?? [])],
      tabs: (await this.liveTabs()).map((t) => t.id),
      links: (this.mesh?.allLinks() ?? []).map((l) => ({
        peer: l.id,
        open: l.isOpen,
        streams: l.streamCount,
      })),
      handedStreams: this.handed.size,
    };
  }

  registerPush(push: PushSubscriptionJson | null): Promise<RegisterResponse> {
    return this.requireNode().registerPush(push);
  }

  private makeNode(identity: NodeIdentity, knownGateways: string[]): MeshNode {
    const mesh = new MeshNode({
      gatewayUrl: self.location.origin,
      identity,
      fingerprints: this.recordFingerprints(),
      rtc: this,
      // Each new connection is a round trip to the host tab: have one ready.
      prepareConnections: true,
      relayOnly: () => this.settings.relayOnly,
      // Where UDP is blocked the WebRTC session with the gateway does not form, even through
      // its TURN over TLS (docs/design.md §11): signal over HTTPS then; links relay over TLS.
      httpSignaling: 'fallback',
      decide: (caller, dialId) => this.decide(caller, dialId),
      // Kept so that the app, opened from its cache while its own gateway is down, finds
      // the rest of the cluster.
      knownGateways,
      onGateways: (urls) => void saveKnownGateways(urls),
    });
    mesh.on('status', (status, detail) => {
      this.status = {
        status,
        detail,
        gatewayId: mesh.gateway.gatewayId,
        gatewayUrl: mesh.gateway.gatewayUrl,
      };
      this.broadcast((events) => events.status(this.status));
      if (status === 'connected') this.dialAgain();
    });
    mesh.on('link', (link) => {
      const info = this.info(link);
      this.linksBySerial.set(info.serial, link);
      link.onClose(() => {
        this.linksBySerial.delete(info.serial);
        this.broadcast((events) => events.linkClosed(info.serial));
      });
      // After this task: the dialing tab's answer goes first, ahead of every tab's redraw.
      setTimeout(() => {
        // A peer this device had a link with is "known" (the accept policy `known`).
        rememberPeers([link.id]).catch((err: unknown) =>
          console.warn('rtcmesh: could not remember a peer', err),
        );
        if (this.linksBySerial.get(info.serial) === link)
          this.broadcast((events) => events.link(info));
      }, 0);
    });
    mesh.on('incoming', (call) => void this.announce(call));
    mesh.on('incomingCancelled', (call, reason) => {
      const ringing = this.ringing.get(call.dialId);
      this.ringing.delete(call.dialId);
      if (ringing) void this.tabs.get(ringing.tabId)?.events.incomingCancelled(call.dialId, reason);
    });
    for (const service of this.listening) mesh.listen(service, (s) => void this.deliver(s));
    if (this.host) this.startGateway(mesh);
    return mesh;
  }

  /** The certificates the tabs offered, newest first. */
  private newestCertificates(): { fingerprints: string[]; expires: number }[] {
    return [...this.certificates.values()].sort((a, b) => b.expires - a.expires);
  }

  /** The fingerprints records list: those of every certificate a tab may host with. */
  private recordFingerprints(): string[] {
    const now = Date.now();
    const live = this.newestCertificates().filter((c) => c.expires > now);
    // No more than a record holds (renewals are a year apart).
    return [...new Set(live.flatMap((c) => c.fingerprints))].slice(0, MAX_RECORD_FINGERPRINTS);
  }

  private requireNode(): MeshNode {
    if (!this.mesh) throw errorForTab(new DialError('not-connected', 'the node is still starting'));
    return this.mesh;
  }

  /** Starts the gateway session once there is a host; `again` rebuilds a running one. */
  private startGateway(mesh = this.mesh, again = false): void {
    if (!mesh || !this.host || !this.wanted) return;
    if (!this.started) {
      this.started = true;
      mesh.start();
    } else if (again) mesh.gateway.reconnectNow();
  }

  /** A new host tab (or none): the old one's connections are gone, so rebuild them. */
  private replaceHost(next: RemoteRtcHost | undefined): void {
    const old = this.host;
    this.host = next;
    if (old) {
      for (const link of this.mesh?.allLinks() ?? [])
        if (link.isOpen && link.streamCount > 0) this.redial.add(link.id);
      old.lost();
    }
    if (next) this.startGateway(this.mesh, true);
  }

  /** Re-dials the peers that had open streams when the host went away. */
  private dialAgain(): void {
    const mesh = this.mesh;
    if (!mesh) return;
    for (const id of this.redial) {
      this.redial.delete(id);
      if (!mesh.link(id)?.isOpen)
        mesh.connect(id).catch((err: unknown) => console.warn(`rtcmesh: re-dial ${id}:`, err));
    }
  }

  private info(link: PeerLink): LinkInfo {
    let serial = this.serials.get(link);
    if (serial === undefined) {
      serial = this.nextSerial++;
      this.serials.set(link, serial);
    }
    return { serial, peer: link.peer, direction: link.direction };
  }

  private async withAbort<T>(callId: string, run: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const controller = new AbortController();
    this.calls.set(callId, controller);
    try {
      return await run(controller.signal);
    } catch (err) {
      throw errorForTab(err);
    } finally {
      this.calls.delete(callId);
    }
  }

  private listenFor(service: string): void {
    if (this.listening.has(service)) return;
    this.listening.add(service);
    this.mesh?.listen(service, (s) => void this.deliver(s));
  }

  /** A peer opened a stream: it goes to the most recently active tab that listens. */
  private async deliver(stream: MeshStream): Promise<void> {
    const tabs = (await this.liveTabs()).filter((t) => t.services.has(stream.service));
    const tab = mostActive(tabs);
    if (!tab || !stream.isOpen) {
      stream.close();
      return;
    }
    void tab.events.stream(this.handOver(stream, tab.id));
  }

  private handOver(stream: MeshStream, tabId: string): StreamHandle {
    const channel = stream.channel;
    if (!(channel instanceof PortDataChannel))
      throw new Error('this stream cannot be handed to a tab');
    const link = this.mesh?.link(stream.peer.id);
    this.handed.set(stream, tabId);
    stream.onClose(() => this.handed.delete(stream));
    this.sweepTimer ??= setInterval(() => void this.sweep(), SWEEP_MS);
    const { handOver, transfer: transferables } = channel.handOver();
    return transfer(
      {
        peer: stream.peer,
        service: stream.service,
        link: link ? this.info(link).serial : 0,
        channel: handOver,
      },
      transferables,
    );
  }

  /** Closes streams whose tab went away without closing them (a port says nothing). */
  private async sweep(): Promise<void> {
    if (this.handed.size === 0) {
      clearInterval(this.sweepTimer);
      this.sweepTimer = undefined;
      return;
    }
    const live = new Set((await this.liveTabs()).map((t) => t.id));
    for (const [stream, tabId] of this.handed) if (!live.has(tabId)) stream.close();
  }

  /**
   * How to treat a caller, decided here from IndexedDB (read afresh for each call), so no
   * tab is asked, and a frozen tab cannot hold a call up: a call accepted on a notification
   * is answered; else a contact's own setting wins, then the device's policy. Only "ask"
   * reaches a tab, where a person answers.
   */
  private async decide(caller: VerifiedRecord, dialId: string): Promise<CallDecision> {
    if (this.acceptedCalls.delete(dialId)) return 'accept';
    const [settings, saved] = await Promise.all([
      this.readSettings(),
      contact(caller.id).catch(() => undefined),
    ]);
    if (saved && saved.policy !== 'default') return saved.policy;
    return decideByPolicy(
      settings.acceptPolicy,
      settings.knownPeers.includes(caller.id) || saved !== undefined,
    );
  }

  /** An incoming call is announced once, in the tab the user used last. */
  private async announce(call: IncomingCall): Promise<void> {
    const tab = mostActive(await this.liveTabs());
    if (!tab) return;
    this.ringing.set(call.dialId, { call, tabId: tab.id });
    void tab.events.incoming({ dialId: call.dialId, from: call.from });
  }

  /** Tabs still open: each holds its own lock while it lives, and a closed tab's is freed. */
  private async liveTabs(): Promise<Tab[]> {
    const held = new Set(((await navigator.locks.query()).held ?? []).map((l: LockInfo) => l.name));
    for (const [id, tab] of this.tabs) {
      if (!held.has(LOCKS.tab(id))) {
        this.tabs.delete(id);
        tab.events[releaseProxy]();
      }
    }
    return [...this.tabs.values()];
  }

  private broadcast(send: (events: Remote<TabEvents>) => unknown): void {
    for (const tab of this.tabs.values()) tell(tab.events, send);
  }
}

/** Calls a tab without waiting; a tab that is gone does not answer, which is fine. */
function tell(events: Remote<TabEvents>, send: (events: Remote<TabEvents>) => unknown): void {
  void Promise.resolve(send(events)).catch(() => {});
}

function mostActive(tabs: Tab[]): Tab | undefined {
  return tabs.reduce<Tab | undefined>(
    (a, b) => (a && a.lastActive >= b.lastActive ? a : b),
    undefined,
  );
}
