/**
 * The gateway API client (src/core/api) against real gateways in this process: every error
 * the API can answer comes back as a GatewayHttpError with its status and code; unreachable
 * gateways, 502–504 answers and timeouts fail over to the next gateway; dial outcomes do not.
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  GatewayApi,
  GatewayHttpError,
  GatewayProtocolError,
  GatewayUnreachable,
} from '../src/core/api/index.ts';
import { createNodeRecord, type NodeIdentity } from '../src/core/identity/index.ts';
import type { Gateway } from '../src/node/gateway/gateway.ts';
import { startGatewayInProcess } from './support/gateway-in-process.ts';
import { makeNodeIdentity, startNodeNode } from './support/node-node.ts';
import { selfSigned } from './support/pebble.ts';

const push = {
  endpoint: 'https://push.example.invalid/send/abc',
  keys: { p256dh: `B${'A'.repeat(86)}`, auth: 'A'.repeat(22) },
};

/** A made identity and its record (with its real certificate's fingerprint). */
async function node() {
  const made = await makeNodeIdentity();
  const record = await createNodeRecord(made.identity, {
    fingerprints: [made.certificate.fingerprint],
  });
  return { ...made, record };
}

/** The error a promise rejects with (fails when it resolves). */
async function failure(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    (value) => {
      throw new Error(`expected a failure, got ${JSON.stringify(value)}`);
    },
    (err: unknown) => err,
  );
}

async function httpError(promise: Promise<unknown>): Promise<GatewayHttpError> {
  const err = await failure(promise);
  expect(err).toBeInstanceOf(GatewayHttpError);
  return err as GatewayHttpError;
}

