/**
 * One TURN allocation (RFC 8656 §2.2): a relay socket for one client 5-tuple, with its
 * lifetime, permissions (per peer IP, 300 s) and channel bindings (per peer IP and port,
 * 600 s). Expiry is checked on use, with a sweep to free what nobody uses.
 */
import type { Socket } from 'node:dgram';
import type { TransportAddress } from '../stun/address.ts';
import type { TurnClient } from './client.ts';

export const PERMISSION_LIFETIME_MS = 300_000;
export const CHANNEL_LIFETIME_MS = 600_000;
/** After a binding expires, its number and peer stay tied for this long (RFC 8656 §12). */
export const CHANNEL_COOLDOWN_MS = 300_000;

interface ChannelBinding {
  peer: TransportAddress;
  expiresAt: number;
}

export type ChannelBindRefusal = 'channel-taken' | 'peer-taken' | 'full';

export const peerKey = (p: TransportAddress): string => `${p.address}|${p.port}`;

export class Allocation {
  private readonly permissions = new Map<string, number>();
  private readonly channels = new Map<number, ChannelBinding>();
  private readonly channelOfPeer = new Map<string, number>();
  /** When the client last sent anything for it (ms): how a user's stalest one is found. */
  lastHeard = 0;

  constructor(
    readonly client: TurnClient,
    /** The full username that made it: later requests must use the same (441). */
    readonly username: string,
    /** Whose quota it counts against. */
    readonly user: string,
    readonly relay: Socket,
    readonly relayAddress: TransportAddress,
    public expiresAt: number,
    /** The Allocate that made it, so a retransmission gets the same response. */
    readonly transactionId: string,
    public response: Uint8Array,
    private readonly limits: { permissions: number; channels: number },
  ) {}

  hasPermission(ip: string, now: number): boolean {
    return (this.permissions.get(ip) ?? 0) > now;
  }

  /** How many of these IPs would be new permissions. */
  newPermissions(ips: readonly string[], now: number): number {
    return new Set(ips.filter((ip) => !this.hasPermission(ip, now))).size;
  }

  canAddPermissions(ips: readonly string[], now: number): boolean {
    this.sweep(now);
    return this.permissions.size + this.newPermissions(ips, now) <= this.limits.permissions;
  }

  permit(ip: string, now: number): void {
    this.permissions.set(ip, now + PERMISSION_LIFETIME_MS);
  }

  /** Binds (or refreshes) `channel` to `peer`; refuses what RFC 8656 §12 forbids. */
  bindChannel(
    channel: number,
    peer: TransportAddress,
    now: number,
  ): ChannelBindRefusal | undefined {
    this.sweep(now);
    const existing = this.channels.get(channel);
    const key = peerKey(peer);
    if (existing && peerKey(existing.peer) !== key) return 'channel-taken';
    const other = this.channelOfPeer.get(key);
    if (other !== undefined && other !== channel) return 'peer-taken';
    if (!existing && this.channels.size >= this.limits.channels) return 'full';
    this.channels.set(channel, { peer, expiresAt: now + CHANNEL_LIFETIME_MS });
    this.channelOfPeer.set(key, channel);
    this.permit(peer.address, now);
    return undefined;
  }

  /** The peer a live channel is bound to. */
  peerOf(channel: number, now: number): TransportAddress | undefined {
    const b = this.channels.get(channel);
    return b && b.expiresAt > now ? b.peer : undefined;
  }

  /** The live channel bound to this peer, if any. */
  channelOf(peer: TransportAddress, now: number): number | undefined {
    const channel = this.channelOfPeer.get(peerKey(peer));
    return channel !== undefined && (this.channels.get(channel)?.expiresAt ?? 0) > now
      ? channel
      : undefined;
  }

  get permissionCount(): number {
    return this.permissions.size;
  }

  get channelCount(): number {
    return this.channels.size;
  }

  /** Forgets expired permissions, and channel bindings past their cooldown. */
  sweep(now: number): void {
    for (const [ip, expiresAt] of this.permissions)
      if (expiresAt <= now) this.permissions.delete(ip);
    for (const [channel, b] of this.channels) {
      if (b.expiresAt + CHANNEL_COOLDOWN_MS <= now) {
        this.channels.delete(channel);
        this.channelOfPeer.delete(peerKey(b.peer));
      }
    }
  }
}
