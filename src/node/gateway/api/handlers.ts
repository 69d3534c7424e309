/**
 * What each API route does (DESIGN §2), given a caller the guard already checked and a body
 * the router already validated: connect a session, register for push, dial over HTTP, and a
 * callee's HTTP requests about a dial.
 */
import {
  createNodeRecord,
  fingerprintsInSdp,
  type NodeId,
  type NodeIdentity,
  type RecordCache,
  type VerifiedRecord,
} from '../../../core/identity/index.ts';
import type { ApiResponse } from '../../../core/protocol/api.ts';
import type { GatewayInfo, GatewayToNode } from '../../../core/protocol/messages.ts';
import { type Registry, registrationOf } from '../../registry/index.ts';
import type { ClusterBus } from '../cluster.ts';
import type { GatewayConfig } from '../config.ts';
import { HttpError } from '../http.ts';
import type { PollTable } from '../polls.ts';
import { pushEndpointProblem } from '../push.ts';
import type { RtcEndpoint } from '../rtc-endpoint.ts';
import type { SessionTable } from '../sessions.ts';
import type { DialParty, HttpDialAction, Signaling } from '../signaling.ts';
import { dialHttpError, httpErrorOf } from './errors.ts';
import type { RequestGuard } from './guard.ts';
import type { ApiCall, ApiHandlers } from './router.ts';

export interface HandlerDeps {
  config: GatewayConfig;
  identity: NodeIdentity;
  /** The gateway's DTLS certificate fingerprint, listed in the record it answers with. */
  fingerprint: string;
  rtc: RtcEndpoint;
  registry: Registry;
  sessions: SessionTable;
  polls: PollTable;
  signaling: Signaling;
  cluster: ClusterBus | undefined;
  guard: RequestGuard;
  records: RecordCache;
  info: () => GatewayInfo;
  iceServersFor: (id: NodeId) => ApiResponse<'connect'>['iceServers'];
  /** Why a dial could not be routed, in words for the caller (logged in full). */
  routeFailure: (err: unknown) => string;
  /** POST /v1/connect to an open session, in seconds. */
  observeConnect: (seconds: number) => void;
}

