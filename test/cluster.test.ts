/**
 * Cluster mode (DESIGN §5): two real gateway processes on one real redis-server, with Node
 * mesh nodes (node-datachannel). A node on gateway 1 dials a node on gateway 2; a killed
 * gateway's node fails over; a dial while Redis is down gets a clear error, and the cluster
 * works again once Redis is back.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type GatewayProcess,
  metric,
  RTCMESH_BIN,
  startGateway,
} from '../e2e/support/gateway-process.ts';
import { PushService } from '../e2e/support/push-service.ts';
import { RedisServer } from '../e2e/support/redis-server.ts';
import { GatewayApi, GatewayHttpError } from '../src/core/api/index.ts';
import type { NodeId } from '../src/core/identity/index.ts';
import { DialError } from '../src/core/node/errors.ts';
import { MeshNode } from '../src/core/node/mesh-node.ts';
import type { StreamMessage } from '../src/core/node/stream.ts';
import { GATEWAYS_FILE } from '../src/node/gateway-store.ts';
import { RedisRegistry } from '../src/node/registry/index.ts';
import { makeNodeIdentity, startNodeNode } from './support/node-node.ts';

/** n gateways on `redis`, once each lists all n (nodes learn the list as they connect). */
async function startCluster(redis: RedisServer, n: number): Promise<GatewayProcess[]> {
  const gateways = await Promise.all(
    Array.from({ length: n }, () => startGateway({ args: ['--redis', redis.url] })),
  );
  const deadline = Date.now() + 15_000;
  for (const g of gateways)
    while ((await info(g)).gateways?.length !== n) {
      if (Date.now() > deadline) throw new Error(`${g.url} does not list ${n} gateways`);
      await new Promise((r) => setTimeout(r, 200));
    }
  return gateways;
}

/**
 * Waits until the cluster's registry says `node` is connected to `gateway`: a node's own
 * "connected" comes a moment before its gateway has recorded the session in Redis.
 */
async function present(
  redis: RedisServer,
  node: { identity: { id: NodeId } },
  gateway: GatewayProcess,
) {
  const registry = await RedisRegistry.connect(redis.url);
  try {
    await expect
      .poll(async () => (await registry.get(node.identity.id))?.gatewayId, { timeout: 10_000 })
      .toBe(gateway.id);
  } finally {
    await registry.close();
  }
}

/** Serves `echo` on a node: every message comes back. */
function serveEcho(node: MeshNode): void {
  node.listen('echo', async (stream) => {
    for await (const message of stream.readable) await stream.send(message);
  });
}

async function echo(from: MeshNode, to: string, text: string): Promise<StreamMessage> {
  const stream = await from.dial(to, 'echo');
  await stream.send(text);
  const { value } = await stream.readable.getReader().read();
  stream.close();
  return value as StreamMessage;
}

