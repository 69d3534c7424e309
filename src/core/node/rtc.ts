/**
 * The slice of the W3C WebRTC API the node core uses. The browser's RTCPeerConnection and
 * node-datachannel's polyfill both provide it, and a remote host tab (DESIGN §6) can too:
 * the core never names a platform type, so it runs anywhere by a change of adapter.
 */

export interface SessionDescription {
  type: 'offer' | 'answer' | 'pranswer' | 'rollback';
  sdp?: string;
}

export interface CandidateInit {
  candidate?: string;
  sdpMid?: string | null;
  sdpMLineIndex?: number | null;
}

export interface DataChannelLike {
  readonly label: string;
  readonly readyState: 'connecting' | 'open' | 'closing' | 'closed';
  readonly bufferedAmount: number;
  bufferedAmountLowThreshold: number;
  readonly ordered: boolean;
  readonly maxRetransmits: number | null;
  readonly maxPacketLifeTime: number | null;
  binaryType: string;
  send(data: string | Uint8Array<ArrayBuffer>): void;
  close(): void;
  addEventListener(
    type: 'open' | 'close' | 'error' | 'bufferedamountlow',
    listener: () => void,
  ): void;
  addEventListener(type: 'message', listener: (ev: { data: unknown }) => void): void;
  removeEventListener(type: 'bufferedamountlow', listener: () => void): void;
}

export interface DataChannelOptions {
  negotiated?: boolean;
  id?: number;
  ordered?: boolean;
  maxRetransmits?: number;
  maxPacketLifeTime?: number;
  priority?: 'very-low' | 'low' | 'medium' | 'high';
  protocol?: string;
}

export interface StatsReportLike {
  forEach(callback: (stat: Record<string, unknown> & { type: string; id: string }) => void): void;
  get(id: string): (Record<string, unknown> & { type: string }) | undefined;
}

export interface PeerConnectionLike {
  readonly localDescription: SessionDescription | null;
  readonly remoteDescription: SessionDescription | null;
  readonly connectionState: string;
  readonly iceGatheringState: string;
  createDataChannel(
    label: string,
    init?: { negotiated?: boolean; id?: number; ordered?: boolean; maxRetransmits?: number },
  ): DataChannelLike;
  setLocalDescription(description?: SessionDescription): Promise<void>;
  setRemoteDescription(description: SessionDescription): Promise<void>;
  addIceCandidate(candidate: CandidateInit): Promise<void>;
  getStats(): Promise<StatsReportLike>;
  close(): void;
  addEventListener(
    type: 'icecandidate',
    listener: (ev: { candidate: { toJSON(): CandidateInit } | null }) => void,
  ): void;
  addEventListener(type: 'datachannel', listener: (ev: { channel: DataChannelLike }) => void): void;
  addEventListener(
    type: 'connectionstatechange' | 'icegatheringstatechange',
    listener: () => void,
  ): void;
}

export interface IceServer {
  urls: string | string[];
  username?: string;
  credential?: string;
}

/** Makes peer connections with this node's DTLS certificate. */
export interface RtcPlatform {
  createPeerConnection(config: {
    iceServers: IceServer[];
    iceTransportPolicy?: 'all' | 'relay';
  }): PeerConnectionLike;
  /**
   * Why this platform cannot relay over TURN/TCP or TLS when UDP is blocked, in words for an
   * error (undefined: it can, as browsers do).
   */
  readonly noTcpRelay?: string;
  /**
   * A data channel made before an offer is applied makes this platform an offerer of its own:
   * the answering side makes its channel after the offer (DESIGN §7: libdatachannel then keeps
   * its ICE agent "controlling" as the answerer, so every call began with a role conflict).
   */
  readonly channelAfterOffer?: boolean;
  /**
   * Answering a gathered offer (a caller without a session, over HTTP): apply it without its
   * candidates and add them this long after the answer is sent, so this side's checks cannot
   * reach the caller before it has applied the answer; the caller's own checks link the two
   * sooner where they can. A libdatachannel caller reached first fails inside
   * `setRemoteDescription(answer)` ("Got a remote candidate without ICE transport"; DESIGN §7).
   */
  readonly holdCallerCandidatesMs?: number;
}

/** Resolves when ICE gathering is complete, or after `timeoutMs` (with what was gathered). */
export function gatheringComplete(pc: PeerConnectionLike, timeoutMs: number): Promise<void> {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, timeoutMs);
    pc.addEventListener('icegatheringstatechange', () => {
      if (pc.iceGatheringState !== 'complete') return;
      clearTimeout(timer);
      resolve();
    });
  });
}

/** Resolves when `channel` opens; rejects if it closes first or `timeoutMs` passes. */
export function channelOpen(channel: DataChannelLike, timeoutMs: number): Promise<void> {
  if (channel.readyState === 'open') return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`data channel ${channel.label} did not open in ${timeoutMs} ms`)),
      timeoutMs,
    );
    channel.addEventListener('open', () => {
      clearTimeout(timer);
      resolve();
    });
    channel.addEventListener('close', () => {
      clearTimeout(timer);
      reject(new Error(`data channel ${channel.label} closed before it opened`));
    });
  });
}

