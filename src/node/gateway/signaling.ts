/**
 * Dial routing (DESIGN §2): finds the callee, forwards the offer, candidates, the answer or
 * the refusal, and ends every dial within a bound. The gateway checks the caller's record
 * only to catch mistakes early; the callee and the caller check everything themselves.
 *
 * A callee without a session but with a push subscription is woken: the dial stays pending
 * (same bound) with the callee not yet attached, the caller's candidates are kept, and the
 * call goes to the woken node when it connects, or over HTTP (GET /v1/dials/:id, …/answer,
 * …/reject).
 */

import {
  fingerprintsInSdp,
  IdentityError,
  idPrefixFromMeshIp6,
  type NodeId,
  parseNodeId,
  RecordCache,
} from '../../core/identity/index.ts';
import type {
  DialErrorCode,
  GatewayToNode,
  IceCandidate,
  NodeToGateway,
  PendingDialResponse,
  PushPayload,
} from '../../core/protocol/messages.ts';
import type { Registration, Registry } from '../registry/index.ts';
import type { GatewayLimits } from './limits.ts';
import { countedFrom, gaugeFrom, latencyHistogram, type MetricsRegistry } from './metrics.ts';

/** Whoever takes part in a dial: a node's ctl session, or an HTTP request waiting for its answer. */
export interface DialParty {
  readonly id: NodeId;
  /** The client address key (client-address.ts) it comes from, for per-address shares. */
  readonly source?: string;
  /** False for a caller over HTTP: candidates cannot follow the answer to it. */
  readonly trickles?: boolean;
  deliver(msg: GatewayToNode): void;
}

/**
 * Wakes a registered node that has no session (by Web Push); resolves with why it could not,
 * or undefined once the push service has the message.
 */
export type Waker = (callee: Registration, payload: PushPayload) => Promise<string | undefined>;

/**
 * Cluster mode: the party for a callee whose session is on another gateway (undefined when
 * it has none there), and where to remember a dial that other gateways may be asked about.
 */
export interface RemoteParties {
  find(callee: Registration): Promise<DialParty | undefined>;
  /** Federation: a node this gateway's registry does not know, held by another gateway. */
  lookup?(to: string): Promise<Registration | undefined>;
  dialStarted(dialId: string, ttlMs: number): Promise<void>;
}

type IncomingDialMessage = Extract<GatewayToNode, { t: 'incoming' }>;

interface Dial {
  id: string;
  caller: DialParty;
  /** The callee's session, or while it is being woken a placeholder that drops messages. */
  callee: DialParty;
  /** False while the callee is being woken: nothing has reached it yet. */
  calleeAttached: boolean;
  answered: boolean;
  timer: ReturnType<typeof setTimeout>;
  /** What the callee is sent: again to a new session of the callee, or over HTTP. */
  incoming: IncomingDialMessage;
  /** The caller's trickled candidates, for a callee that attaches late or asks over HTTP. */
  callerCandidates: (IceCandidate | null)[];
  /** performance.now() when the dial reached the gateway. */
  startedAt: number;
}

/** What a callee asks over HTTP about a dial (GET /v1/dials/:id, …/answer, …/reject). */
export type HttpDialAction =
  | { action: 'get' }
  | { action: 'answer'; answer: string; record: string }
  | { action: 'reject'; reason: 'declined' | 'identity' | 'busy'; message?: string };

/** The answer to an HTTP request about a dial: a value, or an HTTP error. */
export type DialLookup<T> =
  | { ok: true; value: T }
  | { ok: false; status: number; code: string; message: string };
/** The pending dial (get), or nothing (answer, reject). */
export type HttpDialOutcome = DialLookup<PendingDialResponse | null>;

/** After an answer, candidates still trickle for a while. */
const TRICKLE_AFTER_ANSWER_MS = 30_000;
/** Candidates one side may send in one dial. */
const MAX_CANDIDATES = 64;

export interface SignalingStats {
  dialsStarted: number;
  /** Dials whose callee was woken by push. */
  dialsWoken: number;
  dialsAnswered: number;
  dialsFailed: Partial<Record<DialErrorCode, number>>;
}

