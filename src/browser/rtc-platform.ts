/** The window's RtcPlatform: native RTCPeerConnection with the node's stored certificate. */
import type { PeerConnectionLike, RtcPlatform } from '../core/node/rtc.ts';

export function windowRtcPlatform(certificate: RTCCertificate): RtcPlatform {
  return {
    createPeerConnection: ({ iceServers, iceTransportPolicy }) =>
      // The native type is wider than the slice the core uses; the shapes match.
      new RTCPeerConnection({
        iceServers,
        iceTransportPolicy: iceTransportPolicy ?? 'all',
        certificates: [certificate],
      }) as unknown as PeerConnectionLike,
  };
}
