/**
 * The one peer connection kept per verified peer (DESIGN §4). A negotiated `mesh` channel
 * (id 0) marks it alive; every stream is a data channel of its own, labelled by service.
 * A link with no stream for `idleMs` closes itself: browsers cap how many peer connections
 * a page may hold, so they are reused and closed, never leaked.
 */
import type { NodeId, VerifiedRecord } from '../identity/index.ts';
import {
  channelOpen,
  type DataChannelLike,
  type PathInfo,
  type PeerConnectionLike,
  pathInfo,
} from './rtc.ts';
import { channelOptions, MeshStream, type StreamOptions } from './stream.ts';
import { background } from './timers.ts';

export const DEFAULT_IDLE_MS = 120_000;
const STREAM_OPEN_TIMEOUT_MS = 20_000;
const SERVICE_NAME = /^[\w.-]{1,64}$/;
/** How long a connection that is still connecting may stay "failed" before the link gives up. */
const CONNECTING_FAILED_GRACE_MS = 5000;

export class PeerLink {
  private readonly closeListeners = new Set<() => void>();
  private readonly streams = new Set<MeshStream>();
  private closed = false;
  private idleTimer: ReturnType<typeof setTimeout> | undefined;
  private failedTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    readonly peer: VerifiedRecord,
    readonly direction: 'outgoing' | 'incoming',
    readonly pc: PeerConnectionLike,
    private readonly control: DataChannelLike,
    /** Hands an incoming stream to its service's listener; false when nobody listens. */
    private readonly accept: (stream: MeshStream) => boolean,
    private readonly idleMs = DEFAULT_IDLE_MS,
  ) {
    control.addEventListener('close', () => this.close());
    pc.addEventListener('connectionstatechange', () => {
      clearTimeout(this.failedTimer);
      if (pc.connectionState === 'closed') this.close();
      else if (pc.connectionState === 'failed') {
        // Before the link opens, Chromium reports "failed" whenever every pair so far has
        // failed (a peer's loopback candidate, say) and goes back to "connecting" as the next
        // candidate arrives: only a failure that lasts ends a link still connecting.
        if (control.readyState === 'open') this.close();
        else this.failedTimer = background(() => this.close(), CONNECTING_FAILED_GRACE_MS);
      }
    });
    pc.addEventListener('datachannel', (ev) => {
      const stream = this.adopt(ev.channel);
      const opened = () => {
        if (!this.accept(stream)) stream.close();
      };
      if (ev.channel.readyState === 'open') opened();
      else ev.channel.addEventListener('open', opened);
    });
    // Idle counts from the moment the link opens: a slow connect is not an idle link.
    if (control.readyState === 'open') this.armIdle();
    else control.addEventListener('open', () => this.armIdle());
  }

  get id(): NodeId {
    return this.peer.id;
  }

  get isOpen(): boolean {
    return !this.closed && this.control.readyState === 'open';
  }

  get streamCount(): number {
    return this.streams.size;
  }

  /** Opens a stream to the peer's listener for `service`. */
  async openStream(service: string, options: StreamOptions = {}): Promise<MeshStream> {
    if (!this.isOpen) throw new Error('the connection is closed');
    if (!SERVICE_NAME.test(service) || service === 'mesh')
      throw new Error(`"${service}" is not a service name`);
    const channel = this.pc.createDataChannel(service, channelOptions(options));
    const stream = this.adopt(channel);
    await channelOpen(channel, STREAM_OPEN_TIMEOUT_MS);
    return stream;
  }

  onClose(listener: () => void): () => void {
    if (this.closed) listener();
    else this.closeListeners.add(listener);
    return () => this.closeListeners.delete(listener);
  }

  path(): Promise<PathInfo> {
    return pathInfo(this.pc);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.idleTimer);
    clearTimeout(this.failedTimer);
    for (const stream of this.streams) stream.close();
    try {
      this.control.close();
      this.pc.close();
    } catch {
      // already closed
    }
    for (const l of this.closeListeners) l();
  }

  private adopt(channel: DataChannelLike): MeshStream {
    const stream = new MeshStream(this.peer, channel.label, channel, () => this.path());
    this.streams.add(stream);
    clearTimeout(this.idleTimer);
    stream.onClose(() => {
      this.streams.delete(stream);
      this.armIdle();
    });
    return stream;
  }

  private armIdle(): void {
    clearTimeout(this.idleTimer);
    if (this.streams.size === 0 && !this.closed)
      this.idleTimer = background(() => this.close(), this.idleMs);
  }
}
