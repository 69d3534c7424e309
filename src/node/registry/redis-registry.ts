/**
 * The registry on Redis (ioredis), for cluster mode (DESIGN §5): every gateway of a cluster
 * reads and writes the same registrations, push subscriptions and presence.
 *
 * Keys, under a prefix (default `rtcmesh:`):
 *   reg:<id>    hash: ip6, record, name?, lastSeen, expiresAt, push? (JSON)
 *   ip6:<ip6>   the node ID at a canonical mesh IPv6
 *   exp         sorted set: node ID by expiresAt (count, sweep)
 *   at:<id>     presence: the gateway holding the node's session, with a TTL that the
 *               gateway refreshes while the session lives (a dead gateway's nodes fall
 *               back to "no session" by themselves)
 *   on:<gw>     set: node IDs whose presence names gateway <gw> (countSessions; may hold
 *               stale members, checked against at:<id>)
 *
 * Expiry of registrations follows the contract's `now` (a registration is live while
 * now < expiresAt) and sweep deletes; presence expires in Redis's own time. Multi-key
 * updates run as Lua scripts, so each is atomic. One Redis (or a primary with replicas),
 * not Redis Cluster: the scripts touch keys they compute.
 */
import { Redis } from 'ioredis';
import type { NodeId } from '../../core/identity/index.ts';
import {
  canonicalIp6,
  checkedIp6,
  copyPush,
  type PushSubscriptionData,
  type Registration,
  type Registry,
  RegistryUnavailableError,
} from './registry.ts';

export const DEFAULT_REDIS_PREFIX = 'rtcmesh:';
/** How long presence lasts without a refresh. */
export const DEFAULT_PRESENCE_TTL_MS = 30_000;

export interface RedisRegistryOptions {
  prefix?: string;
  presenceTtlMs?: number;
}

// Sets or clears at:<id> and keeps on:<gw> in step. ARGV: prefix, id, gateway ('' clears), ttl.
const SET_AT = `
local function setAt(p, id, gw, ttl)
  local at = p .. 'at:' .. id
  local old = redis.call('GET', at)
  if old then redis.call('SREM', p .. 'on:' .. old, id) end
  if gw == '' then
    redis.call('DEL', at)
  else
    redis.call('SET', at, gw, 'PX', ttl)
    redis.call('SADD', p .. 'on:' .. gw, id)
  end
end
local function removeReg(p, id)
  local reg = p .. 'reg:' .. id
  local ip6 = redis.call('HGET', reg, 'ip6')
  if not ip6 then return 0 end
  redis.call('DEL', reg)
  local ip6key = p .. 'ip6:' .. ip6
  if redis.call('GET', ip6key) == id then redis.call('DEL', ip6key) end
  redis.call('ZREM', p .. 'exp', id)
  setAt(p, id, '', 0)
  return 1
end
`;

const UPSERT = `${SET_AT}
local p, id = ARGV[1], ARGV[2]
local reg = p .. 'reg:' .. id
redis.call('DEL', reg)
redis.call('HSET', reg, 'ip6', ARGV[3], 'record', ARGV[4], 'lastSeen', ARGV[6], 'expiresAt', ARGV[7])
if string.sub(ARGV[5], 1, 1) == '+' then redis.call('HSET', reg, 'name', string.sub(ARGV[5], 2)) end
if ARGV[8] ~= '' then redis.call('HSET', reg, 'push', ARGV[8]) end
redis.call('SET', p .. 'ip6:' .. ARGV[3], id)
redis.call('ZADD', p .. 'exp', ARGV[7], id)
setAt(p, id, ARGV[9], ARGV[10])
return 1`;

// ARGV: prefix, id, gateway ('' clears), now, ttl, onlyIf ('' none), hasOnlyIf ('1'/'0').
const SET_SESSION = `${SET_AT}
local p, id = ARGV[1], ARGV[2]
local reg = p .. 'reg:' .. id
local exp = redis.call('HGET', reg, 'expiresAt')
if not exp or tonumber(exp) <= tonumber(ARGV[4]) then return 0 end
if ARGV[7] == '1' and redis.call('GET', p .. 'at:' .. id) ~= ARGV[6] then return 0 end
setAt(p, id, ARGV[3], ARGV[5])
redis.call('HSET', reg, 'lastSeen', ARGV[4])
return 1`;

// ARGV: prefix, id, now, expiresAt.
const TOUCH = `
local p, id = ARGV[1], ARGV[2]
local reg = p .. 'reg:' .. id
local exp = redis.call('HGET', reg, 'expiresAt')
if not exp or tonumber(exp) <= tonumber(ARGV[3]) then return 0 end
local later = math.max(tonumber(exp), tonumber(ARGV[4]))
redis.call('HSET', reg, 'lastSeen', ARGV[3], 'expiresAt', string.format('%.0f', later))
redis.call('ZADD', p .. 'exp', later, id)
return 1`;

