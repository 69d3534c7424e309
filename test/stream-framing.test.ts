/** Stream framing: messages of any size split into frames and joined back, exactly. */
import { describe, expect, it } from 'vitest';
import {
  channelOptions,
  encodeFrames,
  FrameJoiner,
  MAX_FRAME_PAYLOAD,
} from '../src/core/node/stream.ts';

describe('frames', () => {
  it('round-trips text and binary of every awkward size', () => {
    for (const size of [
      0,
      1,
      MAX_FRAME_PAYLOAD - 1,
      MAX_FRAME_PAYLOAD,
      MAX_FRAME_PAYLOAD + 1,
      3 * MAX_FRAME_PAYLOAD + 7,
    ]) {
      const bytes = crypto.getRandomValues(new Uint8Array(Math.min(size, 65536))).slice(0, size);
      const padded = new Uint8Array(size);
      padded.set(bytes);
      const joiner = new FrameJoiner();
      const frames = encodeFrames(padded);
      expect(frames).toHaveLength(Math.max(1, Math.ceil(size / MAX_FRAME_PAYLOAD)));
      const out = frames.map((f) => joiner.push(f));
      expect(out.slice(0, -1).every((m) => m === undefined)).toBe(true);
      expect(out.at(-1)).toEqual(padded);
    }
    const text = 'héllo 🌍 '.repeat(20_000);
    const joiner = new FrameJoiner();
    const frames = encodeFrames(text);
    expect(frames.length).toBeGreaterThan(1);
    expect(frames.map((f) => joiner.push(f)).at(-1)).toBe(text);
  });

  it('refuses bad headers, empty frames and oversized messages', () => {
    expect(() => new FrameJoiner().push(new Uint8Array(0))).toThrow(/empty frame/);
    expect(() => new FrameJoiner().push(Uint8Array.of(0x80, 1))).toThrow(/bad frame header/);
    const small = new FrameJoiner(10);
    expect(() => small.push(Uint8Array.of(0, ...new Uint8Array(11)))).toThrow(/larger than 10/);
  });

  it('maps stream options to data channel options', () => {
    expect(channelOptions()).toEqual({ ordered: true });
    expect(channelOptions({ reliable: false, ordered: false })).toEqual({
      ordered: false,
      maxRetransmits: 0,
    });
    expect(channelOptions({ maxPacketLifeTime: 100, priority: 'high' })).toEqual({
      ordered: true,
      maxPacketLifeTime: 100,
      priority: 'high',
    });
  });
});