export function apiHandlers(d: HandlerDeps): ApiHandlers {
  /** A record signed by the requester, checked; an HTTP error says what is wrong with it. */
  const verifiedRecord = async (jws: string, id: NodeId, sdp?: string): Promise<VerifiedRecord> => {
    try {
      return await d.records.verify(jws, {
        expectedId: id,
        ...(sdp !== undefined ? { fingerprintsInUse: fingerprintsInSdp(sdp) } : {}),
      });
    } catch (err) {
      throw httpErrorOf(err, 'record');
    }
  };

  /** A callee's HTTP request about a dial, settled here or (cluster) where the dial lives. */
  const settle = async (calleeId: NodeId, dialId: string, request: HttpDialAction) => {
    let outcome = d.signaling.settleHttp(calleeId, dialId, request);
    if (!outcome.ok && outcome.status === 404 && d.cluster)
      outcome = (await d.cluster.httpDial(calleeId, dialId, request)) ?? outcome;
    if (!outcome.ok) throw new HttpError(outcome.status, outcome.code, outcome.message);
    return outcome.value;
  };

  return {
    info: async () => d.info(),

    /** A node's gathered offer in, the gateway's answer out: a session with a ctl channel. */
    connect: async ({ req, caller, body }: ApiCall<'connect'>) => {
      const started = performance.now();
      const limits = d.config.limits;
      const record = await verifiedRecord(body.record, caller.id, body.offer);
      if (!d.sessions.has(caller.id) && d.sessions.size >= limits.maxSessions)
        throw new HttpError(503, 'full', 'this gateway has no room for another session');
      const source = d.guard.clientKey(req);
      if (d.sessions.connectingFrom(source) >= limits.maxConnectingPerIp)
        throw new HttpError(429, 'rate-limited', 'too many connects in progress from your address');
      const now = Date.now();
      const existing = await d.registry.get(caller.id, now);
      await d.guard.admitNode(req, existing);
      let association: Awaited<ReturnType<RtcEndpoint['accept']>>;
      try {
        association = await d.rtc.accept(body.offer, caller.id.slice(0, 8));
      } catch (err) {
        throw new HttpError(
          400,
          'bad-offer',
          `the offer could not be answered: ${(err as Error).message}`,
        );
      }
      d.sessions.open(caller.id, record, source, association, () =>
        d.observeConnect((performance.now() - started) / 1000),
      );
      try {
        await d.registry.upsert(
          registrationOf(record, {
            gatewayId: existing?.gatewayId ?? null,
            lastSeen: now,
            expiresAt: now + limits.registrationTtlMs,
            push: existing?.push ?? null,
          }),
        );
      } catch (err) {
        // Cluster mode with Redis away: the session still works here, and is registered once
        // Redis is back (SessionTable.assert).
        if (httpErrorOf(err).status !== 503) throw err;
        d.sessions.registryError('registering a session', err);
      }
      return {
        answer: association.answer,
        record: await createNodeRecord(d.identity, {
          fingerprints: [d.fingerprint],
          name: 'gateway',
        }),
        gateway: d.identity.id,
        iceServers: d.iceServersFor(caller.id),
      };
    },

    /** A node's record and push subscription, without a session; a null `push` removes it. */
    register: async ({ req, caller, body }: ApiCall<'register'>) => {
      const record = await verifiedRecord(body.record, caller.id);
      if (body.push) {
        const problem = pushEndpointProblem(
          body.push.endpoint,
          d.config.push.allowPrivateEndpoints,
        );
        if (problem) throw new HttpError(400, 'bad-push-endpoint', problem);
      }
      const now = Date.now();
      const existing = await d.registry.get(caller.id, now);
      await d.guard.admitNode(req, existing);
      const expiresAt = now + d.config.limits.registrationTtlMs;
      await d.registry.upsert(
        registrationOf(record, {
          gatewayId: existing?.gatewayId ?? null,
          lastSeen: now,
          expiresAt,
          push: body.push,
        }),
      );
      return {
        id: caller.id,
        push: body.push !== null,
        expiresAt,
        iceServers: d.iceServersFor(caller.id),
      };
    },

    /** For nodes without a session: waits for the answer (bounded by the dial timeout). */
    dial: async ({ req, res, caller, body }: ApiCall<'dial'>) => {
      const dialId = Buffer.from(crypto.getRandomValues(new Uint8Array(16))).toString('base64url');
      const outcome = await new Promise<Extract<GatewayToNode, { t: 'answer' | 'dial-failed' }>>(
        (resolve) => {
          const party: DialParty = {
            id: caller.id,
            source: d.guard.clientKey(req),
            trickles: false,
            deliver: (msg) => {
              if (msg.t === 'answer' || msg.t === 'dial-failed') resolve(msg);
            },
          };
          // The caller hung up: end the dial so the callee stops ringing.
          res.once('close', () => {
            if (!res.writableFinished) d.signaling.handle(party, { t: 'cancel', dialId });
          });
          d.signaling.dial(party, { t: 'dial', dialId, ...body }).catch((err: unknown) => {
            resolve({ t: 'dial-failed', dialId, code: 'gateway', message: d.routeFailure(err) });
          });
        },
      );
      if (outcome.t === 'dial-failed') throw dialHttpError(outcome.code, outcome.message);
      return { dialId, answer: outcome.answer, record: outcome.record };
    },

    /** HTTPS-only accept: the calls for a node without a session, by long-poll. */
    pollDials: async ({ req, res, caller }: ApiCall<'pollDials'>) => {
      const waitMs = pollWaitOf(req.url, d.config.limits.maxPollWaitMs);
      if (!(await d.registry.get(caller.id)))
        throw new HttpError(
          404,
          'not-registered',
          `node ${caller.id} is not registered: POST /v1/register first, so callers can find it`,
        );
      const closed = new AbortController();
      res.once('close', () => closed.abort());
      return d.polls.poll(caller.id, d.guard.clientKey(req), waitMs, closed.signal);
    },

    pendingDial: async ({ caller, id }: ApiCall<'pendingDial'>) => {
      const value = await settle(caller.id, id, { action: 'get' });
      if (!value) throw new HttpError(404, 'not-found', `no call ${id} is waiting for you`);
      return value;
    },

    answerDial: async ({ caller, id, body }: ApiCall<'answerDial'>) => {
      await verifiedRecord(body.record, caller.id, body.answer);
      await settle(caller.id, id, { action: 'answer', ...body });
      return { dialId: id, answered: true as const };
    },

    rejectDial: async ({ caller, id, body }: ApiCall<'rejectDial'>) => {
      await settle(caller.id, id, { action: 'reject', ...body });
      return { dialId: id, rejected: true as const };
    },
  };
}

/** Default wait of a long-poll that names none. */
const DEFAULT_POLL_WAIT_MS = 25_000;

/** The `wait` of GET /v1/dials?wait=25s (a duration: 25s, 500ms, or seconds), capped. */
function pollWaitOf(url: string | undefined, maxMs: number): number {
  const text = new URL(url ?? '/', 'http://gateway').searchParams.get('wait');
  if (text === null) return Math.min(DEFAULT_POLL_WAIT_MS, maxMs);
  const m = /^(\d{1,6})(ms|s)?$/.exec(text);
  if (!m)
    throw new HttpError(
      400,
      'bad-wait',
      `wait must be a duration such as 25s or 500ms, not "${text.slice(0, 32)}"`,
    );
  const ms = Number(m[1]) * (m[2] === 'ms' ? 1 : 1000);
  return Math.min(ms, maxMs);
}
