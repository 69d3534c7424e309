/**
 * The RTC host (DESIGN §6): the one tab, elected with a Web Lock, that makes the node's
 * peer connections on the node worker's orders. Every data channel goes to this tab's
 * channel worker in the task that creates it, before anything is sent on it (or, where a
 * channel cannot move to a worker, stays in this tab: rtc-host-local-channel.ts); it is
 * served on two ports that travel on to the node worker (and from there to any tab).
 */
import { proxy } from 'comlink';
import type {
  PeerConfig,
  PeerStep,
  PeerUpdate,
  RtcHostApi,
  StatRecord,
  StepOutcome,
} from '../browser/rtc-host-api.ts';
import type { SessionDescription } from '../core/node/rtc.ts';
import { ChannelServer } from './rtc-host-local-channel.ts';

/** Runs `fn` in a task of its own, soon: unlike a timer, not throttled in a hidden tab. */
function nextTask(fn: () => void): void {
  const { port1, port2 } = new MessageChannel();
  port1.onmessage = () => {
    port1.close();
    fn();
  };
  port2.postMessage(null);
}

/**
 * Garbage made to free Chromium's count of closed connections: buffers, whose memory (outside
 * the JavaScript heap) is what brings a full collection soonest; small objects are swept by
 * the young generation alone and freed nothing in 200 rounds.
 */
const COLLECTION_ROUNDS = 250;
const GARBAGE_BYTES = 16 * 1024 * 1024;

/**
 * A new RTCPeerConnection. Chromium counts a closed connection until it is garbage-collected
 * and refuses the 501st ("Cannot create so many PeerConnections", DESIGN §7), and a host tab
 * that only makes and closes connections allocates too little for a collection to come: after
 * 500 calls the node could make no more. So a refusal makes garbage until a collection frees
 * the count (measured: 59 rounds of 16 MiB, 19 ms in all), then tries again.
 */
function newPeerConnection(config: RTCConfiguration): RTCPeerConnection {
  for (let round = 0; ; round++) {
    try {
      return new RTCPeerConnection(config);
    } catch (err) {
      const tooMany = err instanceof DOMException && /so many/i.test(err.message);
      if (!tooMany || round >= COLLECTION_ROUNDS) throw err;
      new Uint8Array(GARBAGE_BYTES)[0] = 1;
    }
  }
}

export class RtcHost implements RtcHostApi {
  private readonly pcs = new Map<string, RTCPeerConnection>();
  /** Why connections could not be made (the last few): later steps on them say so. */
  private readonly refused = new Map<string, string>();
  private readonly channels = new ChannelServer();

  constructor(private readonly certificate: RTCCertificate) {}

  /** This object as comlink should expose it (methods only, by reference). */
  exposed(): RtcHostApi {
    return proxy(this);
  }

  async run(pcId: string, steps: PeerStep[]): Promise<StepOutcome[]> {
    // Issued at once, in order: a connection chains its operations itself (W3C), and each
    // step's outcome is its own, as if the worker had called them one by one.
    const settled = await Promise.allSettled(steps.map((step) => this.step(pcId, step)));
    const pc = this.pcs.get(pcId);
    const local = plain(pc?.localDescription ?? null);
    const remote = plain(pc?.remoteDescription ?? null);
    return settled.map((result) =>
      result.status === 'fulfilled'
        ? { ok: true, local, remote, ...(result.value ? { offer: result.value } : {}) }
        : { ok: false, error: errorText(result.reason) },
    );
  }

  /** Runs one step; an `offer` step gives the offer it made. */
  private async step(pcId: string, step: PeerStep): Promise<SessionDescription | undefined> {
    switch (step.step) {
      case 'create':
        this.create(pcId, step.config, step.events);
        return;
      case 'channel': {
        const pc = this.pcs.get(pcId);
        if (!pc) {
          // The connection is gone: say so on the ports, as a closed channel would.
          step.data.postMessage({ c: 'close' });
          step.status.postMessage({ c: 'close' });
          return;
        }
        this.bridge(pc.createDataChannel(step.label, step.init), step.data, step.status);
        return;
      }
      case 'offer': {
        const offer = await this.pc(pcId).createOffer();
        return { type: offer.type, sdp: offer.sdp ?? '' };
      }
      case 'remote':
        await this.pc(pcId).setRemoteDescription(step.description as RTCSessionDescriptionInit);
        return;
      case 'local':
        await this.pc(pcId).setLocalDescription(
          step.description as RTCLocalSessionDescriptionInit | undefined,
        );
        return;
      case 'candidate':
        await this.pc(pcId).addIceCandidate(step.candidate);
        return;
    }
  }

