/**
 * A node's live session with this gateway: one WebRTC association with a `ctl` data
 * channel that carries signaling and heartbeats (DESIGN §2).
 */
import type { DataChannel, PeerConnection } from 'node-datachannel';
import type { NodeId, VerifiedRecord } from '../../core/identity/index.ts';
import {
  type GatewayToNode,
  type NodeToGateway,
  nodeToGatewaySchema,
  parseMessage,
} from '../../core/protocol/messages.ts';
import { type RateLimit, RateLimiter } from '../rate-limit.ts';
import type { Association } from './rtc-endpoint.ts';

/** A connect whose `ctl` is not open by then is abandoned. */
const OPEN_TIMEOUT_MS = 15_000;
/** Invalid messages a session may send before it is closed. */
const MAX_INVALID = 50;

export interface SessionEvents {
  open(session: GatewaySession): void;
  message(session: GatewaySession, msg: NodeToGateway): void;
  invalid(session: GatewaySession, reason: string): void;
  close(session: GatewaySession, reason: string): void;
}

export class GatewaySession {
  lastHeard = Date.now();
  private state: 'connecting' | 'open' | 'closed' = 'connecting';
  private invalidCount = 0;
  private readonly limiter: RateLimiter;
  private readonly pc: PeerConnection;
  private readonly ctl: DataChannel;
  private readonly openTimer: ReturnType<typeof setTimeout>;

  constructor(
    readonly id: NodeId,
    readonly record: VerifiedRecord,
    /** The client's address key (client-address.ts): what its per-address limits count. */
    readonly remoteAddress: string,
    association: Association,
    messagesPerSecond: RateLimit,
    private readonly events: SessionEvents,
  ) {
    this.pc = association.pc;
    this.ctl = association.ctl;
    this.limiter = new RateLimiter(messagesPerSecond, 1);
    this.openTimer = setTimeout(() => this.close('ctl did not open'), OPEN_TIMEOUT_MS);
    this.ctl.onOpen(() => {
      if (this.state !== 'connecting') return;
      clearTimeout(this.openTimer);
      this.state = 'open';
      this.lastHeard = Date.now();
      this.events.open(this);
    });
    this.ctl.onMessage((data) => this.receive(data));
    this.ctl.onClosed(() => this.close('ctl closed'));
    this.pc.onStateChange((state) => {
      if (state === 'failed' || state === 'closed') this.close(`connection ${state}`);
    });
  }

  get isOpen(): boolean {
    return this.state === 'open';
  }

  /** Connected over HTTP, but the association and its ctl are not up yet. */
  get isConnecting(): boolean {
    return this.state === 'connecting';
  }

  /** Round-trip time and the node's address as the association sees them. */
  get path(): { rttMs: number | null; remote: string | null } {
    if (this.state === 'closed') return { rttMs: null, remote: null };
    const pair = this.pc.getSelectedCandidatePair();
    const rtt = this.pc.rtt();
    return {
      rttMs: rtt >= 0 ? rtt : null,
      remote: pair ? `${pair.remote.address}:${pair.remote.port}` : null,
    };
  }

  send(msg: GatewayToNode): boolean {
    if (this.state !== 'open') return false;
    try {
      return this.ctl.sendMessage(JSON.stringify(msg));
    } catch {
      this.close('send failed');
      return false;
    }
  }

  close(reason: string): void {
    if (this.state === 'closed') return;
    const wasOpen = this.state === 'open';
    this.state = 'closed';
    clearTimeout(this.openTimer);
    try {
      this.ctl.close();
      this.pc.close();
    } catch {
      // already gone
    }
    if (wasOpen || reason !== 'replaced') this.events.close(this, reason);
  }

  private receive(data: string | Buffer | ArrayBuffer): void {
    if (this.state !== 'open') return;
    this.lastHeard = Date.now();
    if (!this.limiter.take('ctl')) {
      this.reject('rate-limited', 'too many messages on ctl');
      return;
    }
    if (typeof data !== 'string') {
      this.reject('invalid', 'ctl carries JSON text, not binary');
      return;
    }
    const parsed = parseMessage(nodeToGatewaySchema, data);
    if (!parsed.ok) {
      this.reject('invalid', parsed.message);
      return;
    }
    this.events.message(this, parsed.value);
  }

  private reject(code: string, message: string): void {
    this.send({ t: 'error', code, message });
    this.events.invalid(this, message);
    if (++this.invalidCount > MAX_INVALID) this.close('too many invalid messages');
  }
}
