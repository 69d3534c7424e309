/**
 * Every node's live session on this gateway (DESIGN §2): the table of sessions, the dial
 * party each one is, idle sweeps, registration and (cluster mode) presence. Signaling and
 * the cluster bus reach nodes through it.
 */
import type { NodeId, VerifiedRecord } from '../../core/identity/index.ts';
import type { GatewayToNode, NodeToGateway } from '../../core/protocol/messages.ts';
import type { Logger } from '../log.ts';
import { type Registry, registrationOf } from '../registry/index.ts';
import type { GatewayLimits } from './limits.ts';
import type { Association } from './rtc-endpoint.ts';
import { GatewaySession } from './session.ts';
import type { DialParty } from './signaling.ts';

export interface SessionTableEvents {
  /** A session's ctl opened: calls waiting for the node go to it. */
  opened(party: DialParty): void;
  /** A session ended (not replaced): its dials end. */
  gone(party: DialParty): void;
  message(session: GatewaySession, party: DialParty, msg: NodeToGateway): void;
  invalid(): void;
}

export interface SessionTableOptions {
  gatewayId: NodeId;
  registry: Registry;
  limits: GatewayLimits;
  logger: Logger;
  events: SessionTableEvents;
  /** Cluster mode: presence is kept in Redis and refreshed while this says Redis is up. */
  presence: (() => boolean) | undefined;
}

/** How often a cluster gateway refreshes the presence of its sessions in Redis. */
const PRESENCE_REFRESH_MS = 10_000;
const IDLE_CHECK_MS = 5000;

export class SessionTable {
  private readonly sessions = new Map<NodeId, GatewaySession>();
  /** One party per session, so a dial's party is recognised when its session goes away. */
  private readonly parties = new WeakMap<GatewaySession, DialParty>();
  private readonly timers: ReturnType<typeof setInterval>[] = [];
  private lastRegistryWarning = 0;
  /**
   * Sessions whose association is not up yet, counted per client address (an address is
   * listed only while it has one): the connect handler asks at every connect.
   */
  private readonly connecting = new Set<GatewaySession>();
  private readonly connectingPerAddress = new Map<string, number>();

  constructor(private readonly options: SessionTableOptions) {
    const { limits } = options;
    this.timers.push(
      setInterval(() => {
        const idleSince = Date.now() - limits.sessionIdleMs;
        for (const s of this.sessions.values())
          if (s.isOpen && s.lastHeard < idleSince) s.close('idle');
      }, IDLE_CHECK_MS),
    );
    if (options.presence)
      this.timers.push(setInterval(() => void this.refreshPresence(), PRESENCE_REFRESH_MS));
    for (const t of this.timers) t.unref();
  }

  get size(): number {
    return this.sessions.size;
  }

  has(id: NodeId): boolean {
    return this.sessions.has(id);
  }

  /** Sessions whose ctl is open. */
  get openCount(): number {
    let n = 0;
    for (const s of this.sessions.values()) if (s.isOpen) n++;
    return n;
  }

  /** Sessions from one client address whose association is not up yet. */
  connectingFrom(source: string): number {
    return this.connectingPerAddress.get(source) ?? 0;
  }

  /** The dial party of a node with an open session here. */
  party(id: NodeId): DialParty | undefined {
    const session = this.sessions.get(id);
    return session?.isOpen ? this.partyOf(session) : undefined;
  }

  /** Hands a message to this gateway's session of `id`; false when there is none. */
  deliver(id: NodeId, msg: GatewayToNode): boolean {
    const session = this.sessions.get(id);
    return session?.isOpen === true && session.send(msg);
  }

  /**
   * A new session for a node (its association answered); a session the node had is replaced
   * (DESIGN §6: a new connect from the same node wins).
   */
  open(
    id: NodeId,
    record: VerifiedRecord,
    source: string,
    association: Association,
    /** Told when the session's ctl opens (the data channel takes one open listener: ours). */
    onOpen?: () => void,
  ): void {
    const { registry, gatewayId, events, limits } = this.options;
    const session = new GatewaySession(id, record, source, association, limits.messagesPerSession, {
      open: (s) => {
        this.settled(s);
        onOpen?.();
        void registry
          .setSession(s.id, gatewayId, Date.now())
          .catch((err: unknown) => this.registryError('recording a session', err));
        events.opened(this.partyOf(s));
      },
      message: (s, msg) => events.message(s, this.partyOf(s), msg),
      invalid: () => events.invalid(),
      close: (s) => {
        this.settled(s);
        if (this.sessions.get(s.id) !== s) return; // replaced by a newer session
        this.sessions.delete(s.id);
        events.gone(this.partyOf(s));
        void registry
          .setSession(s.id, null, Date.now(), gatewayId)
          .catch((err: unknown) => this.registryError('ending a session', err));
      },
    });
    this.connecting.add(session);
    this.connectingPerAddress.set(source, this.connectingFrom(source) + 1);
    const previous = this.sessions.get(id);
    this.sessions.set(id, session);
    previous?.close('replaced');
    // A session replaced before it opened says nothing when it closes.
    if (previous) this.settled(previous);
  }

  /** A session is no longer connecting (it opened or closed): it leaves the per-address count. */
  private settled(session: GatewaySession): void {
    if (!this.connecting.delete(session)) return;
    const left = this.connectingFrom(session.remoteAddress) - 1;
    if (left > 0) this.connectingPerAddress.set(session.remoteAddress, left);
    else this.connectingPerAddress.delete(session.remoteAddress);
  }

  /** Redis is back: this gateway's sessions are asserted again (registration and presence). */
  assert(): void {
    void this.refreshPresence();
  }

  close(reason: string): void {
    for (const t of this.timers) clearInterval(t);
    for (const session of [...this.sessions.values()]) session.close(reason);
  }

  /** Says a registry failure in the background at most every few seconds; never throws. */
  registryError(what: string, err: unknown): void {
    const now = Date.now();
    if (now - this.lastRegistryWarning < 5000) return;
    this.lastRegistryWarning = now;
    this.options.logger.warn({ err }, `${what} failed`);
  }

  private partyOf(session: GatewaySession): DialParty {
    let party = this.parties.get(session);
    if (!party) {
      party = {
        id: session.id,
        source: session.remoteAddress,
        deliver: (msg) => session.send(msg),
      };
      this.parties.set(session, party);
    }
    return party;
  }

  /**
   * Cluster mode: keeps the presence of every open session alive in Redis (it expires unless
   * refreshed, so a gateway that dies leaves no node falsely "connected" for long).
   */
  private async refreshPresence(): Promise<void> {
    const { registry, gatewayId, limits, presence } = this.options;
    if (!presence?.()) return;
    const now = Date.now();
    await Promise.all(
      [...this.sessions.values()]
        .filter((s) => s.isOpen)
        .map(async (s) => {
          // False when the registration is gone (a Redis that lost its data): write it again.
          if (await registry.setSession(s.id, gatewayId, now)) return;
          const existing = await registry.get(s.id, now);
          await registry.upsert(
            registrationOf(s.record, {
              gatewayId: s.isOpen ? gatewayId : (existing?.gatewayId ?? null),
              lastSeen: now,
              expiresAt: Math.max(existing?.expiresAt ?? 0, now + limits.registrationTtlMs),
              push: existing?.push ?? null,
            }),
          );
        }),
    ).catch((err: unknown) => this.registryError('refreshing presence', err));
  }
}
