/**
 * Wire compatibility of stream flow control (src/core/node/stream.ts): an end of this version
 * and an end of the framing before credit (READY only, which rejects unknown frame headers)
 * still carry more than a window both ways over a real data channel (libdatachannel): the
 * old end sees no credit frame and nothing of the hello, and the new end neither waits for
 * credit the old end never sends nor cuts it off for sending past a window.
 */
import { expect, it } from 'vitest';
import type { VerifiedRecord } from '../src/core/identity/index.ts';
import { type DataChannelLike, pathInfo } from '../src/core/node/rtc.ts';
import {
  encodeFrames,
  FrameJoiner,
  MeshStream,
  RECEIVE_WINDOW,
  type StreamMessage,
} from '../src/core/node/stream.ts';
import { makeNodeIdentity } from './support/node-node.ts';

const TOTAL = 4 * RECEIVE_WINDOW;
const MESSAGE = 64 * 1024;

/** Message `seq`: bytes that depend on their position in the whole transfer. */
function message(seq: number): Uint8Array<ArrayBuffer> {
  const m = new Uint8Array(MESSAGE);
  for (let i = 0; i < MESSAGE; i++) m[i] = ((seq * MESSAGE + i) * 2654435761) >>> 24;
  return m;
}
const intact = (seq: number, m: StreamMessage) =>
  typeof m !== 'string' && Buffer.from(m).equals(Buffer.from(message(seq)));

/**
 * What an end before flow control did with a channel (version 0.1's MeshStream: its framing,
 * FrameJoiner and encodeFrames, is unchanged): READY as it opens, data only after the peer's
 * READY, every other frame to the joiner, which throws on a header it does not know.
 */
function endBeforeCredit(channel: DataChannelLike) {
  channel.binaryType = 'arraybuffer';
  const joiner = new FrameJoiner();
  const messages: StreamMessage[] = [];
  const errors: string[] = [];
  let ready!: () => void;
  const peerReady = new Promise<void>((r) => {
    ready = r;
  });
  channel.addEventListener('message', (ev) => {
    const frame = new Uint8Array(ev.data as ArrayBuffer);
    if (frame.length === 1 && frame[0] === 4) return ready();
    try {
      const m = joiner.push(frame);
      if (m !== undefined) messages.push(m);
    } catch (err) {
      errors.push((err as Error).message);
    }
  });
  const sayReady = () => channel.send(new Uint8Array([4]));
  if (channel.readyState === 'open') sayReady();
  else channel.addEventListener('open', sayReady);
  return {
    messages,
    errors,
    async send(m: Uint8Array) {
      await peerReady;
      for (const frame of encodeFrames(m)) {
        while (channel.bufferedAmount > 1024 * 1024) await new Promise((r) => setTimeout(r, 5));
        channel.send(frame);
      }
    },
  };
}

it('an end with flow control and one from before it carry 8 MiB each way', async () => {
  const [a, b] = await Promise.all([makeNodeIdentity(), makeNodeIdentity()]);
  const pcA = a.rtc.createPeerConnection({ iceServers: [] });
  const pcB = b.rtc.createPeerConnection({ iceServers: [] });
  pcA.addEventListener('icecandidate', (ev) => {
    if (ev.candidate) void pcB.addIceCandidate(ev.candidate.toJSON());
  });
  pcB.addEventListener('icecandidate', (ev) => {
    if (ev.candidate) void pcA.addIceCandidate(ev.candidate.toJSON());
  });
  const offered = new Promise<DataChannelLike>((resolve) =>
    pcB.addEventListener('datachannel', (ev) => resolve(ev.channel)),
  );
  const channelA = pcA.createDataChannel('compat', { ordered: true });
  // The new end: a MeshStream (its peer record is not used by the stream itself).
  const stream = new MeshStream({} as VerifiedRecord, 'compat', channelA, () => pathInfo(pcA));
  await pcA.setLocalDescription();
  const offer = pcA.localDescription;
  if (!offer) throw new Error('no offer');
  await pcB.setRemoteDescription(offer);
  await pcB.setLocalDescription();
  const answer = pcB.localDescription;
  if (!answer) throw new Error('no answer');
  await pcA.setRemoteDescription(answer);
  const old = endBeforeCredit(await offered);

  try {
    const count = TOTAL / MESSAGE;
    // New to old: no credit ever comes back, and the sender does not wait for it.
    for (let seq = 0; seq < count; seq++) await stream.send(message(seq));
    await expect.poll(() => old.messages.length, { timeout: 60_000 }).toBe(count);
    expect(old.errors).toEqual([]);
    expect(old.messages.every((m, seq) => intact(seq, m))).toBe(true);

    // Old to new, unread at first: the old end is not held to a window, nor cut off.
    const sending = (async () => {
      for (let seq = 0; seq < count; seq++) await old.send(message(seq));
    })();
    await sending;
    await expect.poll(() => stream.bufferedBytes, { timeout: 60_000 }).toBeGreaterThan(TOTAL);
    expect(stream.isOpen).toBe(true);
    const reader = stream.readable.getReader();
    for (let seq = 0; seq < count; seq++) {
      const { value } = await reader.read();
      expect(value !== undefined && intact(seq, value)).toBe(true);
    }
    // Reading sent no credit to an end that did not ask for it.
    await new Promise((r) => setTimeout(r, 200));
    expect(old.errors).toEqual([]);
  } finally {
    stream.close();
    pcA.close();
    pcB.close();
  }
}, 120_000);
