import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { RedisServer } from '../e2e/support/redis-server.ts';
import {
  generateNodeKeyPair,
  identityOf,
  type NodeIdentity,
  nodeKeyFromCryptoKeys,
} from '../src/core/identity/index.ts';
import {
  MemoryRegistry,
  type PushSubscriptionData,
  REGISTRY_SCHEMA_VERSION,
  RedisRegistry,
  type Registration,
  type Registry,
  RegistryUnavailableError,
  SqliteRegistry,
} from '../src/node/registry/index.ts';
import { identityFromPrivateKey } from './support/fixed-identity.ts';

const T0 = 1_700_000_000_000;
const TTL = 60_000;

// A key found by search whose mesh address has a zero group, so it has a `::` form.
const ZERO_GROUP_D = '8a18fd2f44a0d03399671cf02ac049baa704743338c99bbf9e2aeec31c327d55';
const ZERO_GROUP_IP6 = 'fd16:2d4b:2bb8:90a8:161b:0:a0:a61b';

const PUSH: PushSubscriptionData = {
  endpoint: 'https://push.example/send/abc',
  keys: {
    p256dh:
      'BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1XbjhazAkj7I99e8QcYP7DkM',
    auth: 'tBHItJI5svbpez7KI4CCXg',
  },
};

async function newIdentity(): Promise<NodeIdentity> {
  const pair = await generateNodeKeyPair();
  return identityOf(await nodeKeyFromCryptoKeys(pair.privateKey, pair.publicKey));
}

const zeroGroupIdentity = () => identityFromPrivateKey(ZERO_GROUP_D);

function registration(identity: NodeIdentity, fields: Partial<Registration> = {}): Registration {
  return {
    id: identity.id,
    ip6: identity.ip6,
    record: `record-of-${identity.id}`,
    gatewayId: null,
    lastSeen: T0,
    expiresAt: T0 + TTL,
    push: null,
    ...fields,
  };
}

/** Every group written out in four digits: 'fd16:2d4b:…:0000:00a0:a61b'. */
function uncompressed(ip6: string): string {
  const groups = ip6.split('::');
  const head = groups[0] ? groups[0].split(':') : [];
  const tail = groups[1] ? groups[1].split(':') : [];
  const zeros = new Array<string>(8 - head.length - tail.length).fill('0');
  return [...head, ...(groups.length === 2 ? zeros : []), ...tail]
    .map((g) => g.padStart(4, '0'))
    .join(':');
}

let a: NodeIdentity;
let b: NodeIdentity;
let c: NodeIdentity;
let z: NodeIdentity;

beforeAll(async () => {
  [a, b, c, z] = await Promise.all([
    newIdentity(),
    newIdentity(),
    newIdentity(),
    zeroGroupIdentity(),
  ]);
});

// One redis-server for the Redis tests, started by the first of them that needs it: the memory
// and SQLite tests never wait for it. Without redis-server each Redis test fails at once,
// saying how to install it (the same rejection, cached), and the others run as usual.
let redis: Promise<RedisServer> | undefined;
let redisPrefixes = 0;

const redisUrl = async (): Promise<string> => {
  redis ??= RedisServer.start();
  return (await redis).url;
};
afterAll(async () => {
  await (await redis?.catch(() => undefined))?.close();
});

/** A Redis registry under a prefix of its own, so tests never see each other's keys. */
const openRedis = async (options: { presenceTtlMs?: number } = {}) =>
  RedisRegistry.connect(await redisUrl(), { prefix: `t${++redisPrefixes}:`, ...options });

const backends: { name: string; open: () => Registry | Promise<Registry> }[] = [
  { name: 'memory', open: () => new MemoryRegistry() },
  { name: 'sqlite', open: () => SqliteRegistry.open(':memory:') },
  { name: 'redis', open: () => openRedis() },
];

