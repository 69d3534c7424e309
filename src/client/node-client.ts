/**
 * A tab's handle on the node (DESIGN §6). Whether the node runs in the shared node worker
 * or in this tab, the window sees the same thing: status, links, calls and streams. Streams
 * arrive as data ports from the RTC host's channel worker and are read here, in the tab, so
 * their bytes never pass through the node worker.
 */
import { proxy, type Remote } from 'comlink';
import {
  type CallInfo,
  errorFromNode,
  type LinkInfo,
  LOCKS,
  type NodeApi,
  type NodeInspection,
  type NodeStatus,
  type StreamHandle,
  type TabEvents,
} from '../browser/node-api.ts';
import { PortDataChannel } from '../browser/port-channel.ts';
import { encodeBase64url, type VerifiedRecord } from '../core/identity/index.ts';
import type { GatewayStatus } from '../core/node/gateway-client.ts';
import type { DialOptions, DialProgress } from '../core/node/mesh-node.ts';
import type { PathInfo } from '../core/node/rtc.ts';
import { MeshStream, type StreamOptions } from '../core/node/stream.ts';
import type { PushSubscriptionJson, RegisterResponse } from '../core/protocol/messages.ts';
import type { NodeWorkerHost, WorkerUser } from './node-worker-host.ts';
import type { RtcHost } from './rtc-host.ts';

/** A link to a peer, as a tab sees it. */
export class LinkView {
  private closed = false;
  private readonly closeListeners = new Set<() => void>();

  constructor(
    private readonly client: NodeClient,
    readonly serial: number,
    readonly peer: VerifiedRecord,
    readonly direction: 'outgoing' | 'incoming',
  ) {}

  get id(): string {
    return this.peer.id;
  }

  get isOpen(): boolean {
    return !this.closed;
  }

  path(): Promise<PathInfo> {
    return this.client.pathOf(this.serial);
  }

  openStream(service: string, options: StreamOptions = {}): Promise<MeshStream> {
    return this.client.dial(this.id, service, options);
  }

  close(): void {
    this.client.closeLink(this.serial);
  }

  onClose(listener: () => void): () => void {
    if (this.closed) listener();
    else this.closeListeners.add(listener);
    return () => this.closeListeners.delete(listener);
  }

  /** The node says this link is gone. */
  ended(): void {
    if (this.closed) return;
    this.closed = true;
    for (const l of this.closeListeners) l();
  }
}

/** A call waiting for this tab's user. */
export interface IncomingCallView {
  readonly dialId: string;
  readonly from: VerifiedRecord;
  accept(): Promise<LinkView>;
  decline(): void;
}

export interface NodeClientEvents {
  status: (status: GatewayStatus, detail: string) => void;
  link: (link: LinkView) => void;
  incoming: (call: IncomingCallView) => void;
  incomingCancelled: (call: IncomingCallView, reason: string) => void;
}

/**
 * The node as this tab uses it. The node worker's lifecycle (start, death, a new worker)
 * is NodeWorkerHost's; this class keeps what the tab has (links, streams, services, the
 * RTC host it lends) and joins each new worker with it.
 */
export class NodeClient implements WorkerUser {
  readonly tabId = encodeBase64url(crypto.getRandomValues(new Uint8Array(12)));
  private state: NodeStatus = {
    status: 'offline',
    detail: 'starting',
    gatewayId: null,
    gatewayUrl: null,
  };
  private readonly links = new Map<number, LinkView>();
  private readonly streams = new Map<number, Set<MeshStream>>();
  private readonly services = new Map<string, (stream: MeshStream) => void>();
  private readonly ringing = new Map<string, IncomingCallView>();
  /** Calls accepted on a notification: told to every new worker until they are dropped. */
  private readonly acceptedCalls = new Set<string>();
  private readonly listeners: { [K in keyof NodeClientEvents]: Set<NodeClientEvents[K]> } = {
    status: new Set(),
    link: new Set(),
    incoming: new Set(),
    incomingCancelled: new Set(),
  };
  private host: RtcHost | undefined;
  private watchingActivity = false;
  private tabLock: Promise<void> | undefined;

  constructor(private readonly worker: NodeWorkerHost) {
    worker.serve(this);
  }

  /** What push.ts, the page and the benchmarks read about the gateway session. */
  get gateway(): {
    status: GatewayStatus;
    gatewayId: string | null;
    gatewayUrl: string | null;
    reconnectNow(): void;
  } {
    return {
      status: this.state.status,
      gatewayId: this.state.gatewayId,
      gatewayUrl: this.state.gatewayUrl,
      reconnectNow: () => this.send((api) => api.reconnectNow()),
    };
  }