// ARGV: prefix, id, push JSON ('' clears).
const SET_PUSH = `
local reg = ARGV[1] .. 'reg:' .. ARGV[2]
if redis.call('EXISTS', reg) == 0 then return 0 end
if ARGV[3] == '' then redis.call('HDEL', reg, 'push') else redis.call('HSET', reg, 'push', ARGV[3]) end
return 1`;

const REMOVE = `${SET_AT}
return removeReg(ARGV[1], ARGV[2])`;

// ARGV: prefix, now.
const SWEEP = `${SET_AT}
local p = ARGV[1]
local ids = redis.call('ZRANGEBYSCORE', p .. 'exp', '-inf', ARGV[2])
local n = 0
for _, id in ipairs(ids) do
  n = n + removeReg(p, id)
  redis.call('ZREM', p .. 'exp', id)
end
return n`;

// ARGV: prefix, gateway, now.
const COUNT_SESSIONS = `
local p, gw = ARGV[1], ARGV[2]
local n = 0
for _, id in ipairs(redis.call('SMEMBERS', p .. 'on:' .. gw)) do
  if redis.call('GET', p .. 'at:' .. id) ~= gw then
    redis.call('SREM', p .. 'on:' .. gw, id)
  else
    local exp = redis.call('HGET', p .. 'reg:' .. id, 'expiresAt')
    if exp and tonumber(exp) > tonumber(ARGV[3]) then n = n + 1 end
  end
end
return n`;

export class RedisRegistry implements Registry {
  readonly prefix: string;
  readonly presenceTtlMs: number;
  private closed = false;

  /**
   * A registry on `client`. With `ownsClient`, close() ends the connection; otherwise its
   * owner (the gateway's cluster bus) does.
   */
  constructor(
    readonly client: Redis,
    options: RedisRegistryOptions = {},
    private readonly ownsClient = false,
  ) {
    this.prefix = options.prefix ?? DEFAULT_REDIS_PREFIX;
    this.presenceTtlMs = options.presenceTtlMs ?? DEFAULT_PRESENCE_TTL_MS;
  }

  /** Connects to `url` and resolves once Redis answers (rejects after `timeoutMs`). */
  static async connect(
    url: string,
    options: RedisRegistryOptions & { timeoutMs?: number } = {},
  ): Promise<RedisRegistry> {
    const client = await connectRedis(url, options.timeoutMs);
    return new RedisRegistry(client, options, true);
  }

  async upsert(reg: Registration): Promise<void> {
    const ip6 = checkedIp6(reg);
    await this.run(UPSERT, [
      reg.id,
      ip6,
      reg.record,
      reg.name === undefined ? '-' : `+${reg.name}`,
      String(reg.lastSeen),
      String(reg.expiresAt),
      pushText(reg.push),
      reg.gatewayId ?? '',
      String(this.presenceTtlMs),
    ]);
  }

  async get(id: NodeId, now = Date.now()): Promise<Registration | undefined> {
    this.assertOpen();
    const replies = await this.guard(() =>
      this.client.multi().hgetall(`${this.prefix}reg:${id}`).get(`${this.prefix}at:${id}`).exec(),
    );
    const [hash, at] = (replies ?? []).map(([err, value]) => {
      if (err) throw err;
      return value;
    }) as [Record<string, string> | undefined, string | null | undefined];
    return fromHash(id, hash, at ?? null, now);
  }

  async findByIp6(ip6: string, now = Date.now()): Promise<Registration | undefined> {
    this.assertOpen();
    const canonical = canonicalIp6(ip6);
    if (canonical === undefined) return undefined;
    const id = await this.guard(() => this.client.get(`${this.prefix}ip6:${canonical}`));
    return id ? this.get(id as NodeId, now) : undefined;
  }

  async setSession(
    id: NodeId,
    gatewayId: string | null,
    now: number,
    onlyIf?: string,
  ): Promise<boolean> {
    const done = await this.run(SET_SESSION, [
      id,
      gatewayId ?? '',
      String(now),
      String(this.presenceTtlMs),
      onlyIf ?? '',
      onlyIf === undefined ? '0' : '1',
    ]);
    return done === 1;
  }

  async touch(id: NodeId, now: number, expiresAt: number): Promise<boolean> {
    return (await this.run(TOUCH, [id, String(now), String(expiresAt)])) === 1;
  }

