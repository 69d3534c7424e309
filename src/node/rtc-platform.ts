/** The Node RtcPlatform: node-datachannel's W3C polyfill with the node's PEM certificate. */
import { RTCPeerConnection } from 'node-datachannel/polyfill';
import type { PeerConnectionLike, RtcPlatform } from '../core/node/rtc.ts';

export function nodeRtcPlatform(options: {
  certFile: string;
  keyFile: string;
  bindAddress?: string;
}): RtcPlatform {
  return {
    createPeerConnection: ({ iceServers }) =>
      // The polyfill passes unknown options through to libdatachannel's configuration.
      new RTCPeerConnection({
        iceServers,
        certificatePemFile: options.certFile,
        keyPemFile: options.keyFile,
        ...(options.bindAddress ? { bindAddress: options.bindAddress } : {}),
      } as ConstructorParameters<typeof RTCPeerConnection>[0]) as unknown as PeerConnectionLike,
  };
}