  /** Joins the node: holds this tab's lock (its sign of life), then attaches. */
  async attach(): Promise<void> {
    this.tabLock ??= new Promise<void>((held) => {
      void navigator.locks.request(LOCKS.tab(this.tabId), () => {
        held();
        return new Promise<never>(() => {});
      });
    });
    await this.tabLock;
    await this.ask((api) => api.attach(this.tabId, proxy(this.events())));
    for (const service of this.services.keys()) this.send((api) => api.listen(this.tabId, service));
    for (const dialId of this.acceptedCalls) this.send((api) => api.expectAcceptedCall(dialId));
    const host = this.host;
    if (host) this.send((api) => api.hostReady(this.tabId, host.exposed()));
    if (this.watchingActivity) return;
    this.watchingActivity = true;
    const active = () => {
      if (document.visibilityState === 'visible') this.send((api) => api.active(this.tabId));
    };
    addEventListener('focus', active);
    document.addEventListener('visibilitychange', active);
  }

  /**
   * The node worker died (NodeWorkerHost noticed): the page stops saying "connected", and
   * what served the dead worker is dropped.
   */
  workerLost(): void {
    // The connections this tab hosted served the dead worker: the new one makes its own.
    // (Before the new worker is bound: from then on a host offered goes to it.)
    this.host?.reset();
    for (const link of [...this.links.values()]) this.onLinkClosed(link.serial);
    this.onStatus({
      status: 'reconnecting',
      detail: 'the node worker stopped; starting a new one',
      gatewayId: null,
      gatewayUrl: null,
    });
  }

  /** A new node worker runs: join it, with everything this tab had. */
  workerRestarted(): Promise<void> {
    return this.attach();
  }

  private ask<T>(call: (api: Remote<NodeApi>) => Promise<T>): Promise<T> {
    return this.worker.ask(call);
  }

  private send(call: (api: Remote<NodeApi>) => unknown): void {
    this.worker.send(call);
  }

  on<K extends keyof NodeClientEvents>(event: K, listener: NodeClientEvents[K]): () => void {
    this.listeners[event].add(listener);
    return () => this.listeners[event].delete(listener);
  }

  /** This tab won the RTC host election: its peer connections serve the node. */
  becomeHost(host: RtcHost): void {
    this.host = host;
    // Not awaited: a worker that just died never answers, and `rebind` offers the host again.
    this.send((api) => api.hostReady(this.tabId, host.exposed()));
  }

  resignHost(): void {
    this.host = undefined;
    this.send((api) => api.resignHost(this.tabId));
  }

  /** The user accepted this call on a notification: the node answers it when it arrives. */
  expectAcceptedCall(dialId: string): void {
    this.acceptedCalls.add(dialId);
    this.send((api) => api.expectAcceptedCall(dialId));
  }

  /** Forgets a call accepted on a notification; true if it never arrived. */
  async dropAcceptedCall(dialId: string): Promise<boolean> {
    this.acceptedCalls.delete(dialId);
    return this.ask((api) => api.dropAcceptedCall(dialId)).catch(() => false);
  }

  start(): void {
    this.send((api) => api.start());
  }

  stop(): void {
    this.send((api) => api.stop());
  }

  /** What the node is doing (for the console): its host tab, tabs, links. */
  inspect(): Promise<NodeInspection & { tab: string }> {
    return this.ask((api) => api.inspect()).then((state) => ({ ...state, tab: this.tabId }));
  }

  registerPush(push: PushSubscriptionJson | null): Promise<RegisterResponse> {
    return this.ask((api) => api.registerPush(push));
  }

  /** The open link to a peer, if any. */
  link(id: string): LinkView | undefined {
    let found: LinkView | undefined;
    for (const link of this.links.values()) if (link.id === id && link.isOpen) found = link;
    return found;
  }

  listen(service: string, handler: (stream: MeshStream) => void): () => void {
    this.services.set(service, handler);
    this.send((api) => api.listen(this.tabId, service));
    return () => {
      if (this.services.get(service) !== handler) return;
      this.services.delete(service);
      this.send((api) => api.unlisten(this.tabId, service));
    };
  }

