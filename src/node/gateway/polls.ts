/**
 * HTTPS-only accept (DESIGN §2, the original note's "for accept, the request will be made
 * periodically"): nodes that hold no WebRTC session and have no push subscription take calls
 * by a signed long-poll, `GET /v1/dials?wait=25s`, repeated (which also keeps their NAT
 * mapping to the gateway open). While a node polls, or polled moments ago, it is a dial party
 * like a session: signaling (and in cluster mode the bus) hands it calls, which wait here
 * until its poll takes them; it answers or declines over the existing HTTP routes.
 *
 * Bounded: one entry per node (its new poll replaces its old one, which ends with
 * `replaced: true`), `maxPolls` nodes in all, `maxPollsPerIp` open polls per client address,
 * `maxPollWaitMs` per poll, and a small queue of calls per node.
 */
import type { NodeId } from '../../core/identity/index.ts';
import type {
  GatewayToNode,
  PendingDialResponse,
  PollDialsResponse,
} from '../../core/protocol/messages.ts';
import type { Logger } from '../log.ts';
import type { Registry } from '../registry/index.ts';
import { HttpError } from './http.ts';
import type { GatewayLimits } from './limits.ts';
import type { DialParty } from './signaling.ts';

/**
 * A node whose poll ended this long ago still takes calls (they wait for its next poll):
 * the gap between two polls is one round trip, this is many.
 */
export const POLL_GRACE_MS = 10_000;
/** Calls waiting for one node's next poll. */
const MAX_QUEUED_PER_NODE = 64;
const MAX_CANDIDATES = 64;
/** A poll answer stays well under the client's 64 KiB message bound; the rest wait. */
const MAX_ANSWER_BYTES = 48 * 1024;
const SWEEP_EVERY_MS = 2000;
/** How often a cluster gateway refreshes its pollers' presence in Redis (30 s TTL). */
const PRESENCE_REFRESH_MS = 10_000;

export interface PollTableEvents {
  /** A node began taking calls by poll here: calls waiting for it (woken by push) come here. */
  live(party: DialParty): void;
  /** It stopped polling (past the grace): its unanswered calls end. */
  gone(party: DialParty): void;
}

export interface PollTableOptions {
  gatewayId: NodeId;
  registry: Registry;
  limits: GatewayLimits;
  logger: Logger;
  events: PollTableEvents;
  /** Says a registry failure (never throws). */
  registryError: (what: string, err: unknown) => void;
  /** Whether the node also holds a session here (its presence is then the session's). */
  hasSession: (id: NodeId) => boolean;
}

interface OpenPoll {
  source: string;
  resolve: (response: PollDialsResponse) => void;
  timer: ReturnType<typeof setTimeout>;
}

interface Poller {
  readonly party: DialParty;
  /** Calls not yet handed to a poll, in arrival order. */
  readonly queue: Map<string, PendingDialResponse>;
  open: OpenPoll | undefined;
  /** When its last poll ended (while one is open: irrelevant). */
  lastPolled: number;
}

export class PollTable {
  private readonly pollers = new Map<NodeId, Poller>();
  /** Open polls per client address. */
  private readonly perSource = new Map<string, number>();
  private readonly timers: ReturnType<typeof setInterval>[] = [];
  readonly stats = { polls: 0, replaced: 0, dialsHanded: 0 };

  constructor(private readonly options: PollTableOptions) {
    this.timers.push(setInterval(() => this.sweep(), SWEEP_EVERY_MS));
    this.timers.push(setInterval(() => this.refreshPresence(), PRESENCE_REFRESH_MS));
    for (const t of this.timers) t.unref();
  }

  /** Nodes taking calls by poll here now. */
  get size(): number {
    return this.pollers.size;
  }

  /** Polls open now. */
  get openCount(): number {
    let n = 0;
    for (const p of this.pollers.values()) if (p.open) n++;
    return n;
  }

  /** The dial party of a node that takes calls by poll here. */
  party(id: NodeId): DialParty | undefined {
    return this.pollers.get(id)?.party;
  }

  /** Hands a message to a polling node (the cluster bus); false when it does not poll here. */
  deliver(id: NodeId, msg: GatewayToNode): boolean {
    const poller = this.pollers.get(id);
    if (!poller) return false;
    poller.party.deliver(msg);
    return true;
  }