describe.each(backends)('$name registry', ({ open }) => {
  let registry: Registry;
  let opened: Registry | undefined;
  beforeEach(async () => {
    opened = undefined;
    registry = opened = await open();
  });
  afterEach(async () => {
    // Nothing to close when open() failed (no redis-server): its error is the test's.
    await opened?.close();
  });

  it('returns what was upserted, as a copy', async () => {
    const reg = registration(a, { name: 'phone', gatewayId: 'gw-1', push: PUSH });
    await registry.upsert(reg);
    const got = await registry.get(a.id, T0);
    expect(got).toStrictEqual(reg);
    expect(got).not.toBe(reg);

    // Neither the caller's object nor a returned one reaches into the store.
    reg.record = 'changed';
    reg.push = null;
    if (got?.push) got.push.keys.auth = 'changed';
    expect(await registry.get(a.id, T0)).toStrictEqual(
      registration(a, { name: 'phone', gatewayId: 'gw-1', push: PUSH }),
    );
  });

  it('has no name key when there is no name', async () => {
    await registry.upsert(registration(a));
    const got = await registry.get(a.id, T0);
    expect(got).toStrictEqual(registration(a));
    expect(got && 'name' in got).toBe(false);
  });

  it('replaces a registration on a second upsert', async () => {
    await registry.upsert(registration(a, { name: 'old', gatewayId: 'gw-1', push: PUSH }));
    const next = registration(a, { record: 'newer', lastSeen: T0 + 5, expiresAt: T0 + 2 * TTL });
    await registry.upsert(next);
    expect(await registry.get(a.id, T0)).toStrictEqual(next);
    expect(await registry.count(T0)).toBe(1);
  });

  it('returns undefined for a missing id', async () => {
    await registry.upsert(registration(a));
    expect(await registry.get(b.id, T0)).toBeUndefined();
  });

  it('counts a registration as gone from expiresAt on', async () => {
    await registry.upsert(registration(a));
    expect(await registry.get(a.id, T0 + TTL - 1)).toBeDefined();
    expect(await registry.get(a.id, T0 + TTL)).toBeUndefined();
    expect(await registry.get(a.id, T0 + TTL + 1)).toBeUndefined();
  });

  it('checks expiry against the clock by default', async () => {
    const now = Date.now();
    await registry.upsert(registration(a, { expiresAt: now + TTL }));
    await registry.upsert(registration(b, { expiresAt: now - 1 }));
    expect(await registry.get(a.id)).toBeDefined();
    expect(await registry.get(b.id)).toBeUndefined();
    expect(await registry.findByIp6(a.ip6)).toBeDefined();
    expect(await registry.count()).toBe(1);
  });

  it('refuses an ip6 that is not the mesh address of the id', async () => {
    await expect(registry.upsert(registration(a, { ip6: b.ip6 }))).rejects.toThrow(TypeError);
    await expect(registry.upsert(registration(a, { ip6: 'nonsense' }))).rejects.toThrow(TypeError);
    expect(await registry.count(T0)).toBe(0);
  });

  it('stores a non-canonical ip6 in canonical form', async () => {
    await registry.upsert(registration(z, { ip6: uncompressed(z.ip6).toUpperCase() }));
    expect((await registry.get(z.id, T0))?.ip6).toBe(ZERO_GROUP_IP6);
  });

  it('finds a node by its mesh IPv6 in any valid text form', async () => {
    expect(z.ip6).toBe(ZERO_GROUP_IP6);
    await registry.upsert(registration(a));
    await registry.upsert(registration(z));
    const forms = [
      ZERO_GROUP_IP6,
      'fd16:2d4b:2bb8:90a8:161b::a0:a61b', // `::` for the zero group
      'fd16:2d4b:2bb8:90a8:161b:0000:00a0:a61b', // every digit
      'FD16:2D4B:2BB8:90A8:161B:0:A0:A61B',
      ' fd16:2d4b:2bb8:90a8:161b::A0:a61b ',
      '[fd16:2d4b:2bb8:90a8:161b:0:a0:a61b]',
    ];
    for (const form of forms) {
      expect((await registry.findByIp6(form, T0))?.id, form).toBe(z.id);
    }
    expect((await registry.findByIp6(uncompressed(a.ip6).toUpperCase(), T0))?.id).toBe(a.id);
  });

  it('finds nothing, without throwing, for other or invalid addresses', async () => {
    await registry.upsert(registration(a));
    const misses = [
      b.ip6, // a mesh address nobody registered
      '2001:db8::1',
      '::1',
      '::',
      'fd00::1::2',
      '1.2.3.4',
      '::ffff:1.2.3.4',
      'fd16:2d4b:2bb8:90a8:161b:0:a0:a61b:1',
      'not an address',
      '',
    ];
    for (const ip6 of misses) {
      expect(await registry.findByIp6(ip6, T0), ip6).toBeUndefined();
    }
  });

  it('does not find an expired node by address', async () => {
    await registry.upsert(registration(a));
    expect(await registry.findByIp6(a.ip6, T0 + TTL)).toBeUndefined();
  });

  it('sets and clears the session, only by the gateway holding it when told so', async () => {
    await registry.upsert(registration(a));
    expect(await registry.setSession(a.id, 'gw-1', T0 + 10)).toBe(true);
    expect(await registry.get(a.id, T0)).toMatchObject({ gatewayId: 'gw-1', lastSeen: T0 + 10 });

    // The node moved to gw-2; gw-1, late, must not clear gw-2's session.
    expect(await registry.setSession(a.id, 'gw-2', T0 + 20)).toBe(true);
    expect(await registry.setSession(a.id, null, T0 + 30, 'gw-1')).toBe(false);
    expect(await registry.get(a.id, T0)).toMatchObject({ gatewayId: 'gw-2', lastSeen: T0 + 20 });

    expect(await registry.setSession(a.id, null, T0 + 40, 'gw-2')).toBe(true);
    expect(await registry.get(a.id, T0)).toMatchObject({ gatewayId: null, lastSeen: T0 + 40 });
    // Nobody holds it now, so a conditional clear has nothing to clear.
    expect(await registry.setSession(a.id, null, T0 + 50, 'gw-2')).toBe(false);

    // Without onlyIf the change is unconditional.
    expect(await registry.setSession(a.id, 'gw-3', T0 + 60)).toBe(true);
    expect(await registry.setSession(a.id, null, T0 + 70)).toBe(true);
    expect((await registry.get(a.id, T0))?.gatewayId).toBeNull();
  });

  it('does not set a session for an unknown or expired id', async () => {
    await registry.upsert(registration(a));
    expect(await registry.setSession(b.id, 'gw-1', T0)).toBe(false);
    expect(await registry.setSession(a.id, 'gw-1', T0 + TTL)).toBe(false);
    expect(await registry.get(b.id, T0)).toBeUndefined();
    expect(await registry.countSessions('gw-1', T0)).toBe(0);
  });

  it('extends the expiry on touch, never shortening it', async () => {
    await registry.upsert(registration(a));
    expect(await registry.touch(a.id, T0 + 100, T0 + 100 + TTL)).toBe(true);
    expect(await registry.get(a.id, T0 + TTL + 50)).toMatchObject({
      lastSeen: T0 + 100,
      expiresAt: T0 + 100 + TTL,
    });

    // A late touch carrying an earlier expiry does not take time away.
    expect(await registry.touch(a.id, T0 + 200, T0 + 300)).toBe(true);
    expect(await registry.get(a.id, T0 + 200)).toMatchObject({
      lastSeen: T0 + 200,
      expiresAt: T0 + 100 + TTL,
    });
  });

  it('does not touch an unknown or expired id back to life', async () => {
    await registry.upsert(registration(a));
    expect(await registry.touch(b.id, T0, T0 + TTL)).toBe(false);
    expect(await registry.touch(a.id, T0 + TTL, T0 + 2 * TTL)).toBe(false);
    expect(await registry.get(a.id, T0 + TTL)).toBeUndefined();
  });

  it('sets and clears the push subscription, keeping only its known fields', async () => {
    await registry.upsert(registration(a));
    const fromBrowser = { ...PUSH, expirationTime: null };
    expect(await registry.setPush(a.id, fromBrowser)).toBe(true);
    expect((await registry.get(a.id, T0))?.push).toStrictEqual(PUSH);
    expect(await registry.setPush(a.id, null)).toBe(true);
    expect((await registry.get(a.id, T0))?.push).toBeNull();
    expect(await registry.setPush(b.id, PUSH)).toBe(false);
  });

  it('removes a registration', async () => {
    await registry.upsert(registration(a));
    await registry.upsert(registration(b));
    expect(await registry.remove(a.id)).toBe(true);
    expect(await registry.get(a.id, T0)).toBeUndefined();
    expect(await registry.findByIp6(a.ip6, T0)).toBeUndefined();
    expect(await registry.remove(a.id)).toBe(false);
    expect(await registry.get(b.id, T0)).toBeDefined();
    expect(await registry.count(T0)).toBe(1);
  });

  it('sweeps only expired registrations, and says how many', async () => {
    await registry.upsert(registration(a, { expiresAt: T0 + 10 }));
    await registry.upsert(registration(b, { expiresAt: T0 + 20 })); // expires exactly at sweep
    await registry.upsert(registration(c, { expiresAt: T0 + 21 }));
    expect(await registry.sweep(T0)).toBe(0);
    expect(await registry.sweep(T0 + 20)).toBe(2);
    expect(await registry.sweep(T0 + 20)).toBe(0);
    // Deleted, not merely hidden: even an earlier clock no longer sees them.
    expect(await registry.get(a.id, T0)).toBeUndefined();
    expect(await registry.findByIp6(b.ip6, T0)).toBeUndefined();
    expect(await registry.get(c.id, T0)).toBeDefined();
    expect(await registry.count(T0)).toBe(1);
  });

  it('counts live registrations and the sessions each gateway holds', async () => {
    expect(await registry.count(T0)).toBe(0);
    expect(await registry.countSessions('gw-1', T0)).toBe(0);
    await registry.upsert(registration(a, { gatewayId: 'gw-1' }));
    await registry.upsert(registration(b, { gatewayId: 'gw-1', expiresAt: T0 + 10 }));
    await registry.upsert(registration(c, { gatewayId: 'gw-2' }));
    await registry.upsert(registration(z));
    expect(await registry.count(T0)).toBe(4);
    expect(await registry.countSessions('gw-1', T0)).toBe(2);
    expect(await registry.countSessions('gw-2', T0)).toBe(1);
    expect(await registry.countSessions('gw-3', T0)).toBe(0);

    // b expires: it leaves both counts, swept or not.
    expect(await registry.count(T0 + 10)).toBe(3);
    expect(await registry.countSessions('gw-1', T0 + 10)).toBe(1);
    expect(await registry.setSession(c.id, null, T0 + 10, 'gw-2')).toBe(true);
    expect(await registry.countSessions('gw-2', T0 + 10)).toBe(0);
    expect(await registry.count(T0 + TTL)).toBe(0);
  });

  it('refuses use after close', async () => {
    await registry.upsert(registration(a));
    await registry.close();
    await expect(registry.get(a.id, T0)).rejects.toThrow();
    await expect(registry.upsert(registration(b))).rejects.toThrow();
  });
});