  async connect(
    to: string,
    options: { signal?: AbortSignal; onProgress?: (progress: DialProgress) => void } = {},
  ): Promise<LinkView> {
    const info = await this.call(options.signal, (callId) =>
      this.ask((api) => api.connect(callId, to, options.onProgress && proxy(options.onProgress))),
    );
    return this.onLink(info);
  }

  /** Opens a stream to `service` on a peer (by ID or mesh IPv6), reusing an open link. */
  async dial(to: string, service: string, options: DialOptions = {}): Promise<MeshStream> {
    const { signal, onProgress, ...streamOptions } = options;
    const handle = await this.call(signal, (callId) =>
      this.ask((api) =>
        api.dial(this.tabId, callId, to, service, streamOptions, onProgress && proxy(onProgress)),
      ),
    );
    return this.adopt(handle);
  }

  /**
   * Opens a stream and hands it over unread: its data port goes to whoever reads it (the
   * service worker answering a mesh web page's requests: ./mesh-web.ts).
   */
  dialHandle(to: string, service: string, signal?: AbortSignal): Promise<StreamHandle> {
    return this.call(signal, (callId) =>
      this.ask((api) => api.dial(this.tabId, callId, to, service, {})),
    );
  }

  pathOf(serial: number): Promise<PathInfo> {
    return this.ask((api) => api.path(serial)).then((path) => {
      if (!path) throw new Error('the connection is closed');
      return path;
    });
  }

  closeLink(serial: number): void {
    this.send((api) => api.closeLink(serial));
  }

  private async call<T>(
    signal: AbortSignal | undefined,
    run: (callId: string) => Promise<T>,
  ): Promise<T> {
    const callId = encodeBase64url(crypto.getRandomValues(new Uint8Array(12)));
    const abort = () => this.send((api) => api.abort(callId));
    signal?.addEventListener('abort', abort, { once: true });
    try {
      return await run(callId);
    } catch (err) {
      throw errorFromNode(err);
    } finally {
      signal?.removeEventListener('abort', abort);
    }
  }

  private adopt(handle: StreamHandle): MeshStream {
    const { port, snapshot, pending } = handle.channel;
    const channel = new PortDataChannel(port, snapshot, { pending });
    const stream = new MeshStream(handle.peer, handle.service, channel, () =>
      this.pathOf(handle.link),
    );
    let set = this.streams.get(handle.link);
    if (!set) {
      set = new Set();
      this.streams.set(handle.link, set);
    }
    set.add(stream);
    stream.onClose(() => set.delete(stream));
    return stream;
  }

  private events(): TabEvents {
    return {
      status: (status) => this.onStatus(status),
      link: (info) => void this.onLink(info),
      linkClosed: (serial) => this.onLinkClosed(serial),
      incoming: (call) => this.onIncoming(call),
      incomingCancelled: (dialId, reason) => {
        const call = this.ringing.get(dialId);
        this.ringing.delete(dialId);
        if (call) for (const l of this.listeners.incomingCancelled) l(call, reason);
      },
      stream: (handle) => {
        const stream = this.adopt(handle);
        const handler = this.services.get(handle.service);
        if (handler) handler(stream);
        else stream.close();
      },
    };
  }

  private onStatus(status: NodeStatus): void {
    this.state = status;
    for (const l of this.listeners.status) l(status.status, status.detail);
  }

  private onLink(info: LinkInfo): LinkView {
    const existing = this.links.get(info.serial);
    if (existing) return existing;
    const view = new LinkView(this, info.serial, info.peer, info.direction);
    this.links.set(info.serial, view);
    for (const l of this.listeners.link) l(view);
    return view;
  }

  private onLinkClosed(serial: number): void {
    const view = this.links.get(serial);
    this.links.delete(serial);
    // Streams on a link die with it, even when their ports cannot say so (a host that crashed).
    for (const stream of this.streams.get(serial) ?? []) stream.close();
    this.streams.delete(serial);
    view?.ended();
  }

  private onIncoming(info: CallInfo): void {
    const call: IncomingCallView = {
      dialId: info.dialId,
      from: info.from,
      accept: async () => {
        this.ringing.delete(info.dialId);
        return this.onLink(
          await this.ask((api) => api.answer(info.dialId)).catch((e: unknown) => {
            throw errorFromNode(e);
          }),
        );
      },
      decline: () => {
        this.ringing.delete(info.dialId);
        this.send((api) => api.decline(info.dialId));
      },
    };
    this.ringing.set(info.dialId, call);
    for (const l of this.listeners.incoming) l(call);
  }
}
