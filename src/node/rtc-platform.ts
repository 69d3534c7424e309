/** The Node RtcPlatform: node-datachannel's W3C polyfill with the node's PEM certificate. */
import { RTCPeerConnection } from 'node-datachannel/polyfill';
import type { PeerConnectionLike, RtcPlatform, SessionDescription } from '../core/node/rtc.ts';

const DESCRIPTION_TIMEOUT_MS = 5000;

export function nodeRtcPlatform(options: {
  certFile: string;
  keyFile: string;
  bindAddress?: string;
}): RtcPlatform {
  return {
    createPeerConnection: ({ iceServers, iceTransportPolicy }) => {
      // The polyfill passes unknown options through to libdatachannel's configuration.
      const pc = new RTCPeerConnection({
        // The polyfill writes turn:USER:PASS@host and libdatachannel splits the user at its
        // first ':'; our usernames are <expiry>:<node id>, so escape (libdatachannel decodes).
        iceServers: iceServers.map((s) => ({
          ...s,
          ...(s.username !== undefined ? { username: encodeURIComponent(s.username) } : {}),
          ...(s.credential !== undefined ? { credential: encodeURIComponent(s.credential) } : {}),
        })),
        iceTransportPolicy: iceTransportPolicy ?? 'all',
        certificatePemFile: options.certFile,
        keyPemFile: options.keyFile,
        ...(options.bindAddress ? { bindAddress: options.bindAddress } : {}),
      } as ConstructorParameters<typeof RTCPeerConnection>[0]) as unknown as PeerConnectionLike;
      return withSettledLocalDescription(pc);
    },
  };
}

/**
 * libdatachannel negotiates by itself (an offer once a channel exists, an answer once an
 * offer is applied), and the polyfill's setLocalDescription() returns before that happens.
 * Make it resolve only once the description exists, as the W3C API promises; otherwise an
 * answer can arrive before the ICE transport does.
 */
function withSettledLocalDescription(pc: PeerConnectionLike): PeerConnectionLike {
  const original = pc.setLocalDescription.bind(pc);
  Object.defineProperty(pc, 'setLocalDescription', {
    value: async (description?: SessionDescription) => {
      const expected =
        description?.type ?? (pc.remoteDescription?.type === 'offer' ? 'answer' : 'offer');
      await original(description);
      const deadline = Date.now() + DESCRIPTION_TIMEOUT_MS;
      while (pc.localDescription?.type !== expected) {
        if (Date.now() > deadline)
          throw new Error(`no local ${expected} after ${DESCRIPTION_TIMEOUT_MS} ms`);
        await new Promise((r) => setTimeout(r, 2));
      }
    },
  });
  return pc;
}
