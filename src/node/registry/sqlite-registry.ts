/**
 * The registry in SQLite (better-sqlite3), the gateway's own store in its data directory
 * (DESIGN §5). better-sqlite3 is synchronous; the methods are async only to share the
 * Registry contract with backends that are not (Redis, for cluster mode).
 */
import Database from 'better-sqlite3';
import * as z from 'zod/mini';
import type { NodeId } from '../../core/identity/index.ts';
import { parseValue } from '../../core/protocol/schema.ts';
import {
  canonicalIp6,
  checkedIp6,
  copyPush,
  type PushSubscriptionData,
  type Registration,
  type Registry,
} from './registry.ts';

/**
 * Schema migrations: entry i takes the database from user_version i to i + 1. Append only;
 * never edit an entry once released.
 */
const MIGRATIONS: readonly string[] = [
  `CREATE TABLE registrations (
     id TEXT PRIMARY KEY,
     ip6 TEXT NOT NULL,
     record TEXT NOT NULL,
     name TEXT,
     gateway_id TEXT,
     last_seen INTEGER NOT NULL,
     expires_at INTEGER NOT NULL,
     push TEXT
   ) STRICT;
   CREATE INDEX registrations_ip6 ON registrations (ip6);
   CREATE INDEX registrations_expires_at ON registrations (expires_at);
   CREATE INDEX registrations_gateway_id ON registrations (gateway_id)
     WHERE gateway_id IS NOT NULL;`,
];

export const REGISTRY_SCHEMA_VERSION = MIGRATIONS.length;

interface Row {
  id: string;
  ip6: string;
  record: string;
  name: string | null;
  gateway_id: string | null;
  last_seen: number;
  expires_at: number;
  push: string | null;
}

const pushSchema = z.object({
  endpoint: z.string(),
  keys: z.object({ p256dh: z.string(), auth: z.string() }),
});

export class SqliteRegistry implements Registry {
  private readonly statements: ReturnType<typeof prepareStatements>;

  /** Opens (creating if needed) and migrates the database at `file`; ':memory:' for none. */
  static open(file: string): SqliteRegistry {
    const db = new Database(file);
    try {
      return new SqliteRegistry(db);
    } catch (err) {
      db.close();
      throw err;
    }
  }

  private constructor(private readonly db: Database.Database) {
    // WAL: readers never block the writer, and a commit is one append. In-memory
    // databases stay in 'memory' mode, which is fine.
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    migrate(db);
    this.statements = prepareStatements(db);
  }

  async upsert(reg: Registration): Promise<void> {
    this.statements.upsert.run({
      id: reg.id,
      ip6: checkedIp6(reg),
      record: reg.record,
      name: reg.name ?? null,
      gateway_id: reg.gatewayId,
      last_seen: reg.lastSeen,
      expires_at: reg.expiresAt,
      push: pushText(reg.push),
    });
  }

  async get(id: NodeId, now = Date.now()): Promise<Registration | undefined> {
    const row = this.statements.get.get(id, now);
    return row && fromRow(row);
  }

  async findByIp6(ip6: string, now = Date.now()): Promise<Registration | undefined> {
    const canonical = canonicalIp6(ip6);
    if (canonical === undefined) return undefined;
    const row = this.statements.findByIp6.get(canonical, now);
    return row && fromRow(row);
  }

  async setSession(
    id: NodeId,
    gatewayId: string | null,
    now: number,
    onlyIf?: string,
  ): Promise<boolean> {
    const result = this.statements.setSession.run({
      id,
      gw: gatewayId,
      now,
      onlyIf: onlyIf ?? null,
    });
    return result.changes > 0;
  }

  async touch(id: NodeId, now: number, expiresAt: number): Promise<boolean> {
    return this.statements.touch.run({ id, now, expiresAt }).changes > 0;
  }

  async setPush(id: NodeId, push: PushSubscriptionData | null): Promise<boolean> {
    return this.statements.setPush.run(pushText(push), id).changes > 0;
  }

  async remove(id: NodeId): Promise<boolean> {
    return this.statements.remove.run(id).changes > 0;
  }

