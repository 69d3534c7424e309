/**
 * Limits per source, where a source is what one party cannot cheaply multiply: an IPv4 address,
 * or an IPv6 /64 (one subscriber's network). Identities are free to make, so limits per user
 * alone let one address take everything; these make it take at most a share. A source's key
 * is `addressKey` (stun/ip.ts), the same the gateway's HTTP limits use.
 */

/**
 * How many slots (allocations, reservations, Allocates in progress) each source holds, at most
 * `perSource` each. Only sources holding a slot have an entry, so the table is bounded by the
 * global allocation cap.
 */
export class SourceShares {
  private readonly held = new Map<string, number>();

  constructor(private readonly perSource: number) {}

  heldBy(source: string): number {
    return this.held.get(source) ?? 0;
  }

  /** Takes one slot for `source`; false if it already holds its share. */
  take(source: string): boolean {
    const n = this.heldBy(source);
    if (n >= this.perSource) return false;
    this.held.set(source, n + 1);
    return true;
  }

  release(source: string): void {
    const n = this.heldBy(source) - 1;
    if (n > 0) this.held.set(source, n);
    else this.held.delete(source);
  }

  get sources(): number {
    return this.held.size;
  }

  clear(): void {
    this.held.clear();
  }
}