/** `rtcmesh node` as a user runs it, serving echo; `connected` resolves with its log line. */
function runCliNode(gateway: string, data: string) {
  const child: ChildProcess = spawn(
    process.execPath,
    [RTCMESH_BIN, 'listen', 'echo', '--exec', 'cat', '--gateway', gateway, '--data', data],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let err = '';
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const connected = new Promise<string>((resolve, reject) => {
    child.stderr?.on('data', (d: Buffer) => {
      err += d.toString();
      const line = /^rtcmesh: node .* connected to .*$/m.exec(err)?.[0];
      if (line) resolve(line);
    });
    void exited.then(() => reject(new Error(`rtcmesh exited:\n${err}`)));
  });
  return {
    connected,
    id: () => /node (\S+) \(/.exec(err)?.[1] ?? '',
    stop: async () => {
      child.kill('SIGTERM');
      await exited;
    },
  };
}

async function info(gateway: GatewayProcess) {
  return (await (await fetch(`${gateway.url}/v1/info`)).json()) as {
    id: string;
    vapidPublicKey: string;
    gateways?: { id: string; url: string }[];
  };
}

describe('two gateways on one Redis', { timeout: 60_000 }, () => {
  let redis: RedisServer;
  let gateways: GatewayProcess[];
  const stops: (() => void)[] = [];

  beforeAll(async () => {
    redis = await RedisServer.start();
    gateways = await startCluster(redis, 2);
  }, 60_000);
  afterAll(async () => {
    for (const stop of stops) stop();
    await Promise.all((gateways ?? []).map((g) => g.stop()));
    await redis.close();
  });

  it('each lists both gateways in /v1/info, and they share one VAPID key', async () => {
    const [g1, g2] = gateways as [GatewayProcess, GatewayProcess];
    const expected = [
      { id: g1.id, url: g1.url },
      { id: g2.id, url: g2.url },
    ];
    for (const g of gateways) {
      await expect
        .poll(async () => (await info(g)).gateways?.slice().sort((a, b) => (a.id < b.id ? -1 : 1)))
        .toEqual(expected.slice().sort((a, b) => (a.id < b.id ? -1 : 1)));
      expect((await info(g)).gateways?.[0]?.id).toBe(g.id); // itself first
    }
    expect((await info(g1)).vapidPublicKey).toBe((await info(g2)).vapidPublicKey);
  });

  it('a node on gateway 1 dials a node on gateway 2 by ID and by IPv6, and they talk', async () => {
    const [g1, g2] = gateways as [GatewayProcess, GatewayProcess];
    const a = await startNodeNode(g1.url);
    const b = await startNodeNode(g2.url);
    stops.push(
      () => a.node.stop(),
      () => b.node.stop(),
    );
    expect(a.node.gateway.gatewayId).toBe(g1.id);
    expect(b.node.gateway.gatewayId).toBe(g2.id);
    serveEcho(b.node);
    await present(redis, b, g2);
    expect(await echo(a.node, b.identity.id, 'hello across gateways')).toBe(
      'hello across gateways',
    );
    expect(a.node.link(b.identity.id)?.isOpen).toBe(true);
    a.node.link(b.identity.id)?.close();
    expect(await echo(a.node, b.identity.ip6, 'by address')).toBe('by address');
    expect(await metric(g1, 'rtcmesh_cluster_dials_forwarded_total')).toBeGreaterThanOrEqual(2);
    a.node.stop();
    b.node.stop();
  });

  it('a decline and an unknown ID are reported across gateways as on one', async () => {
    const [g1, g2] = gateways as [GatewayProcess, GatewayProcess];
    const a = await startNodeNode(g1.url);
    const b = await startNodeNode(g2.url, { decide: () => 'decline' });
    stops.push(
      () => a.node.stop(),
      () => b.node.stop(),
    );
    await present(redis, b, g2);
    const declined = await a.node.dial(b.identity.id, 'echo').catch((e: unknown) => e);
    expect(declined).toBeInstanceOf(DialError);
    expect((declined as DialError).code).toBe('declined');
    expect((declined as DialError).message).toBe(`node ${b.identity.id} declined the call`);
    const unknown = await a.node.dial('a'.repeat(52), 'echo').catch((e: unknown) => e);
    expect((unknown as DialError).code).toBe('not-found');
    a.node.stop();
    b.node.stop();
  });
});

describe('failover and Redis restarts', { timeout: 90_000 }, () => {
  it('gateway 2 is killed: its node reconnects to gateway 1 within 10 s and can be dialed', async () => {
    const redis = await RedisServer.start();
    const [g1, g2] = (await startCluster(redis, 2)) as [GatewayProcess, GatewayProcess];
    const b = await startNodeNode(g2.url);
    const c = await startNodeNode(g1.url);
    try {
      serveEcho(b.node);
      const killed = Date.now();
      g2.process.kill('SIGKILL');
      await expect
        .poll(() => b.node.gateway.status === 'connected' && b.node.gateway.gatewayId, {
          timeout: 10_000,
          interval: 100,
        })
        .toBe(g1.id);
      expect(Date.now() - killed).toBeLessThan(10_000);
      expect(b.node.gateway.gatewayUrl).toBe(g1.url);
      await present(redis, b, g1);
      expect(await echo(c.node, b.identity.id, 'still reachable')).toBe('still reachable');
    } finally {
      b.node.stop();
      c.node.stop();
      await Promise.all([g1.stop(), g2.stop()]);
      await redis.close();
    }
  });

  it('rtcmesh node started while its --gateway is down reaches the cluster through the gateways it kept', async () => {
    const redis = await RedisServer.start();
    const [g1, g2] = (await startCluster(redis, 2)) as [GatewayProcess, GatewayProcess];
    const data = mkdtempSync(join(tmpdir(), 'rtcmesh-node-'));
    const c = await startNodeNode(g1.url);
    try {
      // First run: it connects to gateway 2 and keeps the cluster's list in its data directory.
      const first = runCliNode(g2.url, data);
      await first.connected;
      await expect
        .poll(() => readFileSync(join(data, GATEWAYS_FILE), 'utf8'), { timeout: 10_000 })
        .toContain(g1.url);
      await first.stop();
      g2.process.kill('SIGKILL');
      // Second run, same --gateway, now dead: it connects through gateway 1 and is reachable.
      const second = runCliNode(g2.url, data);
      try {
        expect(await second.connected).toContain(`connected to ${g1.url}`);
        await expect
          .poll(
            async () => {
              // cat answers in bytes.
              const back = await echo(c.node, second.id(), 'found').catch((e: Error) => e.message);
              return typeof back === 'string' ? back : new TextDecoder().decode(back);
            },
            {
              timeout: 10_000,
            },
          )
          .toBe('found');
      } finally {
        await second.stop();
      }
    } finally {
      c.node.stop();
      rmSync(data, { recursive: true, force: true });
      await Promise.all([g1.stop(), g2.stop()]);
      await redis.close();
    }
  });

  it('Redis down: a dial is told so at once and nothing crashes; Redis back: dials work', async () => {
    const redis = await RedisServer.start({ persist: true });
    const [g1, g2] = (await startCluster(redis, 2)) as [GatewayProcess, GatewayProcess];
    const a = await startNodeNode(g1.url);
    const b = await startNodeNode(g2.url);
    try {
      serveEcho(b.node);
      await present(redis, b, g2);
      await redis.stop();
      await expect.poll(() => metric(g1, 'rtcmesh_cluster_redis_up'), { timeout: 60_000 }).toBe(0);
      const failed = await a.node.dial(b.identity.id, 'echo').catch((e: unknown) => e);
      expect(failed).toBeInstanceOf(DialError);
      expect((failed as DialError).code).toBe('gateway');
      expect((failed as DialError).message).toMatch(/Redis is down/);
      // Both gateways live on, and their sessions too.
      expect(await (await fetch(`${g1.url}/healthz`)).text()).toBe('ok\n');
      expect(await (await fetch(`${g2.url}/healthz`)).text()).toBe('ok\n');
      expect(a.node.gateway.status).toBe('connected');

      await redis.restart();
      await expect.poll(() => metric(g1, 'rtcmesh_cluster_redis_up'), { timeout: 60_000 }).toBe(1);
      await expect.poll(() => metric(g2, 'rtcmesh_cluster_redis_up'), { timeout: 60_000 }).toBe(1);
      expect(await echo(a.node, b.identity.id, 'after the restart')).toBe('after the restart');
      expect(g1.process.exitCode).toBeNull();
      expect(g2.process.exitCode).toBeNull();
    } finally {
      a.node.stop();
      b.node.stop();
      await Promise.all([g1.stop(), g2.stop()]);
      await redis.close();
    }
  });

  it('Redis restarts empty: the gateways assert their sessions again and dials work', async () => {
    const redis = await RedisServer.start(); // no persistence: everything in Redis is lost
    const [g1, g2] = (await startCluster(redis, 2)) as [GatewayProcess, GatewayProcess];
    const a = await startNodeNode(g1.url);
    const b = await startNodeNode(g2.url);
    try {
      serveEcho(b.node);
      await redis.restart();
      await expect
        .poll(
          async () => echo(a.node, b.identity.id, 'found again').catch((e: Error) => e.message),
          {
            timeout: 30_000,
            interval: 500,
          },
        )
        .toBe('found again');
    } finally {
      a.node.stop();
      b.node.stop();
      await Promise.all([g1.stop(), g2.stop()]);
      await redis.close();
    }
  });

  it('a gateway refuses to start when Redis cannot be reached, and says why', async () => {
    const redis = await RedisServer.start();
    const url = redis.url;
    await redis.close();
    await expect(
      startGateway({ args: ['--redis', url, '--limit', 'dialTimeoutMs=1000'] }),
    ).rejects.toThrow(/cannot reach Redis/);
  });
});

describe('push across gateways', { timeout: 60_000 }, () => {
  it('a node registered at gateway 2 is woken by a dial at gateway 1, and settles it over HTTP at gateway 2', async () => {
    const redis = await RedisServer.start();
    const push = await PushService.start();
    const [g1, g2] = (await Promise.all(
      [1, 2].map(() => startGateway({ args: ['--redis', redis.url, '--push-allow-private'] })),
    )) as [GatewayProcess, GatewayProcess];
    const caller = await startNodeNode(g1.url);
    try {
      // The callee registers its subscription at gateway 2 and has no session.
      const made = await makeNodeIdentity();
      const callee = new MeshNode({
        gatewayUrl: g2.url,
        identity: made.identity,
        fingerprints: [made.certificate.fingerprint],
        rtc: made.rtc,
        decide: () => 'accept',
      });
      const subscription = push.subscribe();
      expect(await callee.registerPush(subscription)).toMatchObject({ push: true });

      const declined = caller.node.connect(made.identity.id).catch((e: unknown) => e);
      const received = await push.nextPush(subscription);
      // Signed with the cluster's one key: the one gateway 2 gave the callee.
      expect(received.vapidKey).toBe((await info(g2)).vapidPublicKey);
      const { dialId } = JSON.parse(received.plaintext) as { dialId: string };

      // Its service worker asks and declines at its own gateway, 2; gateway 1 holds the call.
      const api = new GatewayApi({ gateways: [g2.url], identity: made.identity });
      expect(await api.pendingDial(dialId)).toMatchObject({ dialId, from: caller.identity.id });
      const missing = await api.pendingDial('x'.repeat(22)).catch((e: unknown) => e);
      expect(missing).toBeInstanceOf(GatewayHttpError);
      expect(missing).toMatchObject({ status: 404, code: 'not-found' });
      expect(await api.rejectDial(dialId, { reason: 'declined' })).toMatchObject({
        rejected: true,
      });
      const error = await declined;
      expect(error).toBeInstanceOf(DialError);
      expect((error as DialError).code).toBe('declined');
      callee.stop();
    } finally {
      caller.node.stop();
      await Promise.all([g1.stop(), g2.stop(), push.close()]);
      await redis.close();
    }
  });
});
