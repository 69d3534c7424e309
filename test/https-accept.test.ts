/**
 * HTTPS-only accept (DESIGN §2): a node without a WebRTC session with its gateway and without
 * push takes calls by a signed long-poll, GET /v1/dials?wait=…, against real gateway
 * processes: the call and its stream work (real UDP between the peers; what is tested is the
 * signaling without a session), a newer poll replaces an older one, unsigned and forged polls
 * are refused, polls are capped per address and in how long they wait, and in a cluster (real
 * redis-server) a dial made at another gateway reaches the polling node. In network
 * namespaces, a CLI node whose router drops all UDP (nftables) falls back to long-poll by
 * itself, still receives calls, and says plainly why the peer link cannot form.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../e2e/support/cli-process.ts';
import { type GatewayProcess, metric, startGateway } from '../e2e/support/gateway-process.ts';
import { buildNetwork, type TestNetwork } from '../e2e/support/netns.ts';
import { RedisServer, requireRedisServer } from '../e2e/support/redis-server.ts';
import { GatewayApi, GatewayHttpError } from '../src/core/api/index.ts';
import {
  audienceOf,
  createAuthorization,
  createNodeRecord,
  type NodeId,
} from '../src/core/identity/index.ts';
import { DialError } from '../src/core/node/errors.ts';
import { connectNode, type MeshNodeHandle } from '../src/node/index.ts';
import { RedisRegistry } from '../src/node/registry/index.ts';
import { makeNodeIdentity, startNodeNode } from './support/node-node.ts';

/** Starting gateway processes (and Redis, namespaces) on a loaded machine takes a while. */
const HOOK_TIMEOUT_MS = 120_000;

const dir = () => mkdtempSync(join(tmpdir(), 'rtcmesh-ha-'));

/** A node that signals over HTTPS only: no session, no push; calls come by long-poll. */
function pollingNode(gateway: string): Promise<MeshNodeHandle> {
  return connectNode({
    gateway,
    dataDir: dir(),
    accept: 'everyone',
    signaling: 'http',
    bindAddress: '127.0.0.1',
  });
}

/** A node with a WebRTC session, as usual. */
function sessionNode(gateway: string): Promise<MeshNodeHandle> {
  return connectNode({
    gateway,
    dataDir: dir(),
    accept: 'everyone',
    signaling: 'session',
    bindAddress: '127.0.0.1',
  });
}

function serveEcho(node: MeshNodeHandle): void {
  node.listen('echo', async (stream) => {
    for await (const message of stream.readable) await stream.send(message);
  });
}

async function echo(from: MeshNodeHandle, to: string, text: string): Promise<unknown> {
  const stream = await from.dial(to, 'echo');
  await stream.send(text);
  const { value } = await stream.readable.getReader().read();
  stream.close();
  return value;
}

/** A registered identity and a client signed by it, for raw requests. */
async function registeredClient(gateway: string) {
  const made = await makeNodeIdentity();
  const api = new GatewayApi({ gateways: [gateway], identity: made.identity });
  const registration = await api.register({
    record: await createNodeRecord(made.identity, { fingerprints: [made.certificate.fingerprint] }),
    push: null,
  });
  return { ...made, api, registration };
}