export class Signaling {
  private readonly dials = new Map<string, Dial & { candidates: Map<NodeId, number> }>();
  /**
   * Unanswered dials per share (caller, callee, caller→callee pair, address, address→callee),
   * so no one caller or address can take the whole of a callee's or the gateway's capacity.
   * Keys exist only while a dial is pending: bounded by maxPendingDials.
   */
  private readonly shares = new Map<string, number>();
  /**
   * Dials not yet answered: what limits.maxPendingDials bounds. Answered dials stay in `dials`
   * for a while (late candidates), but must not count, or a steady rate above
   * maxPendingDials / TRICKLE_AFTER_ANSWER_MS (333/s by default) would refuse calls as busy.
   */
  private unanswered = 0;
  readonly stats: SignalingStats = {
    dialsStarted: 0,
    dialsWoken: 0,
    dialsAnswered: 0,
    dialsFailed: {},
  };

  constructor(
    private readonly registry: Registry,
    private readonly findSession: (id: NodeId) => DialParty | undefined,
    private readonly limits: GatewayLimits,
    private readonly wake?: Waker,
    /** Records already verified (a node sends the same one with every dial). */
    private readonly records = new RecordCache(),
    private readonly remote?: RemoteParties,
    /** Where this component's metrics go (docs/design.md §5: each component its own). */
    metrics?: MetricsRegistry,
  ) {
    if (metrics) this.registerMetrics(metrics);
  }

  private registerMetrics(registry: MetricsRegistry): void {
    gaugeFrom(
      registry,
      'rtcmesh_dials_pending',
      'Dials waiting for an answer or trickling candidates.',
      () => this.pending,
    );
    countedFrom(
      registry,
      'rtcmesh_dials_started_total',
      'Dials forwarded to a callee.',
      () => this.stats.dialsStarted,
    );
    countedFrom(
      registry,
      'rtcmesh_dials_woken_total',
      'Dials to a node without a session, woken by push.',
      () => this.stats.dialsWoken,
    );
    countedFrom(
      registry,
      'rtcmesh_dials_answered_total',
      'Dials the callee answered.',
      () => this.stats.dialsAnswered,
    );
    const ring = latencyHistogram(
      registry,
      'rtcmesh_dial_ring_seconds',
      'From a dial reaching the gateway to the callee being handed the call (a woken callee: once it connects).',
    );
    const answer = latencyHistogram(
      registry,
      'rtcmesh_dial_answer_seconds',
      "From a dial reaching the gateway to the callee's answer going back to the caller.",
    );
    this.timing = {
      ringing: (dial) => ring.observe((performance.now() - dial.startedAt) / 1000),
      answered: (dial) => answer.observe((performance.now() - dial.startedAt) / 1000),
    };
  }

  private timing: { ringing(dial: Dial): void; answered(dial: Dial): void } | undefined;

  get pending(): number {
    return this.dials.size;
  }

  /** Resolves a node ID or mesh IPv6 address to a registered node ID. */
  async resolve(to: string): Promise<NodeId | undefined> {
    return (await this.registration(to))?.id;
  }

  /** The registration of a node named by ID or mesh IPv6 address. */
  private async registration(to: string): Promise<Registration | undefined> {
    const id = parseNodeId(to);
    if (id) return this.registry.get(id);
    if (!idPrefixFromMeshIp6(to)) return undefined;
    return this.registry.findByIp6(to);
  }

