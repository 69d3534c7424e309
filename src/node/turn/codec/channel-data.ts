/**
 * ChannelData (RFC 8656 §12.4): a 2-byte channel number (0x4000–0x4FFF), a 2-byte length and
 * the application data: TURN's 4-byte framing for bound channels. Over UDP the data may be
 * padded to a multiple of 4; the length says where it ends.
 *
 * RFC 5766 allowed channels up to 0x7FFF; RFC 8656 reserves 0x5000 and above so ChannelData
 * keeps to first bytes 64–79 (RFC 7983). `rfc5766` accepts the old range, for old clients.
 */
import { view } from '../../stun/attribute.ts';
import { StunError } from '../../stun/errors.ts';

export const MIN_CHANNEL = 0x4000;
export const MAX_CHANNEL = 0x4fff;
export const MAX_RFC5766_CHANNEL = 0x7fff;
export const CHANNEL_DATA_HEADER = 4;

export interface ChannelData {
  channel: number;
  data: Uint8Array;
}

export function isValidChannel(channel: number, rfc5766 = false): boolean {
  return (
    Number.isInteger(channel) &&
    channel >= MIN_CHANNEL &&
    channel <= (rfc5766 ? MAX_RFC5766_CHANNEL : MAX_CHANNEL)
  );
}

/** RFC 7983 demultiplexing: first byte 64–79 is ChannelData (64–127 with the RFC 5766 range). */
export function looksLikeChannelData(bytes: Uint8Array, rfc5766 = false): boolean {
  const first = bytes[0] ?? 0;
  return first >= 0x40 && first <= (rfc5766 ? 0x7f : 0x4f);
}

const rangeText = (rfc5766: boolean): string => (rfc5766 ? '0x4000–0x7FFF' : '0x4000–0x4FFF');

export function encodeChannelData(
  { channel, data }: ChannelData,
  options: { pad?: boolean; rfc5766?: boolean } = {},
): Uint8Array {
  const pad = options.pad ?? false;
  if (!isValidChannel(channel, options.rfc5766))
    throw new StunError(
      'bad-channel-number',
      `channel 0x${channel.toString(16)} is not in ${rangeText(options.rfc5766 ?? false)}`,
    );
  if (data.length > 0xffff)
    throw new StunError('too-long', 'ChannelData holds at most 65535 bytes');
  const out = new Uint8Array(CHANNEL_DATA_HEADER + (pad ? (data.length + 3) & ~3 : data.length));
  view(out).setUint16(0, channel);
  view(out).setUint16(2, data.length);
  out.set(data, CHANNEL_DATA_HEADER);
  return out;
}

export function decodeChannelData(bytes: Uint8Array, rfc5766 = false): ChannelData {
  if (bytes.length < CHANNEL_DATA_HEADER)
    throw new StunError('too-short', `${bytes.length} bytes is shorter than a ChannelData header`);
  const v = view(bytes);
  const channel = v.getUint16(0);
  if (!isValidChannel(channel, rfc5766))
    throw new StunError(
      'bad-channel-number',
      `channel 0x${channel.toString(16)} is not in ${rangeText(rfc5766)}`,
    );
  const length = v.getUint16(2);
  const end = CHANNEL_DATA_HEADER + length;
  if (end > bytes.length)
    throw new StunError(
      'bad-length',
      `ChannelData says ${length} bytes, the datagram has ${bytes.length - 4}`,
    );
  // Anything past the padding is not ChannelData.
  if (bytes.length > ((end + 3) & ~3))
    throw new StunError(
      'bad-length',
      `ChannelData of ${length} bytes has ${bytes.length - end} bytes after it`,
    );
  return { channel, data: bytes.subarray(CHANNEL_DATA_HEADER, end) };
}
