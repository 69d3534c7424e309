/**
 * What the RTC host tab does for the node worker (DESIGN §6). Peer connections live in the
 * host tab (only a window has RTCPeerConnection); the worker names each by a string and
 * sees it through RemotePeerConnection. Data channels never come here: their ports go
 * straight to the host's channel worker and back to the node worker.
 *
 * Crossings between the worker and the tab cost a dial most of its time, so the protocol
 * has as few as the steps need: the worker sends the steps it issued in one task (create
 * the connection, its channels, the remote description, every candidate so far, the local
 * description) as one `run` call, and the host answers once with each step's outcome and
 * the descriptions. The host reports back on a port of the connection's own, once per task
 * with every candidate and state change of that task, and expects no reply.
 */
import type {
  CandidateInit,
  DataChannelOptions,
  IceServer,
  SessionDescription,
} from '../core/node/rtc.ts';
import type { ChannelSnapshot } from './port-channel.ts';

export interface PeerConfig {
  iceServers: IceServer[];
  iceTransportPolicy?: 'all' | 'relay';
}

/** One stats entry, as a plain object (RTCStatsReport itself cannot cross a port). */
export type StatRecord = Record<string, unknown> & { type: string; id: string };

/** One step of a peer connection, in the order the worker issued it. */
export type PeerStep =
  /** Make the connection; the host reports on `events` from then on. */
  | { step: 'create'; config: PeerConfig; events: MessagePort }
  /** A data channel, moved to the channel worker and served on these ports. */
  | {
      step: 'channel';
      label: string;
      init: DataChannelOptions;
      data: MessagePort;
      status: MessagePort;
    }
  /**
   * Makes an offer without applying it (createOffer): a spare connection's, ready for a dial,
   * which can then send it while the host applies it.
   */
  | { step: 'offer' }
  | { step: 'remote'; description: SessionDescription }
  | { step: 'local'; description?: SessionDescription }
  | { step: 'candidate'; candidate: CandidateInit };

/** How a step went, and the descriptions as they stand after it. */
export type StepOutcome =
  | {
      ok: true;
      local: SessionDescription | null;
      remote: SessionDescription | null;
      /** The offer an `offer` step made. */
      offer?: SessionDescription;
    }
  | { ok: false; error: string };

/** What the host reports on a connection's events port, at most once per task. */
export interface PeerUpdate {
  /** Candidates gathered in this task, in order; null marks the end of gathering. */
  candidates: (CandidateInit | null)[];
  connectionState: string;
  iceGatheringState: string;
  /**
   * The local description as it is now: it gains the candidates gathered since the last step,
   * and signaling that does not trickle (HTTP mode) sends it whole.
   */
  local: SessionDescription | null;
  /** Channels the peer opened: their ports, as the channel worker serves them. */
  channels: { snapshot: ChannelSnapshot; data: MessagePort; status: MessagePort }[];
}

export interface RtcHostApi {
  /** Runs `steps` on connection `pcId` in order; every step runs, whatever the one before did. */
  run(pcId: string, steps: PeerStep[]): Promise<StepOutcome[]>;
  getStats(pcId: string): Promise<StatRecord[]>;
  close(pcId: string): void;
}
