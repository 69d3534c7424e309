/**
 * Every way a STUN or ChannelData datagram can fail to decode (or a value fail to encode) has
 * its own reason, so a server can count what it drops and tests can tell one fault from another.
 */
export type StunErrorReason =
  | 'too-short' // fewer bytes than a header (20 for STUN, 4 for ChannelData)
  | 'not-stun' // the first two bits are not zero
  | 'bad-cookie' // the magic cookie is not 0x2112A442
  | 'bad-length' // the header's length is not a multiple of 4 or does not match the datagram
  | 'truncated-attribute' // an attribute header or value (with its padding) runs past the end
  | 'fingerprint-not-last' // an attribute follows FINGERPRINT
  | 'bad-attribute' // an attribute value of the wrong size, family or content
  | 'too-long' // a value longer than its attribute allows
  | 'integrity-missing' // no MESSAGE-INTEGRITY(-SHA256) to check
  | 'integrity-mismatch' // the HMAC does not check with the key
  | 'fingerprint-mismatch' // the CRC-32 does not match
  | 'bad-channel-number'; // a ChannelData channel outside 0x4000–0x4FFF

export class StunError extends Error {
  override readonly name = 'StunError';
  constructor(
    readonly reason: StunErrorReason,
    message: string,
  ) {
    super(`${reason}: ${message}`);
  }
}
