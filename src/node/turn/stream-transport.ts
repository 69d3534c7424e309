/**
 * TURN over a stream (RFC 8656 §3.1, RFC 7065 `?transport=tcp`, `turns:`): STUN messages and
 * ChannelData back to back on one TCP or TLS connection, ChannelData padded to 4 bytes
 * (§12.5). The connection is the client's 5-tuple; relaying to peers stays UDP. Frames are
 * cut here and handed to the server's dispatch, exactly as datagrams are.
 *
 * A connection holds at most one frame being read (65 KiB) and a bounded queue of writes;
 * one that sends what is neither STUN nor ChannelData is closed, and one that makes no
 * allocation within its idle time is closed too.
 */
import type { Socket } from 'node:net';
import { normalIp } from './address-policy.ts';
import type { StreamLink, TurnClient } from './client.ts';

const STUN_HEADER = 20;
const CHANNEL_HEADER = 4;
/** Writes queued on one connection beyond which relayed data is dropped, as UDP would. */
export const MAX_QUEUED_BYTES = 512 * 1024;

/** The size of the frame `bytes` starts with, or undefined until its header is all here. */
function frameLength(bytes: Buffer): number | 'garbage' | undefined {
  const first = bytes[0];
  if (first === undefined) return undefined;
  if (first <= 0x03) {
    if (bytes.length < 4) return undefined;
    const length = bytes.readUInt16BE(2);
    // Every STUN message's length is a multiple of 4 (RFC 8489 §5).
    return length % 4 === 0 ? STUN_HEADER + length : 'garbage';
  }
  if (first >= 0x40 && first <= 0x7f) {
    if (bytes.length < 4) return undefined;
    return CHANNEL_HEADER + ((bytes.readUInt16BE(2) + 3) & ~3);
  }
  return 'garbage';
}

/** Cuts a byte stream into STUN messages and (padded) ChannelData frames. */
export class FrameReader {
  private buffered: Buffer = Buffer.alloc(0);

  /** The whole frames now available, or 'garbage' once the stream is not TURN. */
  push(chunk: Buffer): Uint8Array[] | 'garbage' {
    this.buffered = this.buffered.length ? Buffer.concat([this.buffered, chunk]) : chunk;
    const frames: Uint8Array[] = [];
    for (;;) {
      const length = frameLength(this.buffered);
      if (length === 'garbage') return 'garbage';
      if (length === undefined || this.buffered.length < length) return frames;
      frames.push(this.buffered.subarray(0, length));
      this.buffered = this.buffered.subarray(length);
    }
  }
}

/** The server side of one stream connection. */
class StreamConnection implements StreamLink {
  constructor(
    readonly transport: 'tcp' | 'tls',
    private readonly socket: Socket,
  ) {}

  send(bytes: Uint8Array): boolean {
    if (this.socket.destroyed || !this.socket.writable) return false;
    if (this.socket.writableLength > MAX_QUEUED_BYTES) return false;
    const padded = bytes.length % 4 === 0 ? bytes : padTo4(bytes);
    this.socket.write(padded);
    return true;
  }

  end(): void {
    // After the answer in hand (a Refresh to 0 is answered right after its removal).
    setImmediate(() => this.socket.end());
    this.socket.setTimeout(5000, () => this.socket.destroy());
  }
}

function padTo4(bytes: Uint8Array): Uint8Array {
  const out = new Uint8Array((bytes.length + 3) & ~3);
  out.set(bytes);
  return out;
}

/** What the server gives a stream connection. */
export interface StreamHandlers {
  /** One frame from the client, as a datagram would be. */
  frame(bytes: Uint8Array, client: TurnClient): void;
  /** The stream sent what is not TURN. */
  garbage(): void;
  /** Whether the client holds an allocation (idle connections without one are closed). */
  hasAllocation(client: TurnClient): boolean;
  /** The connection closed: its allocation goes with it. */
  closed(client: TurnClient): void;
}

/**
 * Serves TURN on a connection whose first bytes may already have been read and put back
 * (`unshift`) by whoever told it apart from HTTP.
 */
export function serveStream(
  socket: Socket,
  transport: 'tcp' | 'tls',
  idleMs: number,
  handlers: StreamHandlers,
): void {
  const client: TurnClient = {
    address: normalIp(socket.remoteAddress ?? '0.0.0.0'),
    port: socket.remotePort ?? 0,
    stream: new StreamConnection(transport, socket),
  };
  const reader = new FrameReader();
  socket.setNoDelay(true);
  socket.on('error', () => {}); // a reset connection ends in 'close'
  // Idle: no bytes for a while. A client without an allocation is gone; one with an
  // allocation keeps it until it expires (its Refreshes are traffic).
  socket.setTimeout(idleMs, () => {
    if (!handlers.hasAllocation(client)) socket.destroy();
  });
  socket.on('data', (chunk: Buffer) => {
    const frames = reader.push(chunk);
    if (frames === 'garbage') {
      handlers.garbage();
      socket.destroy();
      return;
    }
    for (const frame of frames) handlers.frame(frame, client);
  });
  socket.once('close', () => handlers.closed(client));
  socket.resume();
}