/** Candidate types, addresses and round-trip time of the selected pair. */
export interface PathInfo {
  local: string | null;
  remote: string | null;
  /** `ip:port` of each candidate (a relay candidate: the TURN relay's address). */
  localAddress: string | null;
  remoteAddress: string | null;
  protocol: string | null;
  rttMs: number | null;
  /**
   * When this side is relayed (local candidate of type relay): how it reaches its TURN server,
   * `udp`, `tcp` or `tls` (RTCIceCandidateStats.relayProtocol), and the port of that server's URL.
   */
  relayProtocol?: string | null;
  relayPort?: number | null;
}

/**
 * How a link travels, in words for people: "direct", or "relayed · TLS 443" (this side's
 * transport to its relay and the relay's port), or "relayed" when only the peer is relayed.
 */
export function linkLabel(info: PathInfo): string {
  if (info.local !== 'relay' && info.remote !== 'relay') return 'direct';
  if (info.local !== 'relay' || !info.relayProtocol) return 'relayed';
  const port = info.relayPort ? ` ${info.relayPort}` : '';
  return `relayed · ${info.relayProtocol.toUpperCase()}${port}`;
}

/** The port of a `turn:`/`turns:` URL (RTCIceCandidateStats.url), or null. */
function portOfTurnUrl(url: unknown): number | null {
  if (typeof url !== 'string') return null;
  const m = /^turns?:(?:\[[^\]]*\]|[^:?]+)(?::(\d{1,5}))?/.exec(url);
  if (!m) return null;
  if (m[1]) return Number(m[1]);
  return url.startsWith('turns:') ? 5349 : 3478;
}

/** Relays the path crosses: one per relay candidate on either side (DESIGN "Relays across hops"). */
export function relayHops(info: PathInfo): number {
  return (info.local === 'relay' ? 1 : 0) + (info.remote === 'relay' ? 1 : 0);
}

/**
 * The path as a user reads it: `you → relay 10.9.0.1:50000 → relay 10.9.0.2:50002 → peer`.
 * (No round trip: node-datachannel's polyfill reports it in whole seconds.)
 */
export function describePath(info: PathInfo): string {
  const hop = (type: string | null, address: string | null) =>
    type === 'relay' ? [`relay ${address ?? '?'}`] : [];
  const hops = relayHops(info);
  const steps = [
    'you',
    ...hop(info.local, info.localAddress),
    ...hop(info.remote, info.remoteAddress),
    'peer',
  ];
  const kind =
    hops === 0
      ? `direct, ${info.local ?? '?'} → ${info.remote ?? '?'}`
      : `${hops} relay hop${hops === 1 ? '' : 's'}`;
  return `${steps.join(' → ')} (${kind})`;
}

export async function pathInfo(pc: PeerConnectionLike): Promise<PathInfo> {
  const stats = await pc.getStats();
  let pairId: string | undefined;
  stats.forEach((s) => {
    if (s.type === 'transport' && typeof s.selectedCandidatePairId === 'string')
      pairId = s.selectedCandidatePairId;
  });
  if (!pairId) {
    stats.forEach((s) => {
      if (
        s.type === 'candidate-pair' &&
        (s.selected === true || (s.nominated === true && s.state === 'succeeded'))
      )
        pairId ??= s.id;
    });
  }
  const pair = pairId ? stats.get(pairId) : undefined;
  const local =
    typeof pair?.localCandidateId === 'string' ? stats.get(pair.localCandidateId) : undefined;
  const remote =
    typeof pair?.remoteCandidateId === 'string' ? stats.get(pair.remoteCandidateId) : undefined;
  const rtt = pair?.currentRoundTripTime;
  // Browsers say `address`, node-datachannel's polyfill `ip`.
  const where = (c: Record<string, unknown> | undefined) => {
    const ip = typeof c?.address === 'string' ? c.address : typeof c?.ip === 'string' ? c.ip : null;
    if (!ip) return null;
    const host = ip.includes(':') ? `[${ip}]` : ip;
    return typeof c?.port === 'number' ? `${host}:${c.port}` : host;
  };
  return {
    local: typeof local?.candidateType === 'string' ? local.candidateType : null,
    remote: typeof remote?.candidateType === 'string' ? remote.candidateType : null,
    localAddress: where(local),
    remoteAddress: where(remote),
    protocol: typeof local?.protocol === 'string' ? local.protocol : null,
    rttMs: typeof rtt === 'number' ? Math.round(rtt * 10_000) / 10 : null,
    ...(local?.candidateType === 'relay'
      ? {
          relayProtocol: typeof local.relayProtocol === 'string' ? local.relayProtocol : null,
          relayPort: portOfTurnUrl(local.url),
        }
      : {}),
  };
}