describe('HTTPS-only accept against a gateway process', { timeout: 120_000 }, () => {
  let gateway: GatewayProcess;
  beforeAll(async () => {
    gateway = await startGateway();
  }, HOOK_TIMEOUT_MS);
  afterAll(async () => {
    await gateway.stop();
  }, HOOK_TIMEOUT_MS);

  it('a node without a session takes a call by long-poll, and the stream works both ways', async () => {
    const callee = await pollingNode(gateway.url);
    serveEcho(callee);
    expect(callee.signaling).toBe('http');
    expect(callee.status).toBe('connected');
    await expect.poll(() => metric(gateway, 'rtcmesh_polling_nodes'), { timeout: 30_000 }).toBe(1);
    // It holds no session: the gateway has only the caller's.
    const caller = await sessionNode(gateway.url);
    serveEcho(caller);
    expect(await metric(gateway, 'rtcmesh_sessions')).toBe(1);
    expect(await echo(caller, callee.id, 'over a long-polled call')).toBe(
      'over a long-polled call',
    );
    expect(await metric(gateway, 'rtcmesh_poll_dials_total')).toBeGreaterThan(0);
    // It asked for the caller's candidates before answering and again after: a Node caller
    // gives them out only once it has applied the answer.
    await expect
      .poll(
        () => metric(gateway, 'rtcmesh_http_requests_total{route="/v1/dials/:id",status="200"}'),
        { timeout: 30_000 },
      )
      .toBeGreaterThanOrEqual(2);
    // And it dials over HTTP (a gathered offer, POST /v1/dial) a node that has a session.
    await caller.close();
    const other = await sessionNode(gateway.url);
    serveEcho(other);
    expect(await echo(callee, other.id, 'dialed over HTTP')).toBe('dialed over HTTP');
    // A caller that dials the polling node over HTTP too.
    const third = await pollingNode(gateway.url);
    expect(await echo(third, callee.id, 'both over HTTPS')).toBe('both over HTTPS');
    await Promise.all([callee.close(), other.close(), third.close()]);
    // Once it stops polling, it is gone (after a short grace) and calls to it say offline.
    await expect.poll(() => metric(gateway, 'rtcmesh_polling_nodes'), { timeout: 30_000 }).toBe(0);
  });

  it('a newer poll of the same node replaces the older one, which ends with replaced', async () => {
    const polling = await registeredClient(gateway.url);
    // A node without a session gets its STUN/TURN credentials with its registration.
    expect(JSON.stringify(polling.registration.iceServers)).toMatch(/"turn:[^"]+"/);
    const first = polling.api.pollDials(30);
    // Only once the first poll is open at the gateway does the second replace it.
    await expect
      .poll(() => metric(gateway, 'rtcmesh_polling_nodes'), { timeout: 30_000 })
      .toBeGreaterThan(0);
    const second = polling.api.pollDials(30);
    expect(await first).toEqual({ dials: [], replaced: true });
    // The call goes to the newer poll; the callee declines it over the existing route.
    const caller = await startNodeNode(gateway.url);
    // Caught at once: it is refused while this test is still reading the poll.
    const dialing = caller.node.dial(polling.identity.id, 'echo').catch((err: unknown) => err);
    const { dials, replaced } = await second;
    expect(replaced).toBe(false);
    expect(dials.map((d) => d.from)).toEqual([caller.identity.id]);
    const dial = dials[0];
    if (!dial) throw new Error('no call');
    expect(dial.offer).toContain('a=fingerprint');
    await polling.api.rejectDial(dial.dialId, { reason: 'declined' });
    const refused = await dialing;
    expect(refused).toBeInstanceOf(DialError);
    expect((refused as DialError).code).toBe('declined');
    caller.node.stop();
  });

  it('rtcmesh listen --signaling http takes a call by long-poll; rtcmesh dial gets the echo', async () => {
    const gatewayArgs = ['--gateway', gateway.url];
    const listener = cliIn(undefined, [
      'listen',
      'echo',
      '--exec',
      'cat',
      '--signaling',
      'http',
      '--data',
      dir(),
      ...gatewayArgs,
    ]);
    try {
      await expect
        .poll(() => listener.stderr(), { timeout: 60_000 })
        .toMatch(/connected to \S+ in HTTP mode/);
      expect(listener.stderr()).toMatch(/HTTP mode \(HTTPS-only signaling\)/);
      const id = /node (\S+) \(/.exec(listener.stderr())?.[1] ?? '';
      const dialer = cliIn(
        undefined,
        ['dial', id, 'echo', '--data', dir(), ...gatewayArgs],
        'ping',
      );
      expect(await dialer.exited, `${dialer.stderr()}\nlistener:\n${listener.stderr()}`).toBe(0);
      expect(dialer.stdout()).toBe('ping');
    } finally {
      await listener.stop();
    }
  });

  it('refuses unsigned and forged polls, and polls of nodes that never registered', async () => {
    const url = `${gateway.url}/v1/dials?wait=1s`;
    const before = await metric(gateway, 'rtcmesh_polling_nodes');
    const unsigned = await fetch(url);
    expect(unsigned.status).toBe(401);
    const made = await makeNodeIdentity();
    const good = await createAuthorization(made.identity.key, audienceOf(gateway.url));
    // One character of the signature changed.
    const forged = good.replace(/\.([A-Za-z0-9_-]+), k=/, (_m, sig: string) => {
      const flipped = sig[5] === 'A' ? 'B' : 'A';
      return `.${sig.slice(0, 5)}${flipped}${sig.slice(6)}, k=`;
    });
    expect(forged).not.toBe(good);
    const forgedRes = await fetch(url, { headers: { authorization: forged } });
    expect(forgedRes.status).toBe(401);
    // Signed for another gateway.
    const elsewhere = await createAuthorization(made.identity.key, 'http://127.0.0.1:1');
    expect((await fetch(url, { headers: { authorization: elsewhere } })).status).toBe(401);
    // The same token twice: the second is a replay.
    const registered = await registeredClient(gateway.url);
    const once = await createAuthorization(registered.identity.key, audienceOf(gateway.url));
    expect((await fetch(url, { headers: { authorization: once } })).status).toBe(200);
    expect((await fetch(url, { headers: { authorization: once } })).status).toBe(401);
    // Signed, but unknown to the gateway: nobody could find it to call it.
    const stranger = new GatewayApi({ gateways: [gateway.url], identity: made.identity });
    const notRegistered = await stranger.pollDials(1).catch((err: unknown) => err);
    expect(notRegistered).toBeInstanceOf(GatewayHttpError);
    expect((notRegistered as GatewayHttpError).code).toBe('not-registered');
    // Nothing was kept for any of them but the one good poll.
    expect(await metric(gateway, 'rtcmesh_polling_nodes')).toBeLessThanOrEqual(before + 1);
  });
});

describe('poll limits', { timeout: 120_000 }, () => {
  let gateway: GatewayProcess;
  beforeAll(async () => {
    gateway = await startGateway({
      args: ['--limit', 'maxPollsPerIp=2', '--limit', 'maxPollWaitMs=15000'],
    });
  }, HOOK_TIMEOUT_MS);
  afterAll(async () => {
    await gateway.stop();
  }, HOOK_TIMEOUT_MS);

  it('caps open polls per address; a node polling again still may', async () => {
    const [a, b, c] = await Promise.all([1, 2, 3].map(() => registeredClient(gateway.url)));
    if (!a || !b || !c) throw new Error('no clients');
    const hangUp = new AbortController();
    const signal = hangUp.signal;
    const pa = a.api.pollDials(25, { signal }).catch(() => undefined);
    const pb = b.api.pollDials(25, { signal }).catch(() => undefined);
    await expect.poll(() => metric(gateway, 'rtcmesh_polling_nodes'), { timeout: 30_000 }).toBe(2);
    const third = await c.api.pollDials(25, { signal }).catch((err: unknown) => err);
    expect(third).toBeInstanceOf(GatewayHttpError);
    expect((third as GatewayHttpError).status).toBe(429);
    expect((third as GatewayHttpError).code).toBe('rate-limited');
    // a's new poll replaces its own: not a third poll from this address.
    const again = a.api.pollDials(25, { signal }).catch(() => undefined);
    expect(await pa).toEqual({ dials: [], replaced: true });
    hangUp.abort();
    await Promise.all([pb, again]);
  });

  it('a poll asking to wait longer than the cap ends, empty, at the cap', async () => {
    const client = await registeredClient(gateway.url);
    // 600 s asked; the gateway (maxPollWaitMs 15 s) answers well within the test's bound.
    expect(await client.api.pollDials(600, { timeoutMs: 90_000 })).toEqual({
      dials: [],
      replaced: false,
    });
    const bad = await fetch(`${gateway.url}/v1/dials?wait=forever`, {
      headers: {
        authorization: await createAuthorization(client.identity.key, audienceOf(gateway.url)),
      },
    });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { code: string } }).error.code).toBe('bad-wait');
  });
});