  async setPush(id: NodeId, push: PushSubscriptionData | null): Promise<boolean> {
    return (await this.run(SET_PUSH, [id, pushText(push)])) === 1;
  }

  async remove(id: NodeId): Promise<boolean> {
    return (await this.run(REMOVE, [id])) === 1;
  }

  async sweep(now: number): Promise<number> {
    return Number(await this.run(SWEEP, [String(now)]));
  }

  async count(now = Date.now()): Promise<number> {
    this.assertOpen();
    return this.guard(() => this.client.zcount(`${this.prefix}exp`, `(${now}`, '+inf'));
  }

  async countSessions(gatewayId: string, now = Date.now()): Promise<number> {
    return Number(await this.run(COUNT_SESSIONS, [gatewayId, String(now)]));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.ownsClient) await this.client.quit().catch(() => this.client.disconnect());
  }

  private async run(script: string, args: string[]): Promise<unknown> {
    this.assertOpen();
    return this.guard(() => this.client.eval(script, 0, this.prefix, ...args));
  }

  /** Redis errors while the connection is down become RegistryUnavailableError. */
  private async guard<T>(command: () => Promise<T>): Promise<T> {
    if (this.client.status !== 'ready')
      throw new RegistryUnavailableError(`Redis is unreachable (${this.client.status})`);
    try {
      return await command();
    } catch (err) {
      // The socket can be gone a moment before ioredis leaves 'ready': its error says so.
      if (this.client.status !== 'ready' || isConnectionError(err))
        throw new RegistryUnavailableError(`Redis is unreachable: ${(err as Error).message}`);
      throw err;
    }
  }

  private assertOpen(): void {
    if (this.closed) throw new Error('the registry is closed');
  }
}

/** ioredis's errors for a connection that is gone (as opposed to an answer from Redis). */
function isConnectionError(err: unknown): boolean {
  const message = err instanceof Error ? err.message : '';
  const code = (err as NodeJS.ErrnoException | undefined)?.code ?? '';
  return (
    /Stream isn't writeable|Connection is closed|Reached the max retries per request/.test(
      message,
    ) || ['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT'].includes(code)
  );
}

/**
 * A client that fails commands at once while disconnected (no offline queue: a dial must not
 * hang while Redis is away) and reconnects by itself forever, with a capped delay.
 */
export function redisClient(url: string, name: string): Redis {
  const client = new Redis(url, {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    connectionName: name,
    lazyConnect: true,
    retryStrategy: (times) => Math.min(100 * times, 1000),
    // Presence and pub/sub must not wait behind a dead TCP connection for minutes.
    connectTimeout: 5000,
    keepAlive: 5000,
  });
  // Without a listener ioredis prints every connection error; the gateway reports state itself.
  client.on('error', () => {});
  return client;
}

/** A client that is ready, or an error saying Redis could not be reached in time. */
export async function connectRedis(
  url: string,
  timeoutMs = 15_000,
  name = 'rtcmesh',
): Promise<Redis> {
  const client = redisClient(url, name);
  client.connect().catch(() => {}); // retried by retryStrategy; readiness is awaited below
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`cannot reach Redis at ${redactUrl(url)} within ${timeoutMs} ms`)),
        timeoutMs,
      );
      client.once('ready', () => {
        clearTimeout(timer);
        resolve();
      });
    });
  } catch (err) {
    client.disconnect();
    throw err;
  }
  return client;
}

/** The URL without its password, for messages. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.href;
  } catch {
    return '(a Redis URL)';
  }
}

function fromHash(
  id: NodeId,
  hash: Record<string, string> | undefined,
  at: string | null,
  now: number,
): Registration | undefined {
  if (!hash?.ip6 || hash.record === undefined) return undefined;
  const expiresAt = Number(hash.expiresAt);
  if (!(expiresAt > now)) return undefined;
  const reg: Registration = {
    id,
    ip6: hash.ip6,
    record: hash.record,
    gatewayId: at,
    lastSeen: Number(hash.lastSeen),
    expiresAt,
    push: parsePush(hash.push),
  };
  if (hash.name !== undefined) reg.name = hash.name;
  return reg;
}

function pushText(push: PushSubscriptionData | null): string {
  return push ? JSON.stringify(copyPush(push)) : '';
}

function parsePush(text: string | undefined): PushSubscriptionData | null {
  if (!text) return null;
  try {
    const value = JSON.parse(text) as PushSubscriptionData;
    const ok =
      typeof value?.endpoint === 'string' &&
      typeof value.keys?.p256dh === 'string' &&
      typeof value.keys.auth === 'string';
    return ok ? copyPush(value) : null;
  } catch {
    return null;
  }
}