  /** Starts a dial; failures are delivered to the caller as `dial-failed`. */
  async dial(caller: DialParty, msg: Extract<NodeToGateway, { t: 'dial' }>): Promise<void> {
    const startedAt = performance.now();
    const fail = (code: DialErrorCode, message: string) => {
      this.count(code);
      caller.deliver({ t: 'dial-failed', dialId: msg.dialId, code, message });
    };
    if (this.dials.has(msg.dialId)) return fail('invalid', 'that dial id is in use');
    const isId = parseNodeId(msg.to) !== undefined;
    if (!isId && !idPrefixFromMeshIp6(msg.to))
      return fail('invalid', `"${msg.to}" is neither a node ID nor a mesh IPv6 address`);
    let callerName: string | undefined;
    try {
      const verified = await this.records.verify(msg.record, {
        expectedId: caller.id,
        fingerprintsInUse: fingerprintsInSdp(msg.offer),
      });
      callerName = verified.name;
    } catch (err) {
      if (err instanceof IdentityError)
        return fail('identity', `your record was refused: ${err.message}`);
      throw err;
    }
    const registration = (await this.registration(msg.to)) ?? (await this.remote?.lookup?.(msg.to));
    if (!registration) return fail('not-found', `no node ${msg.to} is known to this gateway`);
    const calleeId = registration.id;
    if (calleeId === caller.id) return fail('invalid', 'a node cannot dial itself');
    const callee = this.findSession(calleeId) ?? (await this.remote?.find(registration));
    const wake = this.wake;
    if (!callee && !(registration.push && wake))
      return fail('offline', `node ${calleeId} is not connected`);
    if (this.unanswered >= this.limits.maxPendingDials)
      return fail('busy', 'the gateway has too many calls in progress');
    const refusal = this.shareRefusal(caller, calleeId);
    if (refusal) return fail(refusal.code, refusal.message);
    const dial = {
      id: msg.dialId,
      caller,
      callee: callee ?? { id: calleeId, deliver: () => {} },
      calleeAttached: callee !== undefined,
      answered: false,
      candidates: new Map<NodeId, number>(),
      timer: setTimeout(() => this.expire(msg.dialId), this.limits.dialTimeoutMs),
      incoming: {
        t: 'incoming',
        dialId: msg.dialId,
        from: caller.id,
        offer: msg.offer,
        record: msg.record,
        ...(caller.trickles === false ? { gathered: true } : {}),
      } satisfies IncomingDialMessage,
      callerCandidates: [],
      startedAt,
    };
    this.dials.set(dial.id, dial);
    this.unanswered++;
    this.adjustShares(dial, 1);
    this.stats.dialsStarted++;
    // Other gateways of a cluster may be asked about this dial over HTTP (a woken node's
    // service worker declines at its own gateway): they find its owner through Redis.
    if (this.remote && !this.findSession(calleeId))
      void this.remote
        .dialStarted(dial.id, this.limits.dialTimeoutMs + TRICKLE_AFTER_ANSWER_MS)
        .catch(() => undefined);
    if (callee) {
      callee.deliver(dial.incoming);
      this.timing?.ringing(dial);
      caller.deliver({ t: 'ringing', dialId: dial.id });
      return;
    }
    if (!wake) return;
    this.stats.dialsWoken++;
    caller.deliver({ t: 'waking', dialId: dial.id });
    const now = Date.now();
    const problem = await wake(registration, {
      t: 'incoming',
      dialId: dial.id,
      from: caller.id,
      ...(callerName !== undefined ? { name: callerName } : {}),
      sentAt: now,
      expiresAt: now + this.limits.dialTimeoutMs,
    }).catch((err: unknown) => (err instanceof Error ? err.message : String(err)));
    if (problem && this.dials.get(dial.id) === dial && !dial.calleeAttached && !dial.answered)
      this.finish(
        dial,
        'offline',
        `node ${calleeId} is not connected and could not be woken: ${problem}`,
      );
  }

  /**
   * A node's session opened: calls waiting for it (woken by push, or rung on a session it
   * has since replaced) go to the new session, with the caller's candidates so far.
   */
  calleeConnected(party: DialParty): void {
    for (const dial of this.dials.values()) {
      if (dial.answered || dial.callee.id !== party.id) continue;
      const wasWaiting = !dial.calleeAttached;
      dial.callee = party;
      dial.calleeAttached = true;
      party.deliver(dial.incoming);
      if (wasWaiting) this.timing?.ringing(dial);
      for (const candidate of dial.callerCandidates)
        party.deliver({ t: 'candidate', dialId: dial.id, candidate });
      if (wasWaiting) dial.caller.deliver({ t: 'ringing', dialId: dial.id });
    }
  }

  /** A callee's HTTP request about a dial this gateway owns (its record already checked). */
  settleHttp(calleeId: NodeId, dialId: string, request: HttpDialAction): HttpDialOutcome {
    if (request.action === 'get') return this.pendingFor(calleeId, dialId);
    if (request.action === 'answer') {
      const { answer, record } = request;
      return this.settleOverHttp(calleeId, { t: 'answer', dialId, answer, record });
    }
    const { reason, message } = request;
    return this.settleOverHttp(calleeId, {
      t: 'reject',
      dialId,
      reason,
      ...(message !== undefined ? { message } : {}),
    });
  }