describe('HTTPS-only accept in a cluster', { timeout: 180_000 }, () => {
  let redis: RedisServer;
  let g1: GatewayProcess;
  let g2: GatewayProcess;
  beforeAll(async () => {
    requireRedisServer();
    redis = await RedisServer.start();
    [g1, g2] = await Promise.all([
      startGateway({ args: ['--redis', redis.url] }),
      startGateway({ args: ['--redis', redis.url] }),
    ]);
  }, HOOK_TIMEOUT_MS);
  afterAll(async () => {
    await Promise.all([g1?.stop(), g2?.stop()]);
    await redis?.stop();
  }, HOOK_TIMEOUT_MS);

  it('a dial made at another gateway reaches the node polling at its own', async () => {
    const callee = await pollingNode(g2.url);
    serveEcho(callee);
    // The cluster's registry says where the polling node is.
    const registry = await RedisRegistry.connect(redis.url);
    try {
      await expect
        .poll(async () => (await registry.get(callee.id as NodeId))?.gatewayId, {
          timeout: 15_000,
        })
        .toBe(g2.id);
    } finally {
      await registry.close();
    }
    const caller = await sessionNode(g1.url);
    expect(await echo(caller, callee.id, 'across the cluster')).toBe('across the cluster');
    expect(await metric(g1, 'rtcmesh_cluster_dials_forwarded_total')).toBeGreaterThan(0);
    await Promise.all([caller.close(), callee.close()]);
  });
});

