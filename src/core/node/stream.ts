/**
 * Streams (DESIGN §4): one RTCDataChannel per stream, its label naming the service, seen
 * through WHATWG streams. Every message is one or more frames; a frame is a 1-byte header
 * and a payload, so messages larger than the peer's maxMessageSize are split and joined:
 *
 *   header bit 0: last frame of its message      bit 1: the message is UTF-8 text
 *
 * Backpressure: a write waits while the channel buffers more than HIGH_WATER bytes and, on
 * ordered reliable streams, while the reader's credit is used up (flow control below). On an
 * unreliable channel a lost frame loses its whole message, never corrupts the next one.
 */
import type { VerifiedRecord } from '../identity/index.ts';
import type { DataChannelLike, DataChannelOptions, PathInfo } from './rtc.ts';

export interface StreamOptions {
  /** Default true. Unreliable streams set maxRetransmits or maxPacketLifeTime (default 0 retransmits). */
  reliable?: boolean;
  maxRetransmits?: number;
  maxPacketLifeTime?: number;
  /** Default true. */
  ordered?: boolean;
  priority?: 'very-low' | 'low' | 'medium' | 'high';
}

export type StreamMessage = Uint8Array | string;

const FRAME_LAST = 1;
const FRAME_TEXT = 2;
/**
 * A one-byte frame each end of an ordered, reliable stream sends as its channel opens: "my
 * end listens". Neither end sends data before it has the other's. libdatachannel (the CLI
 * node's WebRTC) queues messages that arrive before the Node wrapper of a channel it was
 * offered exists, and hands the queue over from the JavaScript thread while its network
 * thread may deliver more: frames then reached the stream out of order (measured: 1 to 4 of
 * 15 transfers of 4 MiB between CLI nodes). Data sent only after the READY of the end that
 * was offered the channel never meets that queue. Ignored wherever it appears.
 */
const FRAME_READY = 4;
const READY_FRAME = new Uint8Array([FRAME_READY]);
/**
 * Flow control (DESIGN §4) on ordered, reliable streams: a sender may have at most
 * RECEIVE_WINDOW bytes of data frames (headers included) that the receiving app has not
 * read; the receiver grants more as the app reads, in CREDIT frames: this header, then the
 * bytes granted as a 4-byte big-endian count. So a reader that stops reading makes the
 * sender wait, and what a receiver holds stays bounded.
 *
 * An end that speaks credit says so with CREDIT_HELLO, a frame of one byte 0, before its
 * READY. Earlier versions join that frame as an empty fragment, which adds nothing to the
 * next message, and they never send it: an end sends CREDIT frames, and waits for credit,
 * only once it has the peer's hello, so either version talks to the other as before.
 */
const FRAME_CREDIT = 8;
const CREDIT_HELLO = new Uint8Array([0]);
/** Unread bytes a sender may have in flight to a reader, before any credit. */
export const RECEIVE_WINDOW = 2 * 1024 * 1024;
/** A reader grants credit in steps of at least this (a CREDIT frame per 64 KiB frame would
 * double the messages in the other direction). */
export const CREDIT_STEP = 256 * 1024;
/** Frame payloads stay well under every implementation's maxMessageSize (Chromium: 256 KiB). */
export const MAX_FRAME_PAYLOAD = 64 * 1024 - 1;
/** Writes wait while more than this is buffered in the channel… */
export const HIGH_WATER = 1024 * 1024;
/** …and resume when it drains below this. */
export const LOW_WATER = 256 * 1024;
/** The largest message a reader will join; past it the stream is aborted. */
export const MAX_MESSAGE_BYTES = 256 * 1024 * 1024;