  /**
   * GET /v1/dials/:id: the call waiting for node `calleeId`, or answered by it a little
   * while ago (TRICKLE_AFTER_ANSWER_MS), with the caller's candidates so far.
   */
  pendingFor(calleeId: NodeId, dialId: string): DialLookup<PendingDialResponse> {
    const dial = this.calleeDial(calleeId, dialId, { answered: true });
    if (!dial.ok) return dial;
    const { from, offer, record } = dial.value.incoming;
    const candidates = dial.value.callerCandidates.filter((c): c is IceCandidate => c !== null);
    return { ok: true, value: { dialId, from, offer, record, candidates } };
  }

  /** POST /v1/dials/:id/answer and …/reject: the callee's word over HTTP. */
  settleOverHttp(
    calleeId: NodeId,
    msg: Extract<NodeToGateway, { t: 'answer' } | { t: 'reject' }>,
  ): DialLookup<null> {
    const dial = this.calleeDial(calleeId, msg.dialId);
    if (!dial.ok) return dial;
    // Over HTTP the callee has no channel: nothing more reaches it (its answer is gathered).
    dial.value.calleeAttached = true;
    this.handle({ id: calleeId, deliver: () => {} }, msg);
    return { ok: true, value: null };
  }

  private calleeDial(
    calleeId: NodeId,
    dialId: string,
    allow: { answered?: boolean } = {},
  ): DialLookup<Dial> {
    const dial = this.dials.get(dialId);
    // Someone else's dial is as unknown as a missing one.
    if (!dial || dial.callee.id !== calleeId)
      return {
        ok: false,
        status: 404,
        code: 'not-found',
        message: `no call ${dialId} is waiting for you (it may have ended)`,
      };
    if (dial.answered && !allow.answered)
      return { ok: false, status: 409, code: 'answered', message: `call ${dialId} was answered` };
    return { ok: true, value: dial };
  }

  /** A message about a dial in progress, from one of its parties. */
  handle(from: DialParty, msg: InDial<NodeToGateway>): void {
    const dial = this.dials.get(msg.dialId);
    const isCaller = dial?.caller.id === from.id;
    const isCallee = dial?.callee.id === from.id;
    if (!dial || (!isCaller && !isCallee)) {
      // Late candidates after a dial ended are normal; anything else is worth saying.
      if (msg.t !== 'candidate')
        from.deliver({
          t: 'error',
          code: 'unknown-dial',
          message: `no dial ${msg.dialId} of yours is in progress`,
        });
      return;
    }
    switch (msg.t) {
      case 'candidate': {
        const sent = (dial.candidates.get(from.id) ?? 0) + 1;
        dial.candidates.set(from.id, sent);
        if (sent > MAX_CANDIDATES) return;
        // Kept after the answer too: a callee over HTTP has no channel for them, and asks
        // (GET /v1/dials/:id). A Node caller gives out none before the answer is applied.
        if (isCaller) dial.callerCandidates.push(msg.candidate);
        (isCaller ? dial.callee : dial.caller).deliver({
          t: 'candidate',
          dialId: dial.id,
          candidate: msg.candidate,
        });
        return;
      }
      case 'answer':
        if (!isCallee || dial.answered) {
          from.deliver({ t: 'error', code: 'invalid', message: 'only the callee answers, once' });
          return;
        }
        dial.answered = true;
        this.stats.dialsAnswered++;
        this.timing?.answered(dial);
        this.releasePending(dial);
        clearTimeout(dial.timer);
        dial.timer = setTimeout(() => this.dials.delete(dial.id), TRICKLE_AFTER_ANSWER_MS);
        dial.caller.deliver({
          t: 'answer',
          dialId: dial.id,
          answer: msg.answer,
          record: msg.record,
        });
        return;
      case 'reject': {
        if (!isCallee || dial.answered) return;
        const code: DialErrorCode =
          msg.reason === 'declined' ? 'declined' : msg.reason === 'busy' ? 'busy' : 'identity';
        const text =
          msg.reason === 'declined'
            ? `node ${dial.callee.id} declined the call`
            : (msg.message ?? `node ${dial.callee.id} refused the call (${msg.reason})`);
        this.finish(dial, code, text);
        return;
      }
      case 'cancel':
        if (isCaller) {
          if (!dial.answered)
            dial.callee.deliver({ t: 'cancel', dialId: dial.id, reason: 'the caller hung up' });
          this.finish(dial, 'cancelled', 'cancelled', false);
        }
        return;
    }
  }

