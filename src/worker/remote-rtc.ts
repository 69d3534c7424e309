/**
 * The node worker's RtcPlatform (DESIGN §6): peer connections that live in the RTC host
 * tab, seen from here. The core drives them as if they were local; each method is a call
 * to the host, and the host's events update the state the core reads synchronously.
 * When the host goes away, every connection it held is closed here at once, so the
 * gateway session and the links notice and recover as they would from a network failure.
 */
import { type Remote, releaseProxy, transfer } from 'comlink';
import { Listeners } from '../browser/listeners.ts';
import { type ChannelSnapshot, PortDataChannel } from '../browser/port-channel.ts';
import type {
  PeerConfig,
  PeerStep,
  PeerUpdate,
  RtcHostApi,
  StatRecord,
  StepOutcome,
} from '../browser/rtc-host-api.ts';
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

interface PendingStep {
  step: PeerStep;
  transfer: Transferable[];
  resolve: (outcome: Extract<StepOutcome, { ok: true }>) => void;
  reject: (err: Error) => void;
}

class RemotePeerConnection implements PeerConnectionLike {
  localDescription: SessionDescription | null = null;
  remoteDescription: SessionDescription | null = null;
  connectionState = 'new';
  iceGatheringState = 'new';
  private readonly listeners = new Listeners();
  private readonly channels = new Set<PortDataChannel>();
  private readonly events: MessagePort;
  /** Steps issued in this task: they go to the host as one message (rtc-host-api.ts). */
  private queued: PendingStep[] = [];
  /** Steps the host has not answered: they fail at once if the connection goes. */
  private readonly inFlight = new Set<PendingStep>();
  /**
   * An offer the host made ahead (issue #18): a connection made with no description to
   * follow in the same task is a spare, and a dial that takes it sends this offer at once,
   * while the host applies it. Dropped as soon as any other step follows.
   */
  private offer:
    | { state: 'none' | 'asked' | 'stale' }
    | { state: 'ready'; sdp: SessionDescription } = { state: 'none' };

  constructor(
    private readonly host: Remote<RtcHostApi>,
    private readonly pcId: string,
    config: PeerConfig,
    private readonly gone: (pc: RemotePeerConnection) => void,
  ) {
    const events = new MessageChannel();
    this.events = events.port1;
    this.events.onmessage = (ev: MessageEvent<PeerUpdate>) => this.update(ev.data);
    this.enqueue({ step: 'create', config, events: events.port2 }, [events.port2]).catch(
      () => undefined, // seen as a closed connection, or as the failure of the next step
    );
  }

  createDataChannel(label: string, init: DataChannelOptions = {}): DataChannelLike {
    const data = new MessageChannel();
    const status = new MessageChannel();
    this.enqueue({ step: 'channel', label, init, data: data.port1, status: status.port1 }, [
      data.port1,
      status.port1,
    ]).catch(() => undefined); // a lost connection closes the channel
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
    const made = this.offer;
    if (!description && made.state === 'ready') {
      // Applied in the host after this returns; steps run there in order, so whatever the
      // caller does next comes after it. Should it fail, the connection closes, and the
      // dial with it (its control channel closes before it opens).
      this.localDescription = made.sdp;
      this.enqueue({ step: 'local', description: made.sdp }).catch(() => this.lost());
      return;
    }
    await this.enqueue(description ? { step: 'local', description } : { step: 'local' });
  }

  async setRemoteDescription(description: SessionDescription): Promise<void> {
    await this.enqueue({ step: 'remote', description });
  }

  async addIceCandidate(candidate: CandidateInit): Promise<void> {
    await this.enqueue({ step: 'candidate', candidate });
  }

  private enqueue(
    step: PeerStep,
    ports: Transferable[] = [],
  ): Promise<Extract<StepOutcome, { ok: true }>> {
    if (this.connectionState === 'closed')
      return Promise.reject(new Error('the peer connection is closed'));
    if (this.offer.state !== 'none') this.offer = { state: 'stale' };
    return new Promise((resolve, reject) => {
      this.queued.push({ step, transfer: ports, resolve, reject });
      if (this.queued.length === 1) queueMicrotask(() => this.flush());
    });
  }

  /** Sends the steps issued in this task as one call; each gets its own outcome. */
  private flush(): void {
    const batch = this.queued;
    this.queued = [];
    if (batch.length === 0) return;
    if (
      this.offer.state === 'none' &&
      batch.every((p) => ['create', 'channel'].includes(p.step.step))
    )
      batch.push(this.askOffer());
    for (const pending of batch) this.inFlight.add(pending);
    const steps = batch.map((p) => p.step);
    this.host
      .run(
        this.pcId,
        transfer(
          steps,
          batch.flatMap((p) => p.transfer),
        ),
      )
      .then(
        (outcomes) => {
          batch.forEach((pending, i) => {
            if (!this.inFlight.delete(pending)) return; // failed already: the connection went
            const outcome = outcomes[i];
            if (outcome?.ok) {
              this.localDescription = outcome.local;
              this.remoteDescription = outcome.remote;
              pending.resolve(outcome);
            } else pending.reject(new Error(outcome?.error ?? 'the host tab skipped this step'));
          });
        },
        (err: unknown) => {
          for (const pending of batch)
            if (this.inFlight.delete(pending))
              pending.reject(err instanceof Error ? err : new Error(String(err)));
        },
      );
  }

  /** The step that asks the host for an offer ahead, kept if nothing has happened since. */
  private askOffer(): PendingStep {
    this.offer = { state: 'asked' };
    return {
      step: { step: 'offer' },
      transfer: [],
      resolve: (outcome) => {
        if (this.offer.state === 'asked' && outcome.offer)
          this.offer = { state: 'ready', sdp: outcome.offer };
      },
      reject: () => undefined, // a dial then asks the host for its offer itself
    };
  }

  /** The host's report of one task: candidates, state, channels the peer opened. */
  private update(update: PeerUpdate): void {
    if (this.connectionState === 'closed') return;
    if (update.local) this.localDescription = update.local;
    for (const candidate of update.candidates)
      this.emit('icecandidate', { candidate: candidate ? { toJSON: () => candidate } : null });
    // A channel the peer opens is always a stream (negotiated channels fire no event).
    for (const { snapshot, data, status } of update.channels)
      this.emit('datachannel', { channel: this.adopt(data, status, snapshot, true) });
    const changed = update.connectionState !== this.connectionState;
    const gathering = update.iceGatheringState !== this.iceGatheringState;
    this.connectionState = update.connectionState;
    this.iceGatheringState = update.iceGatheringState;
    if (update.connectionState === 'closed') this.ended();
    if (changed) this.emit('connectionstatechange', {});
    if (gathering) this.emit('icegatheringstatechange', {});
  }

  /** Nothing more will come from the host: steps still waiting fail now, not never. */
  private ended(): void {
    this.gone(this);
    this.events.close();
    const waiting = [...this.queued, ...this.inFlight];
    this.queued = [];
    this.inFlight.clear();
    for (const pending of waiting) pending.reject(new Error('the peer connection is closed'));
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
    this.ended();
    void this.host.close(this.pcId);
    for (const channel of this.channels) channel.lost();
  }

  /** The host tab is gone, and this connection with it (closed there too, if it still runs). */
  lost(): void {
    if (this.connectionState === 'closed') return;
    this.connectionState = 'closed';
    this.ended();
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
