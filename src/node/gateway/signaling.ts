/**
 * Dial routing (DESIGN §2): finds the callee, forwards the offer, candidates, the answer or
 * the refusal, and ends every dial within a bound. The gateway checks the caller's record
 * only to catch mistakes early; the callee and the caller check everything themselves.
 */
import {
  fingerprintsInSdp,
  IdentityError,
  idPrefixFromMeshIp6,
  type NodeId,
  parseNodeId,
  verifyNodeRecord,
} from '../../core/identity/index.ts';
import type {
  DialErrorCode,
  GatewayToNode,
  IceCandidate,
  NodeToGateway,
} from '../../core/protocol/messages.ts';
import type { Registry } from '../registry/index.ts';
import type { GatewayLimits } from './limits.ts';

/** Whoever takes part in a dial: a node's ctl session, or an HTTP request waiting for its answer. */
export interface DialParty {
  readonly id: NodeId;
  deliver(msg: GatewayToNode): void;
}

interface Dial {
  id: string;
  caller: DialParty;
  callee: DialParty;
  answered: boolean;
  timer: ReturnType<typeof setTimeout>;
}

/** After an answer, candidates still trickle for a while. */
const TRICKLE_AFTER_ANSWER_MS = 30_000;
/** Candidates one side may send in one dial. */
const MAX_CANDIDATES = 64;

export interface SignalingStats {
  dialsStarted: number;
  dialsAnswered: number;
  dialsFailed: Partial<Record<DialErrorCode, number>>;
}

export class Signaling {
  private readonly dials = new Map<string, Dial & { candidates: Map<NodeId, number> }>();
  private readonly pendingPerNode = new Map<NodeId, number>();
  readonly stats: SignalingStats = { dialsStarted: 0, dialsAnswered: 0, dialsFailed: {} };

  constructor(
    private readonly registry: Registry,
    private readonly findSession: (id: NodeId) => DialParty | undefined,
    private readonly limits: GatewayLimits,
  ) {}

  get pending(): number {
    return this.dials.size;
  }

  /** Resolves a node ID or mesh IPv6 address to a registered node ID. */
  async resolve(to: string): Promise<NodeId | undefined> {
    const id = parseNodeId(to);
    if (id) return (await this.registry.get(id)) ? id : undefined;
    if (!idPrefixFromMeshIp6(to)) return undefined;
    const reg = await this.registry.findByIp6(to);
    return reg?.id;
  }

  /** Starts a dial; failures are delivered to the caller as `dial-failed`. */
  async dial(caller: DialParty, msg: Extract<NodeToGateway, { t: 'dial' }>): Promise<void> {
    const fail = (code: DialErrorCode, message: string) => {
      this.count(code);
      caller.deliver({ t: 'dial-failed', dialId: msg.dialId, code, message });
    };
    if (this.dials.has(msg.dialId)) return fail('invalid', 'that dial id is in use');
    const isId = parseNodeId(msg.to) !== undefined;
    if (!isId && !idPrefixFromMeshIp6(msg.to))
      return fail('invalid', `"${msg.to}" is neither a node ID nor a mesh IPv6 address`);
    try {
      await verifyNodeRecord(msg.record, {
        expectedId: caller.id,
        fingerprintsInUse: fingerprintsInSdp(msg.offer),
      });
    } catch (err) {
      if (err instanceof IdentityError)
        return fail('identity', `your record was refused: ${err.message}`);
      throw err;
    }
    const calleeId = await this.resolve(msg.to);
    if (!calleeId) return fail('not-found', `no node ${msg.to} is known to this gateway`);
    if (calleeId === caller.id) return fail('invalid', 'a node cannot dial itself');
    const callee = this.findSession(calleeId);
    if (!callee) return fail('offline', `node ${calleeId} is not connected`);
    if (this.dials.size >= this.limits.maxPendingDials)
      return fail('busy', 'the gateway has too many calls in progress');
    if ((this.pendingPerNode.get(caller.id) ?? 0) >= this.limits.maxPendingDialsPerNode) {
      return fail('rate-limited', 'you have too many calls in progress');
    }
    if ((this.pendingPerNode.get(calleeId) ?? 0) >= this.limits.maxPendingDialsPerNode) {
      return fail('busy', `node ${calleeId} has too many calls in progress`);
    }
    const dial = {
      id: msg.dialId,
      caller,
      callee,
      answered: false,
      candidates: new Map<NodeId, number>(),
      timer: setTimeout(() => this.expire(msg.dialId), this.limits.dialTimeoutMs),
    };
    this.dials.set(dial.id, dial);
    this.adjustPending(caller.id, 1);
    this.adjustPending(calleeId, 1);
    this.stats.dialsStarted++;
    callee.deliver({
      t: 'incoming',
      dialId: dial.id,
      from: caller.id,
      offer: msg.offer,
      record: msg.record,
    });
    caller.deliver({ t: 'ringing', dialId: dial.id });
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
  }

  private expire(dialId: string): void {
    const dial = this.dials.get(dialId);
    if (!dial || dial.answered) return;
    dial.callee.deliver({ t: 'cancel', dialId, reason: 'nobody answered in time' });
    this.finish(
      dial,
      'timeout',
      `node ${dial.callee.id} did not answer within ${Math.round(this.limits.dialTimeoutMs / 1000)} s`,
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
    this.adjustPending(dial.caller.id, -1);
    this.adjustPending(dial.callee.id, -1);
  }

  private adjustPending(id: NodeId, by: number): void {
    const n = (this.pendingPerNode.get(id) ?? 0) + by;
    if (n <= 0) this.pendingPerNode.delete(id);
    else this.pendingPerNode.set(id, n);
  }

  private count(code: DialErrorCode): void {
    this.stats.dialsFailed[code] = (this.stats.dialsFailed[code] ?? 0) + 1;
  }
}

type InDial<T> = Exclude<T, { t: 'dial' } | { t: 'ping' }>;

export type { IceCandidate };