export function channelOptions(options: StreamOptions = {}): DataChannelOptions {
  const out: DataChannelOptions = { ordered: options.ordered ?? true };
  if (
    options.reliable === false ||
    options.maxRetransmits !== undefined ||
    options.maxPacketLifeTime !== undefined
  ) {
    if (options.maxPacketLifeTime !== undefined) out.maxPacketLifeTime = options.maxPacketLifeTime;
    else out.maxRetransmits = options.maxRetransmits ?? 0;
  }
  if (options.priority) out.priority = options.priority;
  return out;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Splits one message into frames. */
export function encodeFrames(
  message: StreamMessage,
  maxPayload = MAX_FRAME_PAYLOAD,
): Uint8Array<ArrayBuffer>[] {
  const text = typeof message === 'string';
  const bytes = text ? encoder.encode(message) : message;
  const frames: Uint8Array<ArrayBuffer>[] = [];
  let offset = 0;
  do {
    const end = Math.min(bytes.length, offset + maxPayload);
    const frame = new Uint8Array(1 + end - offset);
    frame[0] = (end === bytes.length ? FRAME_LAST : 0) | (text ? FRAME_TEXT : 0);
    frame.set(bytes.subarray(offset, end), 1);
    frames.push(frame);
    offset = end;
  } while (offset < bytes.length);
  return frames;
}

/** Joins frames back into messages; drops a partial message when a frame was lost. */
export class FrameJoiner {
  private parts: Uint8Array[] = [];
  private size = 0;

  constructor(private readonly maxMessage = MAX_MESSAGE_BYTES) {}

  /** Returns a whole message when `frame` completes one. */
  push(frame: Uint8Array): StreamMessage | undefined {
    if (frame.length === 0) throw new Error('empty frame');
    const header = frame[0] ?? 0;
    if (header & ~(FRAME_LAST | FRAME_TEXT)) throw new Error(`bad frame header ${header}`);
    const payload = frame.subarray(1);
    this.size += payload.length;
    if (this.size > this.maxMessage)
      throw new Error(`message larger than ${this.maxMessage} bytes`);
    if (!(header & FRAME_LAST)) {
      this.parts.push(payload);
      return undefined;
    }
    let whole: Uint8Array;
    if (this.parts.length === 0) whole = payload;
    else {
      whole = new Uint8Array(this.size);
      let o = 0;
      for (const p of [...this.parts, payload]) {
        whole.set(p, o);
        o += p.length;
      }
    }
    this.parts = [];
    this.size = 0;
    return header & FRAME_TEXT ? decoder.decode(whole) : whole;
  }

  /** Unordered or lossy channels: a frame of a new message arrived mid-message. */
  reset(): void {
    this.parts = [];
    this.size = 0;
  }
}

/** A whole message waiting for the app to read it, with its size on the wire. */
interface Received {
  message: StreamMessage;
  /** Its data frames' bytes, headers included. */
  wireBytes: number;
  /** Of those, the bytes not yet released for credit. */
  unreleased: number;
}

/** A stream between this node and a peer, on one data channel. */
export class MeshStream {
  readonly readable: ReadableStream<StreamMessage>;
  readonly writable: WritableStream<StreamMessage>;
  /** Largest message this stream carries: one frame on unreliable or unordered streams. */
  readonly maxMessage: number;
  private readonly closeListeners = new Set<() => void>();
  private closed = false;
  /** Resolves when the other end has said it listens (or at once where there is no handshake). */
  private readonly peerReady: Promise<void>;
  /** The peer said it speaks credit (flow control): it grants, and it expects grants. */
  private peerCredit = false;
  /** Bytes of data frames sent, and how many the peer allows (its window plus its grants). */
  private sentBytes = 0;
  private sendLimit = RECEIVE_WINDOW;
  private creditWaiters: (() => void)[] = [];
  /** Whole messages the app has not read yet, oldest first. */
  private readonly queue: Received[] = [];
  /** Bytes of data frames received, and of those handed to the app. */
  private receivedBytes = 0;
  private deliveredBytes = 0;
  /** Bytes the app has read (or waits for, as part of the message it waits for), and of those
   * granted back to the peer. Only what is released is granted: that is the flow control. */
  private releasedBytes = 0;
  private grantedBytes = 0;
  /** The message being joined: its bytes so far, and those not yet released. */
  private partialBytes = 0;
  private partialUnreleased = 0;
  /** Set while the app waits to read and nothing is queued: the pull to resolve. */
  private waiting: (() => void) | undefined;
  private ended = false;

  constructor(
    readonly peer: VerifiedRecord,
    readonly service: string,
    /** The channel under this stream (the browser's node worker hands it on to a tab). */
    readonly channel: DataChannelLike,
    private readonly pathOf: () => Promise<PathInfo>,
  ) {
    channel.binaryType = 'arraybuffer';
    channel.bufferedAmountLowThreshold = LOW_WATER;
    const joiner = new FrameJoiner();
    // Unordered or unreliable channels deliver frames independently, so a message there must
    // fit one frame: the writer refuses bigger ones, the reader never joins.
    const independent =
      !channel.ordered || channel.maxRetransmits !== null || channel.maxPacketLifeTime !== null;
    this.maxMessage = independent ? MAX_FRAME_PAYLOAD : MAX_MESSAGE_BYTES;
    let peerReady!: () => void;
    this.peerReady = independent
      ? Promise.resolve()
      : new Promise<void>((resolve) => {
          peerReady = resolve;
        });
    if (!independent) {
      const sayReady = () => {
        try {
          channel.send(CREDIT_HELLO.slice());
          channel.send(READY_FRAME.slice());
        } catch {
          // closed, or handed to another context whose stream says it there
        }
      };
      if (channel.readyState === 'open') sayReady();
      else channel.addEventListener('open', sayReady);
      this.onClose(() => peerReady());
    }
    let controller!: ReadableStreamDefaultController<StreamMessage>;
    // No queue of its own (high-water mark 0): messages wait in `queue`, which knows their
    // size on the wire, and go to the app only when it reads, which is when credit is due.
    this.readable = new ReadableStream<StreamMessage>(
      {
        start: (c) => {
          controller = c;
        },
        pull: () => {
          const next = this.queue.shift();
          if (next) {
            this.deliver(controller, next);
            return;
          }
          if (this.ended) {
            controller.close();
            return;
          }
          // The app waits for the message being joined: its bytes are released as they come,
          // or a message larger than the window could never complete.
          this.release(this.partialUnreleased);
          this.partialUnreleased = 0;
          return new Promise<void>((resolve) => {
            this.waiting = resolve;
          });
        },
        cancel: () => {
          this.queue.length = 0;
          this.close();
        },
      },
      { highWaterMark: 0 },
    );
    channel.addEventListener('message', (ev) => {
      try {
        const data = ev.data;
        const frame =
          data instanceof ArrayBuffer
            ? new Uint8Array(data)
            : ArrayBuffer.isView(data)
              ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
              : undefined;
        if (!frame) throw new Error('streams carry binary frames');
        if (frame.length === 1 && frame[0] === FRAME_READY) {
          if (!independent) peerReady();
          return;
        }
        if (!independent && frame.length === 1 && frame[0] === CREDIT_HELLO[0]) {
          this.peerCredit = true;
          this.grant();
          return;
        }
        if (frame[0] === FRAME_CREDIT) {
          if (frame.length !== 5) throw new Error('bad credit frame');
          const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
          this.sendLimit += view.getUint32(1);
          this.wakeSenders();
          return;
        }
        this.receivedBytes += frame.length;
        if (this.peerCredit && this.receivedBytes > RECEIVE_WINDOW + this.grantedBytes)
          throw new Error('the peer sent more than its credit');
        this.partialBytes += frame.length;
        // The app is already waiting for this message: its bytes count as read.
        if (this.waiting) this.release(frame.length);
        else this.partialUnreleased += frame.length;
        const message = joiner.push(frame);
        if (message !== undefined) {
          const received = {
            message,
            wireBytes: this.partialBytes,
            unreleased: this.partialUnreleased,
          };
          this.partialBytes = 0;
          this.partialUnreleased = 0;
          const waiting = this.waiting;
          this.waiting = undefined;
          if (waiting) {
            this.deliver(controller, received);
            waiting();
          } else this.queue.push(received);
        } else if (independent) {
          // Never join across frames that may be lost: the fragment is dropped.
          joiner.reset();
          this.receivedBytes -= this.partialBytes;
          this.partialBytes = 0;
          this.partialUnreleased = 0;
        }
      } catch (err) {
        controller.error(err);
        this.abort(err instanceof Error ? err.message : String(err));
      }
    });
    channel.addEventListener('close', () => {
      this.ended = true;
      const waiting = this.waiting;
      this.waiting = undefined;
      if (waiting) {
        try {
          controller.close();
        } catch {
          // already errored
        }
        waiting();
      }
      this.finish();
    });
    this.writable = new WritableStream<StreamMessage>({
      write: (message) => this.send(message),
      close: async () => {
        await this.flushed();
        this.close();
      },
      abort: () => this.abort(),
    });
  }

  get isOpen(): boolean {
    return !this.closed && this.channel.readyState === 'open';
  }

  /**
   * Bytes received that the app has not read yet (whole messages waiting and the one being
   * joined). With flow control this stays within RECEIVE_WINDOW (or one larger message).
   */
  get bufferedBytes(): number {
    return this.receivedBytes - this.deliveredBytes;
  }

  get options(): StreamOptions {
    const c = this.channel;
    return {
      ordered: c.ordered,
      reliable: c.maxRetransmits === null && c.maxPacketLifeTime === null,
      ...(c.maxRetransmits !== null ? { maxRetransmits: c.maxRetransmits } : {}),
      ...(c.maxPacketLifeTime !== null ? { maxPacketLifeTime: c.maxPacketLifeTime } : {}),
    };
  }

  /** Candidate types and round trip of the connection this stream runs on. */
  path(): Promise<PathInfo> {
    return this.pathOf();
  }

  /** Sends one message (a convenience over `writable`, with the same backpressure). */
  async send(message: StreamMessage): Promise<void> {
    const size = typeof message === 'string' ? message.length : message.byteLength;
    if (size > this.maxMessage) {
      throw new RangeError(
        `messages on this ${this.service} stream must be at most ${this.maxMessage} bytes`,
      );
    }
    await this.peerReady;
    for (const frame of encodeFrames(message)) {
      while (this.peerCredit && this.sentBytes + frame.length > this.sendLimit && this.isOpen)
        await new Promise<void>((resolve) => this.creditWaiters.push(resolve));
      if (this.channel.readyState !== 'open') throw new Error(`stream ${this.service} is closed`);
      if (this.channel.bufferedAmount > HIGH_WATER) await this.drained();
      this.sentBytes += frame.length;
      this.channel.send(frame);
    }
  }

  /** Resolves once everything sent so far has left the send buffer (or the stream closed). */
  flush(): Promise<void> {
    return this.flushed();
  }

  /** Closes now; what is still buffered may be lost (flush() first to keep it). */
  close(): void {
    if (this.closed) return;
    try {
      this.channel.close();
    } catch {
      // already closed
    }
    this.finish();
  }

  abort(_reason?: string): void {
    this.close();
  }

  onClose(listener: () => void): () => void {
    if (this.closed) listener();
    else this.closeListeners.add(listener);
    return () => this.closeListeners.delete(listener);
  }

  private finish(): void {
    if (this.closed) return;
    this.closed = true;
    this.wakeSenders();
    for (const l of this.closeListeners) l();
  }

  private deliver(controller: ReadableStreamDefaultController<StreamMessage>, r: Received): void {
    this.deliveredBytes += r.wireBytes;
    controller.enqueue(r.message);
    this.release(r.unreleased);
  }

  /** Counts bytes as read; grants credit when enough have been. */
  private release(bytes: number): void {
    this.releasedBytes += bytes;
    if (this.releasedBytes - this.grantedBytes >= CREDIT_STEP) this.grant();
  }

  /** Tells a peer that speaks credit about every byte released and not yet granted. */
  private grant(): void {
    if (!this.peerCredit || this.channel.readyState !== 'open') return;
    while (this.releasedBytes > this.grantedBytes) {
      const bytes = Math.min(this.releasedBytes - this.grantedBytes, 0xffff_ffff);
      const frame = new Uint8Array(5);
      frame[0] = FRAME_CREDIT;
      new DataView(frame.buffer).setUint32(1, bytes);
      try {
        this.channel.send(frame);
      } catch {
        return; // closing, or handed to another context
      }
      this.grantedBytes += bytes;
    }
  }

  private wakeSenders(): void {
    const waiters = this.creditWaiters;
    this.creditWaiters = [];
    for (const w of waiters) w();
  }

  private drained(): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        this.channel.removeEventListener('bufferedamountlow', done);
        clearInterval(poll);
        resolve();
      };
      // Some stacks skip the event when the channel closes: poll as a backstop.
      const poll = setInterval(() => {
        if (this.channel.readyState !== 'open' || this.channel.bufferedAmount <= LOW_WATER) done();
      }, 250);
      this.channel.addEventListener('bufferedamountlow', done);
    });
  }

  private async flushed(): Promise<void> {
    while (this.channel.readyState === 'open' && this.channel.bufferedAmount > 0) {
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}