/** `rtcmesh COMMAND …` run as a user runs it (inside a test namespace, if given); stopped by its pid. */
/** The data directory is in `args`. */
function cliIn(netns: string | undefined, args: string[], input?: string) {
  const run = runCli(args, {
    data: false,
    ...(netns !== undefined ? { netns } : {}),
    ...(input !== undefined ? { input } : {}),
  });
  return {
    stdout: () => run.out().toString(),
    stderr: run.err,
    exited: run.exited,
    stop: run.stop,
  };
}

describe('a CLI node whose network blocks UDP', { timeout: 240_000 }, () => {
  let net: TestNetwork;
  let gateway: GatewayProcess;
  beforeAll(async () => {
    if (process.getuid?.() !== 0)
      throw new Error('this test builds network namespaces (ip netns, nftables): run it as root');
    net = buildNetwork(`ha${process.pid % 1000}`, ['cone-nat', 'cone-nat']);
    // Site 1's router lets out TCP only (as many offices and guest networks do).
    const router = net.hosts[0]?.replace(/h1$/, 'r1') ?? '';
    execFileSync('ip', [
      'netns',
      'exec',
      router,
      'nft',
      'add table inet noudp; add chain inet noudp forwarded { type filter hook forward priority 0; }; add rule inet noudp forwarded meta l4proto udp drop',
    ]);
    const gw = net.gatewayIp;
    gateway = await startGateway({
      netns: net.gatewayNs,
      listen: `${gw}:8080`,
      udp: `${gw}:3478`,
      args: ['--turn', `${gw}:3479`, '--public-url', `http://${gw}:8080`],
    });
  }, HOOK_TIMEOUT_MS);
  afterAll(async () => {
    await gateway?.stop();
    net?.destroy();
  }, HOOK_TIMEOUT_MS);

  it('falls back to long-poll, still receives calls, and says why the link cannot form', async () => {
    const [blocked, open] = net.hosts;
    if (!blocked || !open) throw new Error('no hosts');
    const gatewayArgs = ['--gateway', gateway.url];
    const callee = cliIn(blocked, [
      'listen',
      'echo',
      '--exec',
      'cat',
      '--data',
      dir(),
      ...gatewayArgs,
    ]);
    try {
      // It says which mode it is in.
      await expect
        .poll(() => callee.stderr(), { timeout: 90_000 })
        .toMatch(/connected to \S+ in HTTP mode/);
      expect(callee.stderr()).toMatch(/no WebRTC session formed/);
      const calleeId = /node (\S+) \(/.exec(callee.stderr())?.[1] ?? '';
      expect(calleeId).toHaveLength(52);
      // A caller on a network with UDP dials it: the call reaches it by long-poll…
      const caller = cliIn(
        open,
        ['dial', calleeId, 'echo', '--data', dir(), ...gatewayArgs],
        'hi\n',
      );
      // …and the link cannot form: the callee says exactly why, rather than timing out vaguely.
      await expect
        .poll(() => callee.stderr(), { timeout: 120_000 })
        .toMatch(/UDP is blocked and libjuice cannot use TURN over TCP: no connection from \S+/);
      expect(await caller.exited).toBe(1);
      expect(caller.stderr()).toMatch(/no connection to/);
    } finally {
      await callee.stop();
    }
  });
});