  async sweep(now: number): Promise<number> {
    return this.statements.sweep.run(now).changes;
  }

  async count(now = Date.now()): Promise<number> {
    return this.statements.count.get(now) ?? 0;
  }

  async countSessions(gatewayId: string, now = Date.now()): Promise<number> {
    return this.statements.countSessions.get(gatewayId, now) ?? 0;
  }

  async close(): Promise<void> {
    this.db.close();
  }
}

function prepareStatements(db: Database.Database) {
  return {
    upsert: db.prepare<Row>(
      `INSERT INTO registrations (id, ip6, record, name, gateway_id, last_seen, expires_at, push)
       VALUES (@id, @ip6, @record, @name, @gateway_id, @last_seen, @expires_at, @push)
       ON CONFLICT (id) DO UPDATE SET
         ip6 = excluded.ip6, record = excluded.record, name = excluded.name,
         gateway_id = excluded.gateway_id, last_seen = excluded.last_seen,
         expires_at = excluded.expires_at, push = excluded.push`,
    ),
    get: db.prepare<[string, number], Row>(
      'SELECT * FROM registrations WHERE id = ? AND expires_at > ?',
    ),
    findByIp6: db.prepare<[string, number], Row>(
      'SELECT * FROM registrations WHERE ip6 = ? AND expires_at > ? LIMIT 1',
    ),
    setSession: db.prepare<{ id: string; gw: string | null; now: number; onlyIf: string | null }>(
      `UPDATE registrations SET gateway_id = @gw, last_seen = @now
       WHERE id = @id AND expires_at > @now AND (@onlyIf IS NULL OR gateway_id = @onlyIf)`,
    ),
    touch: db.prepare<{ id: string; now: number; expiresAt: number }>(
      `UPDATE registrations SET last_seen = @now, expires_at = max(expires_at, @expiresAt)
       WHERE id = @id AND expires_at > @now`,
    ),
    setPush: db.prepare<[string | null, string]>('UPDATE registrations SET push = ? WHERE id = ?'),
    remove: db.prepare<[string]>('DELETE FROM registrations WHERE id = ?'),
    sweep: db.prepare<[number]>('DELETE FROM registrations WHERE expires_at <= ?'),
    count: db
      .prepare<[number], number>('SELECT count(*) FROM registrations WHERE expires_at > ?')
      .pluck(),
    countSessions: db
      .prepare<[string, number], number>(
        'SELECT count(*) FROM registrations WHERE gateway_id = ? AND expires_at > ?',
      )
      .pluck(),
  };
}

/** Brings the schema to REGISTRY_SCHEMA_VERSION, refusing a database from a newer version. */
function migrate(db: Database.Database): void {
  // IMMEDIATE takes the write lock before reading the version, so two processes opening
  // one new file cannot both run the same migration.
  db.transaction(() => {
    const version = db.pragma('user_version', { simple: true });
    if (typeof version !== 'number' || version > MIGRATIONS.length) {
      throw new Error(
        `registry database schema version ${String(version)} is newer than this rtcmesh ` +
          `understands (${MIGRATIONS.length})`,
      );
    }
    for (const sql of MIGRATIONS.slice(version)) db.exec(sql);
    db.pragma(`user_version = ${MIGRATIONS.length}`);
  }).immediate();
}

function fromRow(row: Row): Registration {
  const reg: Registration = {
    id: row.id as NodeId,
    ip6: row.ip6,
    record: row.record,
    gatewayId: row.gateway_id,
    lastSeen: row.last_seen,
    expiresAt: row.expires_at,
    push: parsePush(row.push),
  };
  if (row.name !== null) reg.name = row.name;
  return reg;
}

/** Only the known fields: a browser's subscription JSON carries more (expirationTime). */
function pushText(push: PushSubscriptionData | null): string | null {
  return push && JSON.stringify(copyPush(push));
}

/** A stored subscription that is not valid JSON of the right shape reads as none. */
function parsePush(text: string | null): PushSubscriptionData | null {
  if (text === null) return null;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return null;
  }
  const parsed = parseValue(pushSchema, value);
  return parsed.ok ? parsed.value : null;
}