describe('sqlite registry file', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'rtcmesh-registry-'));
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('keeps registrations across close and reopen, in WAL mode', async () => {
    const file = join(dir, 'persist.db');
    const first = SqliteRegistry.open(file);
    await first.upsert(registration(a, { name: 'phone', push: PUSH }));
    await first.upsert(registration(z));
    await first.setSession(a.id, 'gw-1', T0 + 5);
    await first.close();

    const raw = new Database(file, { readonly: true });
    expect(raw.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(raw.pragma('user_version', { simple: true })).toBe(REGISTRY_SCHEMA_VERSION);
    raw.close();

    const second = SqliteRegistry.open(file);
    expect(await second.get(a.id, T0)).toStrictEqual(
      registration(a, { name: 'phone', push: PUSH, gatewayId: 'gw-1', lastSeen: T0 + 5 }),
    );
    expect((await second.findByIp6('fd16:2d4b:2bb8:90a8:161b::a0:a61b', T0))?.id).toBe(z.id);
    expect(await second.count(T0)).toBe(2);
    expect(await second.countSessions('gw-1', T0)).toBe(1);
    await second.close();
  });

  it('reads a stored push subscription that is not valid JSON of the right shape as none', async () => {
    const file = join(dir, 'bad-push.db');
    const registry = SqliteRegistry.open(file);
    const ids = [a, b, c, z];
    for (const identity of ids) await registry.upsert(registration(identity, { push: PUSH }));
    await registry.close();

    const raw = new Database(file);
    const corrupt = raw.prepare('UPDATE registrations SET push = ? WHERE id = ?');
    corrupt.run('{"endpoint": "https://push.exa', a.id);
    corrupt.run('{"endpoint": 1, "keys": {}}', b.id);
    corrupt.run('null', c.id);
    raw.close();

    const reopened = SqliteRegistry.open(file);
    for (const identity of [a, b, c]) {
      expect(await reopened.get(identity.id, T0)).toStrictEqual(registration(identity));
    }
    expect((await reopened.findByIp6(a.ip6, T0))?.push).toBeNull();
    expect((await reopened.get(z.id, T0))?.push).toStrictEqual(PUSH);
    await reopened.close();
  });

  it('refuses a database from a newer schema version, leaving it untouched', async () => {
    const file = join(dir, 'newer.db');
    await SqliteRegistry.open(file).close();
    const raw = new Database(file);
    raw.pragma(`user_version = ${REGISTRY_SCHEMA_VERSION + 1}`);
    raw.close();

    expect(() => SqliteRegistry.open(file)).toThrow(/schema version/);
    const check = new Database(file, { readonly: true });
    expect(check.pragma('user_version', { simple: true })).toBe(REGISTRY_SCHEMA_VERSION + 1);
    check.close();
  });
});

