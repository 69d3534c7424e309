/**
 * One TCP connection carried by one mesh stream (`expose`, `forward`). Binary messages are
 * the bytes; an empty one is the end of that side's input (a TCP half close: the CLI's byte
 * pipes use the same, so `rtcmesh dial` talks to an exposed port); the text message DONE says
 * "I have sent and received everything"; any other text is the far end's error (it could not
 * connect). The stream closing before both sides ended their input is a reset, and a reset TCP
 * connection closes its stream at once: both carried both ways.
 *
 * Why DONE: node-datachannel can deliver a channel's close before messages that arrived ahead
 * of it (docs/design.md §7), so a side closes only once the other said DONE, that is, once
 * nothing of the other's is still on its way.
 */
import type { Socket } from 'node:net';
import type { MeshStream, StreamMessage } from '../../core/node/stream.ts';

export const END_OF_INPUT = new Uint8Array(0);
export const DONE = 'done';
/** A far end that never says DONE (`rtcmesh dial`) is closed on after this long. */
const DONE_WAIT_MS = 30_000;

export interface BridgeOptions {
  /** A message already read from the stream (the expose side peeks at the first one). */
  first?: StreamMessage;
  /** The reader `first` came from. */
  reader?: ReadableStreamDefaultReader<StreamMessage>;
  /** The far end sent an error instead of bytes. */
  onRemoteError?: (message: string) => void;
  /** Why a connection was reset (for debug logs). */
  onReset?: (why: string) => void;
}

export type BridgeEnd = 'closed' | 'reset';

/** Pumps `socket` and `stream` into each other until both are done; says how it ended. */
export function bridge(
  socket: Socket,
  stream: MeshStream,
  options: BridgeOptions = {},
): Promise<BridgeEnd> {
  const writer = stream.writable.getWriter();
  const reader = options.reader ?? stream.readable.getReader();
  let sawFin = false;
  let sentEnd = false;
  let gotEnd = false;
  let sentDone = false;
  let gotDone = false;
  let settled = false;
  let doneWait: ReturnType<typeof setTimeout> | undefined;
  let resolveEnd!: (end: BridgeEnd) => void;
  const ended = new Promise<BridgeEnd>((resolve) => {
    resolveEnd = resolve;
  });

  const reset = (why: unknown) => {
    if (settled) return;
    settled = true;
    clearTimeout(doneWait);
    options.onReset?.(why instanceof Error ? why.message : String(why));
    if (!socket.destroyed) socket.resetAndDestroy();
    writer.abort().catch(() => {});
    stream.close();
    resolveEnd('reset');
  };
  const finish = () => {
    if (settled) return;
    settled = true;
    clearTimeout(doneWait);
    // Closing the writer waits for what is buffered to leave, then closes the stream.
    writer.close().catch(() => stream.close());
    resolveEnd('closed');
  };
  const maybeDone = () => {
    if (settled || sentDone || !sentEnd || !gotEnd || !socket.destroyed) return;
    sentDone = true;
    writer.write(DONE).then(() => {
      if (gotDone) finish();
      else doneWait = setTimeout(finish, DONE_WAIT_MS);
    }, reset);
  };

  // A far end that closes gracefully has had our end of input; what it sent before closing
  // may still wait in the readable, and the read loop below decides when it runs dry.
  stream.onClose(() => {
    if (!sentEnd) reset('the stream closed');
  });
  socket.on('error', reset);
  // A socket closed before both sides ended their input was destroyed or reset.
  socket.on('close', (hadError) =>
    hadError || !(sawFin && gotEnd) ? reset('the socket closed') : maybeDone(),
  );

  // Socket → stream, one chunk at a time: the socket pauses while the stream is full.
  socket.on('data', (chunk: Buffer) => {
    socket.pause();
    writer
      .write(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength))
      .then(() => socket.resume(), reset);
  });
  socket.on('end', () => {
    sawFin = true;
    writer.write(END_OF_INPUT).then(() => {
      sentEnd = true;
      maybeDone();
    }, reset);
  });

  // Stream → socket.
  const deliver = async (message: StreamMessage): Promise<void> => {
    if (typeof message === 'string') {
      if (message === DONE && gotEnd) {
        gotDone = true;
        if (sentDone) finish();
        return;
      }
      options.onRemoteError?.(message);
      return reset('the far end sent an error');
    }
    if (gotEnd) return reset('bytes after the end of input');
    if (message.byteLength === 0) {
      gotEnd = true;
      socket.end();
      return;
    }
    if (!socket.write(message)) {
      await new Promise<void>((resolve) => {
        const go = () => {
          socket.off('drain', go);
          socket.off('close', go);
          resolve();
        };
        socket.on('drain', go);
        socket.on('close', go);
      });
    }
  };
  void (async () => {
    try {
      if (options.first !== undefined) await deliver(options.first);
      while (!settled) {
        const { value, done } = await reader.read();
        if (done) {
          // Closed by a far end that had everything (it may not have waited for our DONE).
          if (gotEnd && sentEnd) finish();
          else reset('the stream ended without end of input');
          return;
        }
        await deliver(value);
      }
    } catch (err) {
      reset(err);
    }
  })();
  return ended;
}