/** A plain HTTP server that answers every request with `status` and `body` (a proxy, a liar). */
async function fakeServer(status: number, body: string): Promise<{ url: string; server: Server }> {
  const server = createServer((_req, res) => {
    res.writeHead(status, { 'content-type': 'text/plain' });
    res.end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

/** A fetch that records the URLs it is asked for. */
function spyFetch(seen: string[], inner: typeof fetch = fetch): typeof fetch {
  return (input, init) => {
    seen.push(String(input));
    return inner(input, init);
  };
}

/** A gathered offer from a real peer connection of `made`, for POST /v1/dial. */
async function offerOf(made: Awaited<ReturnType<typeof node>>) {
  const pc = made.rtc.createPeerConnection({ iceServers: [] });
  pc.createDataChannel('mesh', { negotiated: true, id: 0 });
  await pc.setLocalDescription();
  return { pc, offer: pc.localDescription?.sdp ?? '' };
}

describe('GatewayApi against real gateways', { timeout: 60_000 }, () => {
  let gateway: Gateway;
  let full: Gateway;
  const servers: { close(): unknown }[] = [];
  beforeAll(async () => {
    gateway = await startGatewayInProcess((c) => {
      c.limits.dialTimeoutMs = 1500;
    });
    full = await startGatewayInProcess((c) => {
      c.limits.maxRegistrations = 0;
    });
  });
  afterAll(async () => {
    for (const s of servers) s.close();
    await full?.stop(100);
    await gateway?.stop(100);
  });

  const api = (
    identity?: NodeIdentity,
    more: Partial<ConstructorParameters<typeof GatewayApi>[0]> = {},
  ) =>
    new GatewayApi({ gateways: [gateway.publicUrl], ...(identity ? { identity } : {}), ...more });

  it('info: the typed, validated response', async () => {
    const info = await api().info();
    expect(info.id).toBe(gateway.identity.id);
    expect(info.vapidPublicKey).toMatch(/^[A-Za-z0-9_-]{80,}$/);
  });

  it('register: a fresh token per request, the typed response', async () => {
    const a = await node();
    const client = api(a.identity);
    const first = await client.register({ record: a.record, push: null });
    expect(first).toMatchObject({ id: a.identity.id, push: false });
    // Tokens are single-use: the second call must sign anew to pass.
    expect(await client.register({ record: a.record, push })).toMatchObject({ push: true });
  });

  it('signed routes need an identity, and dial ids are checked before any request', async () => {
    const seen: string[] = [];
    const client = api(undefined, { fetch: spyFetch(seen) });
    await expect(client.pendingDial('x'.repeat(22))).rejects.toThrow(/signed/);
    await expect(api((await node()).identity).pendingDial('../info')).rejects.toThrow(/dial id/);
    expect(seen).toEqual([]);
  });

  it('every refusal comes back as a GatewayHttpError with its status and code', async () => {
    const a = await node();
    const b = await node();
    const client = api(a.identity);
    await client.register({ record: a.record, push: null });
    const unknownDial = 'x'.repeat(22);
    const cases: [() => Promise<unknown>, number, string | RegExp][] = [
      [() => client.pendingDial(unknownDial), 404, 'not-found'],
      [() => client.rejectDial(unknownDial, { reason: 'declined' }), 404, 'not-found'],
      // An answer whose SDP carries no fingerprint from the record (checked before the dial).
      [
        () => client.answerDial(unknownDial, { answer: 'v=0 an answer', record: a.record }),
        403,
        'record-fingerprint-not-listed',
      ],
      // Someone else's record.
      [() => client.register({ record: b.record, push: null }), 403, /^record-/],
      [
        () =>
          client.register({
            record: a.record,
            push: { ...push, endpoint: 'http://127.0.0.1:9/push' },
          }),
        400,
        'bad-push-endpoint',
      ],
      // What the types forbid, sent anyway: the gateway's schema refuses it.
      [() => client.rejectDial(unknownDial, { reason: 'maybe' } as never), 400, 'invalid'],
      // An offer whose SDP carries no fingerprint from the caller's record.
      [
        () => client.dial({ to: b.identity.id, offer: 'v=0 an offer', record: a.record }),
        403,
        'identity',
      ],
    ];
    for (const [call, status, code] of cases) {
      const err = await httpError(call());
      expect({ status: err.status, code: err.code, gateway: err.gateway }).toEqual({
        status,
        code: typeof code === 'string' ? code : expect.stringMatching(code),
        gateway: gateway.publicUrl,
      });
      expect(err.message.length).toBeGreaterThan(0);
    }
  });

  it('token refusals: replayed and missing tokens are 401 with their codes', async () => {
    const a = await node();
    let kept: string | undefined;
    // Replays the first token it saw on every later request.
    const replaying: typeof fetch = (input, init) => {
      const headers = { ...(init?.headers as Record<string, string>) };
      kept ??= headers.authorization;
      if (kept) headers.authorization = kept;
      return fetch(input, { ...init, headers });
    };
    const client = api(a.identity, { fetch: replaying });
    await client.register({ record: a.record, push: null });
    const replayed = await httpError(client.register({ record: a.record, push: null }));
    expect([replayed.status, replayed.code]).toEqual([401, 'token-replayed']);
    const stripping: typeof fetch = (input, init) => {
      const { authorization: _, ...headers } = (init?.headers ?? {}) as Record<string, string>;
      return fetch(input, { ...init, headers });
    };
    const missing = await httpError(
      api(a.identity, { fetch: stripping }).register({ record: a.record, push: null }),
    );
    expect([missing.status, missing.code]).toEqual([401, 'token-malformed']);
  });

  it('dial outcomes: not-found, offline, declined, and a timeout that is not failed over', async () => {
    const a = await node();
    const client = api(a.identity);
    // Registered but with no session and no push: offline.
    const sleeper = await node();
    await api(sleeper.identity).register({ record: sleeper.record, push: null });
    const { pc, offer } = await offerOf(a);
    try {
      const nobody = await node();
      const notFound = await httpError(
        client.dial({ to: nobody.identity.id, offer, record: a.record }),
      );
      expect([notFound.status, notFound.code]).toEqual([404, 'not-found']);

      const offline = await httpError(
        client.dial({ to: sleeper.identity.id, offer, record: a.record }),
      );
      expect([offline.status, offline.code]).toEqual([409, 'offline']);

      const decliner = await startNodeNode(gateway.publicUrl, { decide: () => 'decline' });
      const declined = await httpError(
        client.dial({ to: decliner.identity.id, offer, record: a.record }),
      );
      expect([declined.status, declined.code]).toEqual([403, 'declined']);
      decliner.node.stop();

      // Nobody answers: the gateway's 504 `timeout` is the call's outcome, not the gateway's
      // failure, so the second gateway is never asked.
      const silent = await startNodeNode(gateway.publicUrl, { decide: () => 'ask' });
      const seen: string[] = [];
      const timeout = await httpError(
        new GatewayApi({
          gateways: [gateway.publicUrl, full.publicUrl],
          identity: a.identity,
          fetch: spyFetch(seen),
        }).dial({ to: silent.identity.id, offer, record: a.record }),
      );
      expect([timeout.status, timeout.code]).toEqual([504, 'timeout']);
      expect(seen.every((url) => url.startsWith(gateway.publicUrl))).toBe(true);
      silent.node.stop();
    } finally {
      pc.close();
    }
  });

  it('gateways with other limits: not-allowed, too-large, rate-limited', async () => {
    const allowed = await node();
    const stranger = await node();
    const strict = await startGatewayInProcess((c) => {
      c.allow = new Set([allowed.identity.id]);
      c.limits.maxBodyBytes = 256;
    });
    const stingy = await startGatewayInProcess((c) => {
      c.limits.newNodesPerIp = { perSecond: 0.001, burst: 1 };
    });
    try {
      const at = (g: Gateway, identity: NodeIdentity) =>
        new GatewayApi({ gateways: [g.publicUrl], identity });
      const notAllowed = await httpError(
        at(strict, stranger.identity).register({ record: stranger.record, push: null }),
      );
      expect([notAllowed.status, notAllowed.code]).toEqual([403, 'not-allowed']);
      const tooLarge = await httpError(
        at(strict, allowed.identity).register({ record: allowed.record, push: null }),
      );
      expect([tooLarge.status, tooLarge.code]).toEqual([413, 'too-large']);

      await at(stingy, allowed.identity).register({ record: allowed.record, push: null });
      const limited = await httpError(
        at(stingy, stranger.identity).register({ record: stranger.record, push: null }),
      );
      expect([limited.status, limited.code]).toEqual([429, 'rate-limited']);
    } finally {
      await strict.stop(100);
      await stingy.stop(100);
    }
  });

  it('a 503 from the first gateway fails over to the second', async () => {
    const a = await node();
    const seen: string[] = [];
    const client = new GatewayApi({
      gateways: [full.publicUrl, gateway.publicUrl],
      identity: a.identity,
      fetch: spyFetch(seen),
    });
    const result = await client.send('register', { body: { record: a.record, push: null } });
    expect(result.gateway).toBe(gateway.publicUrl);
    expect(result.data.id).toBe(a.identity.id);
    expect(seen.map((url) => new URL(url).origin)).toEqual([full.publicUrl, gateway.publicUrl]);

    // Alone, the full gateway's refusal is GatewayUnreachable, with its code kept.
    const b = await node();
    const alone = await failure(
      new GatewayApi({ gateways: [full.publicUrl], identity: b.identity }).register({
        record: b.record,
        push: null,
      }),
    );
    expect(alone).toBeInstanceOf(GatewayUnreachable);
    expect((alone as GatewayUnreachable).lastHttpError).toMatchObject({
      status: 503,
      code: 'full',
      gateway: full.publicUrl,
    });
  });

  it('unreachable gateways, proxy 502s and timeouts fail over; all failing is GatewayUnreachable', async () => {
    const proxy = await fakeServer(502, '<html>Bad Gateway</html>');
    servers.push(proxy.server);
    // A server that never answers.
    const stuck = createServer(() => {});
    await new Promise<void>((resolve) => stuck.listen(0, '127.0.0.1', resolve));
    servers.push(stuck);
    const stuckUrl = `http://127.0.0.1:${(stuck.address() as AddressInfo).port}`;
    // A port nothing listens on (just closed).
    const closed = await fakeServer(200, '');
    await new Promise((resolve) => closed.server.close(resolve));

    const a = await node();
    const client = new GatewayApi({
      gateways: [closed.url, proxy.url, stuckUrl, gateway.publicUrl],
      identity: a.identity,
      timeoutMs: 2000,
    });
    expect((await client.send('info', {})).gateway).toBe(gateway.publicUrl);
    expect((await client.register({ record: a.record, push: null })).id).toBe(a.identity.id);

    const nowhere = await failure(
      new GatewayApi({ gateways: [closed.url, proxy.url, stuckUrl], timeoutMs: 2000 }).info(),
    );
    expect(nowhere).toBeInstanceOf(GatewayUnreachable);
    const attempts = (nowhere as GatewayUnreachable).attempts;
    expect(attempts.map((x) => x.gateway)).toEqual([closed.url, proxy.url, stuckUrl]);
    // Why, not just Node's "fetch failed".
    expect(attempts[0]?.error.message).toMatch(/cannot reach .*ECONNREFUSED/);
    expect(attempts[1]?.error).toMatchObject({ status: 502, code: 'http-502' });
    expect(attempts[2]?.error.message).toMatch(/no answer/);

    // failover: false asks only the first.
    await expect(client.info({ failover: false })).rejects.toBeInstanceOf(GatewayUnreachable);
    // `from` puts a gateway first.
    expect((await client.send('info', { from: gateway.publicUrl, failover: false })).gateway).toBe(
      gateway.publicUrl,
    );
  });

  it('an abort ends the call with its reason, without trying other gateways', async () => {
    const stuck = createServer(() => {});
    await new Promise<void>((resolve) => stuck.listen(0, '127.0.0.1', resolve));
    servers.push(stuck);
    const seen: string[] = [];
    const controller = new AbortController();
    const client = new GatewayApi({
      gateways: [`http://127.0.0.1:${(stuck.address() as AddressInfo).port}`, gateway.publicUrl],
      fetch: spyFetch(seen),
      signal: controller.signal,
    });
    const call = client.info();
    setTimeout(() => controller.abort(new Error('closing')), 100);
    await expect(call).rejects.toThrow('closing');
    expect(seen).toHaveLength(1);
    await expect(client.info()).rejects.toThrow('closing');
  });

  it('a gateway whose certificate is not trusted: the failure says so', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'rtcmesh-api-tls-'));
    const { cert, key } = selfSigned(dir, 'untrusted', 'IP:127.0.0.1');
    const tls = createHttpsServer({ cert: readFileSync(cert), key: readFileSync(key) }, (_, res) =>
      res.end('{}'),
    );
    await new Promise<void>((resolve) => tls.listen(0, '127.0.0.1', resolve));
    servers.push(tls);
    const url = `https://127.0.0.1:${(tls.address() as AddressInfo).port}`;
    const err = await failure(new GatewayApi({ gateways: [url] }).info());
    expect(err).toBeInstanceOf(GatewayUnreachable);
    expect((err as Error).message).toMatch(/cannot reach https:.*self[- ]signed certificate/);
  });

  it('a 2xx that does not fit the schema is a GatewayProtocolError', async () => {
    const liar = await fakeServer(200, '{"id": 5}');
    servers.push(liar.server);
    const err = await failure(new GatewayApi({ gateways: [liar.url] }).info());
    expect(err).toBeInstanceOf(GatewayProtocolError);
    expect((err as GatewayProtocolError).gateway).toBe(liar.url);
  });
});
