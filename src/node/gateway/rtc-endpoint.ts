/**
 * The gateway's WebRTC endpoint (DESIGN §5) on node-datachannel: every association shares
 * one UDP port through libjuice's ICE UDP mux, with the gateway's stable certificate.
 *
 * The gateway advertises only its configured address, and drops the candidates a node's
 * offer lists: it learns where the node is from the node's own connectivity checks
 * (peer-reflexive), so no client can make it send packets to an address of its choosing.
 */
import { createSocket } from 'node:dgram';
import { type DataChannel, PeerConnection } from 'node-datachannel';
import { withCandidates, withoutCandidates } from '../../core/protocol/sdp.ts';

export interface RtcEndpointConfig {
  /** Where libjuice binds the shared UDP port. */
  bindHost: string;
  port: number;
  /** The address put in the answer's only candidate. */
  publicIp: string;
  certFile: string;
  keyFile: string;
}

export interface Association {
  pc: PeerConnection;
  ctl: DataChannel;
  answer: string;
}

const ANSWER_TIMEOUT_MS = 5000;

/** Finds a free UDP port when the config says 0 (tests run many gateways at once). */
export async function resolveUdpPort(host: string, port: number): Promise<number> {
  if (port !== 0) return port;
  const socket = createSocket(host.includes(':') ? 'udp6' : 'udp4');
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(0, host, () => resolve());
  });
  const free = socket.address().port;
  await new Promise<void>((resolve) => socket.close(() => resolve()));
  return free;
}

export class RtcEndpoint {
  private count = 0;

  constructor(readonly config: RtcEndpointConfig) {}

  get candidate(): string {
    return `candidate:1 1 UDP 2130706431 ${this.config.publicIp} ${this.config.port} typ host`;
  }

  /** Answers a node's offer; the `ctl` channel (negotiated, id 0) opens when DTLS is up. */
  async accept(offer: string, label: string): Promise<Association> {
    const pc = new PeerConnection(`${label}#${++this.count}`, {
      iceServers: [],
      enableIceUdpMux: true,
      bindAddress: this.config.bindHost,
      portRangeBegin: this.config.port,
      portRangeEnd: this.config.port,
      certificatePemFile: this.config.certFile,
      keyPemFile: this.config.keyFile,
      maxMessageSize: 262_144,
    });
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      // The answer's only candidate is ours, so there is no gathering to wait for.
      const described = new Promise<void>((resolve, reject) => {
        timer = setTimeout(() => reject(new Error('no answer was made')), ANSWER_TIMEOUT_MS);
        pc.onLocalDescription(() => resolve());
      });
      // libdatachannel throws synchronously on an offer it refuses: the wait above must then
      // not reject later with nobody listening (that ended the process: issue #12).
      described.catch(() => {});
      pc.setRemoteDescription(withoutCandidates(offer), 'offer');
      // Made after the offer: a channel made before makes libdatachannel an offerer of its
      // own, and its ICE stayed "controlling" as the answerer (a role conflict, 487, on every
      // session; DESIGN §7). Negotiated, so it needs no renegotiation now.
      const ctl = pc.createDataChannel('ctl', { negotiated: true, id: 0 });
      if (pc.localDescription()?.type !== 'answer') await described;
      const local = pc.localDescription();
      if (local?.type !== 'answer') throw new Error('no answer was made');
      return { pc, ctl, answer: withCandidates(local?.sdp ?? '', [this.candidate]) };
    } catch (err) {
      pc.close();
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }
}