  /** Cluster mode: the remote callee of a dial is not (or no longer) reachable. */
  remoteGone(calleeId: NodeId, dialId: string): void {
    const dial = this.dials.get(dialId);
    if (!dial || dial.answered || dial.callee.id !== calleeId || !dial.calleeAttached) return;
    this.finish(dial, 'offline', `node ${calleeId} went away before answering`);
  }

  /** A party went away: end its dials. */
  partyGone(party: DialParty): void {
    for (const dial of [...this.dials.values()]) {
      if (dial.answered) continue;
      if (dial.caller === party) {
        dial.callee.deliver({ t: 'cancel', dialId: dial.id, reason: 'the caller went away' });
        this.finish(dial, 'cancelled', 'caller went away', false);
      } else if (dial.callee === party) {
        this.finish(dial, 'offline', `node ${party.id} went away before answering`);
      }
    }
  }

  close(): void {
    for (const dial of this.dials.values()) clearTimeout(dial.timer);
    this.dials.clear();
    this.shares.clear();
    this.unanswered = 0;
  }

  private expire(dialId: string): void {
    const dial = this.dials.get(dialId);
    if (!dial || dial.answered) return;
    dial.callee.deliver({ t: 'cancel', dialId, reason: 'nobody answered in time' });
    const woken = dial.calleeAttached ? '' : ' (it was sent a push but did not come online)';
    this.finish(
      dial,
      'timeout',
      `node ${dial.callee.id} did not answer within ${Math.round(this.limits.dialTimeoutMs / 1000)} s${woken}`,
    );
  }

  private finish(dial: Dial, code: DialErrorCode, message: string, tellCaller = true): void {
    clearTimeout(dial.timer);
    if (!this.dials.delete(dial.id)) return;
    if (!dial.answered) this.releasePending(dial);
    this.count(code);
    if (tellCaller) dial.caller.deliver({ t: 'dial-failed', dialId: dial.id, code, message });
  }

  private releasePending(dial: Dial): void {
    this.unanswered--;
    this.adjustShares(dial, -1);
  }

  /** The shares a dial from `caller` to `calleeId` counts against, with their limits. */
  private sharesOf(caller: DialParty, calleeId: NodeId) {
    const l = this.limits;
    const source = caller.source ?? `id:${caller.id}`;
    return {
      caller: { key: `caller ${caller.id}`, max: l.maxPendingDialsPerNode },
      callee: { key: `callee ${calleeId}`, max: l.maxPendingDialsPerCallee },
      pair: { key: `pair ${caller.id} ${calleeId}`, max: l.maxPendingDialsPerPair },
      source: { key: `source ${source}`, max: l.maxPendingDialsPerIp },
      sourcePair: { key: `source ${source} ${calleeId}`, max: l.maxPendingDialsPerIpAndCallee },
    };
  }

  /** Why a new dial may not start (a share is full), or undefined. */
  private shareRefusal(
    caller: DialParty,
    calleeId: NodeId,
  ): { code: DialErrorCode; message: string } | undefined {
    const s = this.sharesOf(caller, calleeId);
    const full = (share: { key: string; max: number }) =>
      (this.shares.get(share.key) ?? 0) >= share.max;
    if (full(s.caller))
      return { code: 'rate-limited', message: 'you have too many calls in progress' };
    if (full(s.pair) || full(s.sourcePair))
      return {
        code: 'rate-limited',
        message: `you already have too many calls ringing node ${calleeId}`,
      };
    if (full(s.source))
      return { code: 'rate-limited', message: 'your address has too many calls in progress' };
    if (full(s.callee))
      return { code: 'busy', message: `node ${calleeId} has too many calls in progress` };
    return undefined;
  }

  private adjustShares(dial: Dial, by: number): void {
    for (const { key } of Object.values(this.sharesOf(dial.caller, dial.callee.id))) {
      const n = (this.shares.get(key) ?? 0) + by;
      if (n <= 0) this.shares.delete(key);
      else this.shares.set(key, n);
    }
  }

  private count(code: DialErrorCode): void {
    this.stats.dialsFailed[code] = (this.stats.dialsFailed[code] ?? 0) + 1;
  }
}

type InDial<T> = Exclude<T, { t: 'dial' } | { t: 'ping' }>;

export type { IceCandidate };