  /**
   * A node's poll: the calls waiting for it, at once or as soon as one comes within `waitMs`.
   * `closed` aborts when the client hangs up (its calls then wait for the next poll).
   */
  poll(
    id: NodeId,
    source: string,
    waitMs: number,
    closed: AbortSignal,
  ): Promise<PollDialsResponse> {
    const { limits } = this.options;
    let poller = this.pollers.get(id);
    if (!poller && this.pollers.size >= limits.maxPolls)
      throw new HttpError(503, 'full', 'this gateway has no room for another polling node');
    const replacing = poller?.open;
    const fromSource = (this.perSource.get(source) ?? 0) - (replacing?.source === source ? 1 : 0);
    if (fromSource >= limits.maxPollsPerIp)
      throw new HttpError(429, 'rate-limited', 'too many open polls from your address');
    this.stats.polls++;
    if (replacing) {
      this.stats.replaced++;
      this.endPoll(poller as Poller, { dials: [], replaced: true });
    }
    if (!poller) {
      poller = this.add(id);
      this.options.events.live(poller.party);
    }
    const current = poller;
    if (current.queue.size > 0 || closed.aborted) {
      current.lastPolled = Date.now();
      return Promise.resolve({ dials: closed.aborted ? [] : this.take(current), replaced: false });
    }
    return new Promise<PollDialsResponse>((resolve) => {
      const open: OpenPoll = {
        source,
        resolve,
        timer: setTimeout(() => this.endPoll(current, { dials: [], replaced: false }), waitMs),
      };
      current.open = open;
      this.perSource.set(source, (this.perSource.get(source) ?? 0) + 1);
      closed.addEventListener(
        'abort',
        () => {
          if (current.open === open) this.endPoll(current, { dials: [], replaced: false });
        },
        { once: true },
      );
    });
  }

  /** Ends every open poll (the gateway stops). */
  close(): void {
    for (const t of this.timers) clearInterval(t);
    for (const poller of this.pollers.values())
      if (poller.open) this.endPoll(poller, { dials: [], replaced: false });
    this.pollers.clear();
  }

  private add(id: NodeId): Poller {
    const poller: Poller = {
      queue: new Map(),
      open: undefined,
      lastPolled: Date.now(),
      party: { id, deliver: (msg) => this.onMessage(poller, msg) },
    };
    this.pollers.set(id, poller);
    const { registry, gatewayId, registryError } = this.options;
    void registry
      .setSession(id, gatewayId, Date.now())
      .catch((err: unknown) => registryError('recording a polling node', err));
    return poller;
  }

  /** What signaling (or the bus) tells a polling node. */
  private onMessage(poller: Poller, msg: GatewayToNode): void {
    switch (msg.t) {
      case 'incoming': {
        if (poller.queue.has(msg.dialId) || poller.queue.size >= MAX_QUEUED_PER_NODE) return;
        const { dialId, from, offer, record } = msg;
        poller.queue.set(dialId, { dialId, from, offer, record, candidates: [] });
        if (poller.open) this.endPoll(poller, { dials: this.take(poller), replaced: false });
        return;
      }
      case 'candidate': {
        // Candidates after the poll took the call: the callee asks GET /v1/dials/:id.
        const queued = poller.queue.get(msg.dialId);
        if (queued && msg.candidate?.candidate && queued.candidates.length < MAX_CANDIDATES)
          queued.candidates.push(msg.candidate);
        return;
      }
      case 'cancel':
        poller.queue.delete(msg.dialId);
        return;
      default:
        return;
    }
  }

  /** Takes the queued calls that fit in one answer. */
  private take(poller: Poller): PendingDialResponse[] {
    const dials: PendingDialResponse[] = [];
    let bytes = 0;
    for (const [dialId, dial] of poller.queue) {
      const size = JSON.stringify(dial).length;
      if (dials.length > 0 && bytes + size > MAX_ANSWER_BYTES) break;
      bytes += size;
      dials.push(dial);
      poller.queue.delete(dialId);
    }
    this.stats.dialsHanded += dials.length;
    return dials;
  }

  private endPoll(poller: Poller, response: PollDialsResponse): void {
    const open = poller.open;
    if (!open) return;
    poller.open = undefined;
    poller.lastPolled = Date.now();
    clearTimeout(open.timer);
    const left = (this.perSource.get(open.source) ?? 1) - 1;
    if (left <= 0) this.perSource.delete(open.source);
    else this.perSource.set(open.source, left);
    open.resolve(response);
  }

  /** Nodes that stopped polling: gone (their calls end, their presence is cleared). */
  private sweep(): void {
    const before = Date.now() - POLL_GRACE_MS;
    for (const [id, poller] of this.pollers) {
      if (poller.open || poller.lastPolled >= before) continue;
      this.pollers.delete(id);
      this.options.events.gone(poller.party);
      const { registry, gatewayId, registryError, hasSession } = this.options;
      if (hasSession(id)) continue;
      void registry
        .setSession(id, null, Date.now(), gatewayId)
        .catch((err: unknown) => registryError('ending a polling node', err));
    }
  }

  /** Presence in Redis expires unless refreshed (a session's is refreshed the same way). */
  private refreshPresence(): void {
    const { registry, gatewayId, registryError } = this.options;
    const now = Date.now();
    for (const id of this.pollers.keys())
      void registry
        .setSession(id, gatewayId, now)
        .catch((err: unknown) => registryError('refreshing a polling node', err));
  }
}
