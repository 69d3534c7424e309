/**
 * What the RTC host tab does for the node worker (DESIGN §6), over comlink. Peer
 * connections live in the host tab (only a window has RTCPeerConnection); the worker names
 * each by a number and sees it through RemotePeerConnection. Data channels never come here:
 * their ports go straight to the host's channel worker and back to the node worker.
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

/** The host tab tells the worker what happens to a peer connection (a comlink proxy). */
export interface PeerEvents {
  icecandidate(candidate: CandidateInit | null): void;
  state(connectionState: string, iceGatheringState: string): void;
  /** The peer opened a channel: its ports, as the channel worker serves them. */
  datachannel(channel: { snapshot: ChannelSnapshot; data: MessagePort; status: MessagePort }): void;
}

export interface RtcHostApi {
  createPeerConnection(pcId: string, config: PeerConfig, events: PeerEvents): void;
  createDataChannel(
    pcId: string,
    label: string,
    init: DataChannelOptions,
    ports: { data: MessagePort; status: MessagePort },
  ): void;
  setLocalDescription(
    pcId: string,
    description?: SessionDescription,
  ): Promise<SessionDescription | null>;
  setRemoteDescription(
    pcId: string,
    description: SessionDescription,
  ): Promise<SessionDescription | null>;
  addIceCandidate(pcId: string, candidate: CandidateInit): Promise<void>;
  getStats(pcId: string): Promise<StatRecord[]>;
  close(pcId: string): void;
}
