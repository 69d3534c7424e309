/**
 * The node worker's RtcPlatform (DESIGN §6): peer connections that live in the RTC host
 * tab, seen from here. The core drives them as if they were local; each method is a call
 * to the host, and the host's events update the state the core reads synchronously.
 * When the host goes away, every connection it held is closed here at once, so the
 * gateway session and the links notice and recover as they would from a network failure.
 */
import { proxy, type Remote, releaseProxy, transfer } from 'comlink';
import { Listeners } from '../browser/listeners.ts';
import { type ChannelSnapshot, PortDataChannel } from '../browser/port-channel.ts';
import type { PeerConfig, PeerEvents, RtcHostApi, StatRecord } from '../browser/rtc-host-api.ts';
import type {
  CandidateInit,
  DataChannelLike,
  DataChannelOptions,
  PeerConnectionLike,
  RtcPlatform,
  SessionDescription,
  StatsReportLike,
} from '../core/node/rtc.ts';

type Listener = (ev: never) => void;

class RemotePeerConnection implements PeerConnectionLike {
  localDescription: SessionDescription | null = null;
  remoteDescription: SessionDescription | null = null;
  connectionState = 'new';
  iceGatheringState = 'new';
  private readonly listeners = new Listeners();
  private readonly channels = new Set<PortDataChannel>();

  constructor(
    private readonly host: Remote<RtcHostApi>,
    private readonly pcId: string,
    config: PeerConfig,
    private readonly gone: (pc: RemotePeerConnection) => void,
  ) {
    const events: PeerEvents = {
      icecandidate: (candidate) =>
        this.emit('icecandidate', {
          candidate: candidate ? { toJSON: () => candidate } : null,
        }),
      state: (connectionState, iceGatheringState) => {
        if (this.connectionState === 'closed') return;
        const changed = connectionState !== this.connectionState;
        const gathering = iceGatheringState !== this.iceGatheringState;
        this.connectionState = connectionState;
        this.iceGatheringState = iceGatheringState;
        if (connectionState === 'closed') this.gone(this);
        if (changed) this.emit('connectionstatechange', {});
        if (gathering) this.emit('icegatheringstatechange', {});
      },
      // A channel the peer opens is always a stream (negotiated channels fire no event).
      datachannel: ({ snapshot, data, status }) =>
        this.emit('datachannel', { channel: this.adopt(data, status, snapshot, true) }),
    };
    void host.createPeerConnection(pcId, config, proxy(events));
  }

  createDataChannel(label: string, init: DataChannelOptions = {}): DataChannelLike {
    const data = new MessageChannel();
    const status = new MessageChannel();
    void this.host.createDataChannel(
      this.pcId,
      label,
      init,
      transfer({ data: data.port1, status: status.port1 }, [data.port1, status.port1]),
    );
    const reliable = init.maxRetransmits === undefined && init.maxPacketLifeTime === undefined;
    // The negotiated channels (ctl, a link's mesh channel) are the worker's own; every other
    // one is a stream, held until a tab takes it.
    return this.adopt(
      data.port2,
      status.port2,
      {
        label,
        ordered: init.ordered ?? true,
        maxRetransmits: reliable ? null : (init.maxRetransmits ?? null),
        maxPacketLifeTime: reliable ? null : (init.maxPacketLifeTime ?? null),
        readyState: this.connectionState === 'closed' ? 'closed' : 'connecting',
      },
      !init.negotiated,
    );
  }

  async setLocalDescription(description?: SessionDescription): Promise<void> {
    this.localDescription = await this.host.setLocalDescription(this.pcId, description);
  }

  async setRemoteDescription(description: SessionDescription): Promise<void> {
    this.remoteDescription = await this.host.setRemoteDescription(this.pcId, description);
  }

  async addIceCandidate(candidate: CandidateInit): Promise<void> {
    await this.host.addIceCandidate(this.pcId, candidate);
  }

  async getStats(): Promise<StatsReportLike> {
    const records: StatRecord[] = await this.host.getStats(this.pcId);
    const byId = new Map(records.map((r) => [r.id, r]));
    return {
      forEach: (cb) => {
        for (const r of byId.values()) cb(r);
      },
      get: (id) => byId.get(id),
    };
  }

  close(): void {
    if (this.connectionState === 'closed') return;
    this.connectionState = 'closed';
    this.gone(this);
    void this.host.close(this.pcId);
    for (const channel of this.channels) channel.lost();
  }

  /** The host tab is gone, and this connection with it (closed there too, if it still runs). */
  lost(): void {
    if (this.connectionState === 'closed') return;
    this.connectionState = 'closed';
    void this.host.close(this.pcId);
    for (const channel of this.channels) channel.lost();
    this.emit('connectionstatechange', {});
  }

  addEventListener(type: string, listener: Listener): void {
    this.listeners.add(type, listener);
  }

  private emit(type: string, ev: unknown): void {
    this.listeners.emit(type, ev);
  }

  private adopt(data: MessagePort, status: MessagePort, snapshot: ChannelSnapshot, hold: boolean) {
    const channel = new PortDataChannel(data, snapshot, { status, hold });
    this.channels.add(channel);
    channel.addEventListener('close', () => this.channels.delete(channel));
    return channel;
  }
}

/** One host tab's connections, as seen from the node worker. */
export class RemoteRtcHost implements RtcPlatform {
  /** Connection IDs: unique even across node workers, which may share one host tab in turn. */
  private readonly idPrefix = Math.random().toString(36).slice(2);
  private nextId = 1;
  private readonly connections = new Set<RemotePeerConnection>();

  constructor(
    readonly tabId: string,
    private readonly host: Remote<RtcHostApi>,
  ) {}

  createPeerConnection(config: PeerConfig): PeerConnectionLike {
    const pc = new RemotePeerConnection(
      this.host,
      `${this.idPrefix}-${this.nextId++}`,
      config,
      (closed) => this.connections.delete(closed),
    );
    this.connections.add(pc);
    return pc;
  }

  /** The host tab closed, froze or crashed: everything it held is gone. */
  lost(): void {
    for (const pc of [...this.connections]) pc.lost();
    this.connections.clear();
    this.host[releaseProxy]();
  }
}