  private create(pcId: string, config: PeerConfig, events: MessagePort): void {
    let pc: RTCPeerConnection;
    try {
      pc = newPeerConnection({
        iceServers: config.iceServers,
        iceTransportPolicy: config.iceTransportPolicy ?? 'all',
        certificates: [this.certificate],
      });
    } catch (err) {
      this.refused.set(pcId, errorText(err));
      if (this.refused.size > 8) this.refused.delete(this.refused.keys().next().value ?? '');
      throw err;
    }
    this.pcs.set(pcId, pc);
    // What happened in one task goes to the worker as one message.
    let update: PeerUpdate | undefined;
    const report = (): PeerUpdate => {
      if (!update) {
        update = {
          candidates: [],
          connectionState: '',
          iceGatheringState: '',
          local: null,
          channels: [],
        };
        nextTask(() => {
          const done = update;
          update = undefined;
          if (!done) return;
          done.connectionState = pc.connectionState;
          done.iceGatheringState = pc.iceGatheringState;
          done.local = plain(pc.localDescription);
          events.postMessage(
            done,
            done.channels.flatMap((c) => [c.data, c.status]),
          );
          if (pc.connectionState === 'closed') events.close();
        });
      }
      return update;
    };
    pc.addEventListener('icecandidate', (ev) => {
      report().candidates.push(ev.candidate?.toJSON() ?? null);
    });
    const state = () => {
      report();
      if (pc.connectionState === 'closed') this.pcs.delete(pcId);
    };
    pc.addEventListener('connectionstatechange', state);
    pc.addEventListener('icegatheringstatechange', state);
    pc.addEventListener('datachannel', (ev) => {
      const data = new MessageChannel();
      const status = new MessageChannel();
      const snapshot = snapshotOf(ev.channel);
      this.bridge(ev.channel, data.port1, status.port1);
      report().channels.push({ snapshot, data: data.port2, status: status.port2 });
    });
  }

  async getStats(pcId: string): Promise<StatRecord[]> {
    const report = await this.pc(pcId).getStats();
    return [...report.values()].map((s: StatRecord) => ({ ...s }));
  }

  close(pcId: string): void {
    this.pcs.get(pcId)?.close();
    this.pcs.delete(pcId);
  }

  /** Closes every connection: they served a node worker that is gone. */
  reset(): void {
    for (const pc of this.pcs.values()) pc.close();
    this.pcs.clear();
  }

  /**
   * Closes every connection and the channel worker: the tab is going away or freezing, and
   * a peer often never notices a vanished host's channels (DESIGN §6).
   */
  shutdown(): void {
    for (const pc of this.pcs.values()) pc.close();
    this.pcs.clear();
    this.channels.close();
  }

  private pc(pcId: string): RTCPeerConnection {
    const pc = this.pcs.get(pcId);
    if (!pc) {
      const why = this.refused.get(pcId);
      throw new Error(
        why
          ? `the host tab could not make peer connection ${pcId}: ${why}`
          : `no peer connection ${pcId} in the host tab`,
      );
    }
    return pc;
  }

  /** Serves the channel on the ports now: later, or after a send, it could not move. */
  private bridge(channel: RTCDataChannel, data: MessagePort, status: MessagePort): void {
    this.channels.serve(channel, data, status);
  }
}

function errorText(reason: unknown): string {
  return reason instanceof Error ? `${reason.name}: ${reason.message}` : String(reason);
}

function snapshotOf(channel: RTCDataChannel) {
  return {
    label: channel.label,
    ordered: channel.ordered,
    maxRetransmits: channel.maxRetransmits,
    maxPacketLifeTime: channel.maxPacketLifeTime,
    readyState: channel.readyState,
  };
}

function plain(description: RTCSessionDescription | null): SessionDescription | null {
  return description ? { type: description.type, sdp: description.sdp } : null;
}

/** The part of NodeClient the host election drives. */
interface HostedNode {
  becomeHost(host: RtcHost): void;
  resignHost(): void;
}

/**
 * Takes part in the RTC host election (DESIGN §6): the tab granted the lock hosts until it
 * goes away or freezes. A frozen tab would keep the lock while everything it hosts stalls,
 * so it resigns on `freeze` and stands again on `resume`; a closing tab closes its
 * connections first, so peers learn at once instead of by timeout.
 */
export function electRtcHost(
  node: HostedNode,
  certificate: RTCCertificate,
  lock: string,
  onRole: (hosting: boolean) => void = () => {},
): void {
  let release: (() => void) | undefined;
  let waiting: AbortController | undefined;
  let standing = false;
  const stand = () => {
    if (standing) return;
    standing = true;
    waiting = new AbortController();
    navigator.locks
      .request(lock, { signal: waiting.signal }, async () => {
        waiting = undefined;
        const host = new RtcHost(certificate);
        const done = new Promise<void>((r) => {
          release = r;
        });
        node.becomeHost(host);
        onRole(true);
        await done;
        release = undefined;
        host.shutdown();
        onRole(false);
      })
      .catch(() => undefined); // stepped down before the lock came
  };
  const stepDown = () => {
    if (!standing) return;
    standing = false;
    waiting?.abort();
    waiting = undefined;
    if (release) {
      node.resignHost();
      release();
    }
  };
  // Page Lifecycle: freeze and resume fire at the document, pagehide and pageshow at the window.
  document.addEventListener('freeze', stepDown);
  document.addEventListener('resume', stand);
  addEventListener('pagehide', stepDown);
  addEventListener('pageshow', (ev: PageTransitionEvent) => {
    if (ev.persisted) stand();
  });
  stand();
}