describe('redis registry', () => {
  it('is one registry for every gateway that shares the Redis and prefix', async () => {
    const first = await RedisRegistry.connect(await redisUrl(), { prefix: 'shared:' });
    const second = await RedisRegistry.connect(await redisUrl(), { prefix: 'shared:' });
    try {
      await first.upsert(registration(a, { push: PUSH }));
      expect(await second.setSession(a.id, 'gw-2', T0 + 1)).toBe(true);
      expect(await first.get(a.id, T0)).toMatchObject({ gatewayId: 'gw-2', push: PUSH });
      expect((await second.findByIp6(a.ip6, T0))?.id).toBe(a.id);
      expect(await first.countSessions('gw-2', T0)).toBe(1);
    } finally {
      await first.close();
      await second.close();
    }
  });

  it('forgets a session whose gateway stops refreshing it, and a refresh keeps it', async () => {
    const registry = await openRedis({ presenceTtlMs: 300 });
    try {
      const now = Date.now();
      await registry.upsert(registration(a, { expiresAt: now + TTL }));
      await registry.upsert(registration(b, { expiresAt: now + TTL }));
      expect(await registry.setSession(a.id, 'gw-1', now)).toBe(true);
      expect(await registry.setSession(b.id, 'gw-1', now)).toBe(true);
      // gw-1 keeps refreshing a's presence (as it does while a's session lives), not b's.
      for (let i = 0; i < 6; i++) {
        await new Promise((r) => setTimeout(r, 100));
        await registry.setSession(a.id, 'gw-1', Date.now());
      }
      expect((await registry.get(a.id))?.gatewayId).toBe('gw-1');
      expect((await registry.get(b.id))?.gatewayId).toBeNull();
      expect(await registry.countSessions('gw-1')).toBe(1);
      // The registration itself outlives its presence.
      expect(await registry.get(b.id)).toBeDefined();
    } finally {
      await registry.close();
    }
  });

  it('says Redis is unreachable while it is down, and works again once it is back', async () => {
    const own = await RedisServer.start({ persist: true });
    const registry = await RedisRegistry.connect(own.url);
    try {
      await registry.upsert(registration(a, { push: PUSH }));
      await own.stop();
      await expect(registry.get(a.id, T0)).rejects.toThrow(RegistryUnavailableError);
      await expect(registry.upsert(registration(b))).rejects.toThrow(RegistryUnavailableError);
      await own.restart();
      await expect
        .poll(() => registry.get(a.id, T0).catch(() => 'down'), { timeout: 10_000 })
        .toMatchObject({ id: a.id, push: PUSH });
    } finally {
      await registry.close();
      await own.close();
    }
  });
});
