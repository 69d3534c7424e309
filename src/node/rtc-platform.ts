/** The Node RtcPlatform: node-datachannel's W3C polyfill with the node's PEM certificate. */
import { initLogger, type LogLevel } from 'node-datachannel';
import { RTCPeerConnection } from 'node-datachannel/polyfill';
import type { Logger } from '../core/node/logger.ts';
import type {
  CandidateInit,
  PeerConnectionLike,
  RtcPlatform,
  SessionDescription,
} from '../core/node/rtc.ts';

const DESCRIPTION_TIMEOUT_MS = 5000;

const LOG_LEVELS: readonly LogLevel[] = ['Verbose', 'Debug', 'Info', 'Warning', 'Error', 'Fatal'];

/**
 * RTCMESH_RTC_LOG=debug (or verbose, info, warning…) passes libdatachannel's log to the
 * logger (the CLI's writes it on stderr). libdatachannel has one log per process: the last
 * platform made with the variable set receives it.
 */
function startRtcLog(logger: Logger | undefined): void {
  const wanted = process.env.RTCMESH_RTC_LOG?.toLowerCase();
  if (!wanted || !logger) return;
  const level = LOG_LEVELS.find((l) => l.toLowerCase() === wanted);
  if (!level) {
    logger.warn(`RTCMESH_RTC_LOG must be one of ${LOG_LEVELS.join(', ')}`);
    return;
  }
  initLogger(level, (at, message) => logger.info(`rtc ${at}: ${message}`));
}

export function nodeRtcPlatform(options: {
  certFile: string;
  keyFile: string;
  bindAddress?: string;
  /** Receives libdatachannel's log when RTCMESH_RTC_LOG is set. */
  logger?: Logger;
}): RtcPlatform {
  startRtcLog(options.logger);
  return {
    // libdatachannel skips turn:…?transport=tcp and turns: servers with libjuice, its ICE
    // ("TURN transports TCP and TLS are not supported with libjuice"), and has no ICE-TCP.
    noTcpRelay: 'libjuice cannot use TURN over TCP',
    channelAfterOffer: true,
    holdCallerCandidatesMs: 1500,
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
      return withCandidatesAfterRemoteDescription(withSettledLocalDescription(pc));
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

type CandidateEvent = { candidate: { toJSON(): CandidateInit } | null };

/**
 * libdatachannel hands a remote description to ICE before it records the description's
 * DTLS fingerprint, on another thread than the one doing ICE and DTLS. A peer that already
 * has our candidates (a browser answering our dial) can finish ICE and its DTLS handshake in
 * between, and libdatachannel then refuses the peer's certificate ("DTLS alert: unknown CA").
 * So our candidates are given out only once a remote description is applied: until then the
 * peer has no address to reach us at. (libdatachannel also writes the candidates gathered so
 * far into the local description: a caller whose candidates trickle sends its offer without
 * them, MeshNode.connect. Between two Node nodes the callee otherwise checked us from the
 * offer's candidates, and 1 dial in ~1,000 failed with "Got a remote candidate without ICE
 * transport": the DTLS handshake failed inside our setRemoteDescription(answer), the
 * connection was torn down, and the answer's candidates found no ICE transport.)
 */
function withCandidatesAfterRemoteDescription(pc: PeerConnectionLike): PeerConnectionLike {
  const listeners: ((ev: CandidateEvent) => void)[] = [];
  let held: CandidateEvent[] | null = [];
  const addEventListener = pc.addEventListener.bind(pc) as (
    type: string,
    listener: (ev: CandidateEvent) => void,
  ) => void;
  addEventListener('icecandidate', (ev) => {
    if (held) held.push(ev);
    else for (const listener of listeners) listener(ev);
  });
  const setRemoteDescription = pc.setRemoteDescription.bind(pc);
  Object.defineProperties(pc, {
    addEventListener: {
      value: (type: string, listener: (ev: CandidateEvent) => void) => {
        if (type === 'icecandidate') listeners.push(listener);
        else addEventListener(type, listener);
      },
    },
    setRemoteDescription: {
      value: async (description: SessionDescription) => {
        await setRemoteDescription(description);
        const release = held ?? [];
        held = null;
        for (const ev of release) for (const listener of listeners) listener(ev);
      },
    },
  });
  return pc;
}
