/**
 * A data channel seen through a MessagePort (DESIGN §6). A SharedWorker cannot hold an
 * RTCDataChannel, so the RTC host tab moves each channel, in the task that creates it, to
 * its dedicated channel worker, which bridges it to two ports:
 *
 *   data port    every message both ways, plus open/close/sent notices; it goes to whoever
 *                reads and writes the stream: the node worker, or a tab it hands it to
 *   status port  open/close notices only; it stays with the node worker, which so still
 *                sees a stream close after handing its data port to a tab
 *
 * `bridgeChannel` is the channel worker's end; `PortDataChannel` is the other end and
 * implements the DataChannelLike the core uses, so MeshStream runs on it unchanged.
 * Backpressure crosses the port as a running count: `sent` says how many bytes have left
 * the real channel's buffer, so `bufferedAmount` here is what was sent and has not left yet.
 */

import type { DataChannelLike } from '../core/node/rtc.ts';
import { Listeners } from './listeners.ts';

/** What a channel looks like at hand-over: its options and state. */
export interface ChannelSnapshot {
  label: string;
  ordered: boolean;
  maxRetransmits: number | null;
  maxPacketLifeTime: number | null;
  readyState: DataChannelLike['readyState'];
}

/** Notices on a port; data travels as a bare string or ArrayBuffer. */
export type ChannelNotice =
  | { c: 'open' }
  | { c: 'close' }
  /** Bytes that have left the real channel's send buffer, counted from its start. */
  | { c: 'sent'; n: number };

export type ChannelData = string | ArrayBuffer;

/** A data port and what a new owner needs to carry on where the last one stopped. */
export interface ChannelHandOver {
  port: MessagePort;
  snapshot: ChannelSnapshot;
  /** Messages that arrived before the hand-over, in order. */
  pending: ChannelData[];
}

const isData = (value: unknown): value is ChannelData =>
  typeof value === 'string' || value instanceof ArrayBuffer;

const encoder = new TextEncoder();
const sizeOf = (data: ChannelData): number =>
  typeof data === 'string' ? encoder.encode(data).length : data.byteLength;

/** The channel worker's real channel's low-water mark: it reports drain below this. */
const BRIDGE_LOW_WATER = 256 * 1024;
/** Report progress after this many bytes have left (one notice per frame would double the
 * messages crossing processes)… */
const REPORT_EVERY_BYTES = 256 * 1024;
/** …and, while bytes are still buffered, this often, so a count reaches zero. */
const TRAILING_REPORT_MS = 25;

/** The channel worker's end: pumps `channel` to and from the ports until it closes. */
export function bridgeChannel(channel: RTCDataChannel, data: MessagePort, status: MessagePort) {
  channel.binaryType = 'arraybuffer';
  channel.bufferedAmountLowThreshold = BRIDGE_LOW_WATER;
  let submitted = 0;
  let reported = 0;
  let trailing: ReturnType<typeof setTimeout> | undefined;
  const notice = (n: ChannelNotice) => {
    data.postMessage(n);
    status.postMessage(n);
  };
  const report = () => {
    const left = submitted - channel.bufferedAmount;
    if (left !== reported) {
      reported = left;
      data.postMessage({ c: 'sent', n: left } satisfies ChannelNotice);
    }
    clearTimeout(trailing);
    trailing =
      reported < submitted && channel.readyState === 'open'
        ? setTimeout(report, TRAILING_REPORT_MS)
        : undefined;
  };
  const close = () => {
    if (channel.readyState === 'open' || channel.readyState === 'connecting') channel.close();
  };
  channel.addEventListener('open', () => notice({ c: 'open' }));
  channel.addEventListener('close', () => {
    clearTimeout(trailing);
    notice({ c: 'close' });
    data.close();
    status.close();
  });
  channel.addEventListener('bufferedamountlow', report);
  channel.addEventListener('message', (ev: MessageEvent) => {
    const payload: unknown = ev.data;
    if (payload instanceof ArrayBuffer) data.postMessage(payload, [payload]);
    else if (typeof payload === 'string') data.postMessage(payload);
  });
  data.onmessage = (ev: MessageEvent) => {
    const payload: unknown = ev.data;
    if (isData(payload)) {
      if (channel.readyState !== 'open') return;
      try {
        channel.send(payload as string);
      } catch {
        close(); // the channel refused (too big, or it is going away): end the stream
        return;
      }
      submitted += sizeOf(payload);
      const left = submitted - channel.bufferedAmount;
      if (channel.bufferedAmount <= BRIDGE_LOW_WATER && left - reported >= REPORT_EVERY_BYTES)
        report();
      else trailing ??= setTimeout(report, TRAILING_REPORT_MS);
    } else if ((payload as ChannelNotice | undefined)?.c === 'close') close();
  };
  status.onmessage = (ev: MessageEvent) => {
    if ((ev.data as ChannelNotice | undefined)?.c === 'close') close();
  };
  if (channel.readyState === 'open') notice({ c: 'open' });
  else if (channel.readyState === 'closed') notice({ c: 'close' });
}

type Listener = (ev: { data: unknown }) => void;

/**
 * The far end of a bridged channel. With `hold`, incoming data is kept, not dispatched,
 * until `handOver` gives it (and the port) to a new owner: the node worker holds stream
 * channels this way, because a tab, not the worker, reads them.
 */
