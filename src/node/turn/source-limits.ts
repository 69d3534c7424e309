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

interface Bucket {
  tokens: number;
  at: number;
}

/**
 * A token bucket per source, for what a server does for anyone who asks (answers to requests
 * without valid credentials). The table holds at most `maxSources`: a bucket that refilled is
 * the same as none, so the least recently used one is reused when it has; if even that one is
 * still draining, sources without a bucket share one overflow bucket, so a flood from many
 * (spoofed) sources cannot buy fresh bursts by filling the table.
 */
export class SourceBuckets {
  /** In least-recently-used order: a touched bucket moves to the end. */
  private readonly buckets = new Map<string, Bucket>();
  private readonly overflow: Bucket;

  constructor(
    private readonly perSecond: number,
    private readonly burst: number,
    private readonly maxSources: number,
    now: number,
  ) {
    this.overflow = { tokens: burst, at: now };
  }

  /** Spends one token of `source`'s bucket; false if it has none left. */
  take(source: string, now: number): boolean {
    let bucket = this.buckets.get(source);
    if (bucket) this.buckets.delete(source);
    else bucket = this.newBucket(now);
    if (!bucket) return this.spend(this.overflow, now);
    this.buckets.set(source, bucket);
    return this.spend(bucket, now);
  }

  get sources(): number {
    return this.buckets.size;
  }

  private newBucket(now: number): Bucket | undefined {
    if (this.buckets.size < this.maxSources) return { tokens: this.burst, at: now };
    const [oldestSource, oldest] = this.buckets.entries().next().value ?? [];
    if (oldestSource === undefined || !oldest || !this.isFull(oldest, now)) return undefined;
    this.buckets.delete(oldestSource);
    return { tokens: this.burst, at: now };
  }

  private isFull(b: Bucket, now: number): boolean {
    return b.tokens + ((now - b.at) / 1000) * this.perSecond >= this.burst;
  }

  private spend(b: Bucket, now: number): boolean {
    b.tokens = Math.min(this.burst, b.tokens + (Math.max(0, now - b.at) / 1000) * this.perSecond);
    b.at = Math.max(b.at, now);
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }
}
