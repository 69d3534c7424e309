/** The registry in process memory: for tests and for a gateway run without a data directory. */
import type { NodeId } from '../../core/identity/index.ts';
import {
  canonicalIp6,
  checkedIp6,
  copyPush,
  copyRegistration,
  type PushSubscriptionData,
  type Registration,
  type Registry,
} from './registry.ts';

export class MemoryRegistry implements Registry {
  private readonly byId = new Map<NodeId, Registration>();
  /** Canonical mesh IPv6 text → node ID. */
  private readonly byIp6 = new Map<string, NodeId>();
  private closed = false;

  async upsert(reg: Registration): Promise<void> {
    this.assertOpen();
    const ip6 = checkedIp6(reg);
    // Copied in, as copies go out: a caller mutating its object must not change the store.
    this.byId.set(reg.id, { ...copyRegistration(reg), ip6 });
    this.byIp6.set(ip6, reg.id);
  }

  async get(id: NodeId, now = Date.now()): Promise<Registration | undefined> {
    this.assertOpen();
    const reg = this.live(id, now);
    return reg && copyRegistration(reg);
  }

  async findByIp6(ip6: string, now = Date.now()): Promise<Registration | undefined> {
    this.assertOpen();
    const canonical = canonicalIp6(ip6);
    const id = canonical === undefined ? undefined : this.byIp6.get(canonical);
    return id === undefined ? undefined : this.get(id, now);
  }

  async setSession(
    id: NodeId,
    gatewayId: string | null,
    now: number,
    onlyIf?: string,
  ): Promise<boolean> {
    this.assertOpen();
    const reg = this.live(id, now);
    if (!reg || (onlyIf !== undefined && reg.gatewayId !== onlyIf)) return false;
    reg.gatewayId = gatewayId;
    reg.lastSeen = now;
    return true;
  }

  async touch(id: NodeId, now: number, expiresAt: number): Promise<boolean> {
    this.assertOpen();
    const reg = this.live(id, now);
    if (!reg) return false;
    reg.lastSeen = now;
    reg.expiresAt = Math.max(reg.expiresAt, expiresAt);
    return true;
  }

  async setPush(id: NodeId, push: PushSubscriptionData | null): Promise<boolean> {
    this.assertOpen();
    const reg = this.byId.get(id);
    if (!reg) return false;
    reg.push = copyPush(push);
    return true;
  }

  async remove(id: NodeId): Promise<boolean> {
    this.assertOpen();
    const reg = this.byId.get(id);
    if (!reg) return false;
    this.delete(reg);
    return true;
  }

  async sweep(now: number): Promise<number> {
    this.assertOpen();
    let removed = 0;
    for (const reg of this.byId.values()) {
      if (reg.expiresAt <= now) {
        this.delete(reg);
        removed++;
      }
    }
    return removed;
  }

  async count(now = Date.now()): Promise<number> {
    this.assertOpen();
    let n = 0;
    for (const reg of this.byId.values()) if (reg.expiresAt > now) n++;
    return n;
  }

  async countSessions(gatewayId: string, now = Date.now()): Promise<number> {
    this.assertOpen();
    let n = 0;
    for (const reg of this.byId.values()) {
      if (reg.expiresAt > now && reg.gatewayId === gatewayId) n++;
    }
    return n;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.byId.clear();
    this.byIp6.clear();
  }

  /** The stored object itself (never handed out), when live at `now`. */
  private live(id: NodeId, now: number): Registration | undefined {
    const reg = this.byId.get(id);
    return reg && reg.expiresAt > now ? reg : undefined;
  }

  private delete(reg: Registration): void {
    this.byId.delete(reg.id);
    // Two IDs sharing 120 bits is all but impossible; still, never unindex another node.
    if (this.byIp6.get(reg.ip6) === reg.id) this.byIp6.delete(reg.ip6);
  }

  private assertOpen(): void {
    // Like SqliteRegistry, whose statements throw once the database is closed.
    if (this.closed) throw new Error('the registry is closed');
  }
}