export class PortDataChannel implements DataChannelLike {
  readonly label: string;
  readonly ordered: boolean;
  readonly maxRetransmits: number | null;
  readonly maxPacketLifeTime: number | null;
  binaryType = 'arraybuffer';
  bufferedAmountLowThreshold = 0;
  private state: DataChannelLike['readyState'];
  private sentBytes = 0;
  private leftBytes = 0;
  private held: ChannelData[] | undefined;
  private handedOver = false;
  private readonly listeners = new Listeners();
  private readonly statusPort: MessagePort | undefined;

  constructor(
    private readonly port: MessagePort,
    snapshot: ChannelSnapshot,
    options: { status?: MessagePort; hold?: boolean; pending?: ChannelData[] } = {},
  ) {
    this.label = snapshot.label;
    this.ordered = snapshot.ordered;
    this.maxRetransmits = snapshot.maxRetransmits;
    this.maxPacketLifeTime = snapshot.maxPacketLifeTime;
    this.state = snapshot.readyState;
    if (options.hold) this.held = [];
    port.onmessage = (ev: MessageEvent) => this.receive(ev.data);
    this.statusPort = options.status;
    if (options.status) {
      const status = options.status;
      status.onmessage = (ev: MessageEvent) => {
        const notice = ev.data as ChannelNotice;
        if (notice.c === 'open' || notice.c === 'close') this.onNotice(notice);
      };
    }
    // Messages that arrived before this owner: deliver them first, in order.
    const pending = options.pending ?? [];
    if (pending.length > 0)
      queueMicrotask(() => {
        for (const d of pending) this.receive(d);
      });
  }

  get readyState(): DataChannelLike['readyState'] {
    return this.state;
  }

  get bufferedAmount(): number {
    return Math.max(0, this.sentBytes - this.leftBytes);
  }

  /**
   * Sends, moving (transferring) the bytes: a Uint8Array that spans its whole buffer is
   * detached afterwards. MeshStream makes a new frame per send, so nothing it keeps is lost,
   * and a 64 KiB copy per frame is saved.
   */
  send(data: string | Uint8Array<ArrayBuffer>): void {
    if (this.handedOver) throw new Error(`channel ${this.label} was handed to another context`);
    if (this.state !== 'open') throw new Error(`channel ${this.label} is ${this.state}`);
    if (typeof data === 'string') {
      this.sentBytes += sizeOf(data);
      this.port.postMessage(data);
      return;
    }
    const whole = data.byteOffset === 0 && data.byteLength === data.buffer.byteLength;
    const buffer = whole ? data.buffer : data.slice().buffer;
    this.sentBytes += buffer.byteLength;
    this.port.postMessage(buffer, [buffer]);
  }

  close(): void {
    if (this.state === 'closed') return;
    const notice: ChannelNotice = { c: 'close' };
    if (!this.handedOver) this.port.postMessage(notice);
    this.statusPort?.postMessage(notice);
    this.onNotice(notice);
  }

  /** The context that made this channel is gone: the channel is, too. */
  lost(): void {
    this.onNotice({ c: 'close' });
  }

  /** Gives the data port, and what arrived so far, to a new owner; this end keeps only status. */
  handOver(): { handOver: ChannelHandOver; transfer: Transferable[] } {
    if (this.handedOver) throw new Error(`channel ${this.label} was already handed over`);
    this.handedOver = true;
    this.port.onmessage = null;
    const pending = this.held ?? [];
    this.held = undefined;
    const snapshot: ChannelSnapshot = {
      label: this.label,
      ordered: this.ordered,
      maxRetransmits: this.maxRetransmits,
      maxPacketLifeTime: this.maxPacketLifeTime,
      readyState: this.state,
    };
    return {
      handOver: { port: this.port, snapshot, pending },
      transfer: [this.port, ...pending.filter((d): d is ArrayBuffer => d instanceof ArrayBuffer)],
    };
  }

  addEventListener(type: string, listener: Listener): void {
    this.listeners.add(type, listener);
  }

  removeEventListener(type: string, listener: Listener): void {
    this.listeners.remove(type, listener);
  }

  private emit(type: string, data?: unknown): void {
    this.listeners.emit(type, { data });
  }

  private receive(value: unknown): void {
    if (isData(value)) {
      if (this.held) this.held.push(value);
      else this.emit('message', value);
      return;
    }
    this.onNotice(value as ChannelNotice);
  }

  private onNotice(notice: ChannelNotice): void {
    if (notice.c === 'sent') {
      const before = this.bufferedAmount;
      this.leftBytes = Math.max(this.leftBytes, notice.n);
      if (
        before > this.bufferedAmountLowThreshold &&
        this.bufferedAmount <= this.bufferedAmountLowThreshold
      )
        this.emit('bufferedamountlow');
    } else if (notice.c === 'open') {
      if (this.state !== 'connecting') return;
      this.state = 'open';
      this.emit('open');
    } else if (notice.c === 'close') {
      if (this.state === 'closed') return;
      this.state = 'closed';
      this.leftBytes = this.sentBytes;
      this.emit('close');
      this.port.onmessage = null;
      if (this.statusPort) this.statusPort.onmessage = null;
    }
  }
}
