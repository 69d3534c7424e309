/**
 * File transfer over a `file` stream: an offer (name, size, type), the bytes, then the
 * SHA-256 of what was sent. The receiver hashes as it goes and trusts nothing it has not
 * checked: a transfer is complete only when every byte arrived and the hashes agree.
 * Either side cancels by closing the stream; nothing half-received is ever complete.
 */
import { sha256 } from '@noble/hashes/sha2.js';
import * as z from 'zod/mini';
import { toHex } from '../identity/bytes.ts';
import { parseMessage } from '../protocol/messages.ts';
import { MAX_FRAME_PAYLOAD, type MeshStream } from './stream.ts';

export const FILE_SERVICE = 'file';

const offerSchema = z.object({
  t: z.literal('offer'),
  name: z.string().check(z.minLength(1), z.maxLength(255)),
  size: z.int().check(z.minimum(0), z.maximum(2 ** 53 - 1)),
  type: z.string().check(z.maxLength(255)),
});
const endSchema = z.object({
  t: z.literal('end'),
  sha256: z.string().check(z.regex(/^[0-9a-f]{64}$/)),
});
export type FileOffer = z.infer<typeof offerSchema>;

export interface TransferProgress {
  bytes: number;
  total: number;
  /** Bytes per second over the last second or so. */
  rate: number;
}

export type TransferState = 'sending' | 'receiving' | 'complete' | 'cancelled' | 'failed';

export interface TransferResult {
  state: 'complete' | 'cancelled' | 'failed';
  sha256?: string;
  message?: string;
}

/** Smooths the byte rate over about a second. */
class RateMeter {
  private samples: { at: number; bytes: number }[] = [];
  add(bytes: number, at = Date.now()): number {
    this.samples.push({ at, bytes });
    while (this.samples.length > 2 && (this.samples[0]?.at ?? at) < at - 1000) this.samples.shift();
    const first = this.samples[0];
    const span = first ? (at - first.at) / 1000 : 0;
    return span > 0 && first ? (bytes - first.bytes) / span : 0;
  }
}

/** Sends `chunks` (a file's bytes) as `offer`; resolves when done or cancelled. */
export async function sendFile(
  stream: MeshStream,
  offer: Omit<FileOffer, 't'>,
  chunks: AsyncIterable<Uint8Array>,
  onProgress: (p: TransferProgress) => void,
): Promise<TransferResult> {
  const hash = sha256.create();
  const meter = new RateMeter();
  let sent = 0;
  try {
    await stream.send(JSON.stringify({ t: 'offer', ...offer }));
    for await (const chunk of chunks) {
      for (let o = 0; o < chunk.length; o += MAX_FRAME_PAYLOAD) {
        const piece = chunk.subarray(o, o + MAX_FRAME_PAYLOAD);
        await stream.send(piece);
        hash.update(piece);
        sent += piece.length;
        onProgress({ bytes: sent, total: offer.size, rate: meter.add(sent) });
      }
    }
    if (sent !== offer.size)
      throw new Error(`the file changed while sending (${sent} of ${offer.size} bytes)`);
    const digest = toHex(hash.digest());
    await stream.send(JSON.stringify({ t: 'end', sha256: digest }));
    // The receiver closes the stream once it has checked the hash.
    await new Promise<void>((resolve) => stream.onClose(resolve));
    return { state: 'complete', sha256: digest };
  } catch (err) {
    stream.close();
    if (!stream.isOpen && sent < offer.size)
      return { state: 'cancelled', message: 'the transfer was cancelled' };
    return { state: 'failed', message: err instanceof Error ? err.message : String(err) };
  }
}

export interface IncomingFile {
  offer: FileOffer;
  /** Resolves with the bytes when complete and checked; otherwise with the reason. */
  result: Promise<TransferResult & { chunks?: Uint8Array[] }>;
  cancel(): void;
}

/** Reads an offer and the file from an incoming `file` stream. */
export async function receiveFile(
  stream: MeshStream,
  onProgress: (p: TransferProgress) => void,
  maxBytes = 4 * 1024 ** 3,
): Promise<IncomingFile> {
  const reader = stream.readable.getReader();
  const first = await reader.read();
  const parsed =
    typeof first.value === 'string' ? parseMessage(offerSchema, first.value) : undefined;
  if (!parsed?.ok) {
    stream.close();
    throw new Error('the peer did not start with a file offer');
  }
  const offer = parsed.value;
  if (offer.size > maxBytes) {
    stream.close();
    throw new Error(`${offer.name} is larger than ${maxBytes} bytes`);
  }
  let cancelled = false;
  const result = (async (): Promise<TransferResult & { chunks?: Uint8Array[] }> => {
    const hash = sha256.create();
    const meter = new RateMeter();
    const chunks: Uint8Array[] = [];
    let received = 0;
    for (;;) {
      const { value, done } = await reader
        .read()
        .catch(() => ({ value: undefined, done: true as const }));
      if (done || value === undefined) {
        return cancelled
          ? { state: 'cancelled', message: 'you cancelled the transfer' }
          : { state: 'cancelled', message: 'the sender cancelled the transfer' };
      }
      if (typeof value === 'string') {
        const end = parseMessage(endSchema, value);
        stream.close();
        if (!end.ok)
          return { state: 'failed', message: 'the peer sent something that is not part of a file' };
        if (received !== offer.size)
          return { state: 'failed', message: `got ${received} of ${offer.size} bytes` };
        const digest = toHex(hash.digest());
        if (digest !== end.value.sha256)
          return { state: 'failed', message: 'SHA-256 mismatch: the file was damaged' };
        return { state: 'complete', sha256: digest, chunks };
      }
      received += value.length;
      if (received > offer.size) {
        stream.close();
        return { state: 'failed', message: 'the peer sent more bytes than it offered' };
      }
      hash.update(value);
      chunks.push(value);
      onProgress({ bytes: received, total: offer.size, rate: meter.add(received) });
    }
  })();
  return {
    offer,
    result,
    cancel: () => {
      cancelled = true;
      stream.close();
    },
  };
}
