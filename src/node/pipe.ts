/**
 * Byte pipes over a stream, for the CLI: each chunk is one message, and an empty message
 * ends that side's input (a half close), so `printf hi | rtcmesh dial PEER echo` can send
 * everything, then still read the echo before either side closes.
 */
import type { Readable, Writable } from 'node:stream';
import type { MeshStream } from '../core/node/stream.ts';

export const END_OF_INPUT = new Uint8Array(0);

/** Copies `input` into the stream, then signals end of input. */
export async function pumpIn(input: Readable, stream: MeshStream): Promise<void> {
  for await (const chunk of input as AsyncIterable<Buffer>) {
    if (!stream.isOpen) return;
    await stream.send(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
  }
  if (!stream.isOpen) return;
  await stream.send(END_OF_INPUT);
  // The caller closes the stream next: over a slow path (relays) a close right after the
  // last send dropped what was still buffered.
  await stream.flush();
}

/** Copies the stream into `output` until the peer ends its input or closes. */
export async function pumpOut(stream: MeshStream, output: Writable): Promise<void> {
  const reader = stream.readable.getReader();
  for (;;) {
    const { value, done } = await reader
      .read()
      .catch(() => ({ value: undefined, done: true as const }));
    if (done || value === undefined) return;
    const bytes = typeof value === 'string' ? Buffer.from(value) : value;
    if (bytes.length === 0) return; // the peer's end of input
    if (!output.write(bytes)) await new Promise((r) => output.once('drain', r));
  }
}
