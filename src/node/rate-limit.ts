/**
 * Token buckets per key (a client address, a node ID): a burst, then a steady rate. Used by
 * the gateway's HTTP and ctl limits and by the TURN server's answers to strangers.
 *
 * The table holds at most `maxKeys` buckets, in least-recently-used order. A bucket that has
 * refilled is the same as none, so the oldest is reused when it has; if even that one is
 * still draining, keys without a bucket share one overflow bucket, so a flood from many
 * addresses cannot grow the table nor buy fresh bursts by filling it.
 */

export interface RateLimit {
  /** Tokens refilled per second. */
  perSecond: number;
  /** Bucket size: how many at once. */
  burst: number;
}

interface Bucket {
  tokens: number;
  at: number;
}

export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();
  private readonly overflow: Bucket;

  constructor(
    private readonly limit: RateLimit,
    private readonly maxKeys = 100_000,
    now = Date.now(),
  ) {
    this.overflow = { tokens: limit.burst, at: now };
  }

  /** Takes one token for `key`; false when the key is over its limit. */
  take(key: string, now = Date.now()): boolean {
    let bucket = this.buckets.get(key);
    if (bucket) this.buckets.delete(key);
    else bucket = this.newBucket(now);
    if (!bucket) return this.spend(this.overflow, now);
    this.buckets.set(key, bucket); // most recently used: last
    return this.spend(bucket, now);
  }

  /** Keys with a bucket of their own. */
  get keys(): number {
    return this.buckets.size;
  }

  private newBucket(now: number): Bucket | undefined {
    if (this.buckets.size < this.maxKeys) return { tokens: this.limit.burst, at: now };
    const [oldestKey, oldest] = this.buckets.entries().next().value ?? [];
    if (oldestKey === undefined || !oldest || !this.isFull(oldest, now)) return undefined;
    this.buckets.delete(oldestKey);
    return { tokens: this.limit.burst, at: now };
  }

  private isFull(b: Bucket, now: number): boolean {
    return b.tokens + ((now - b.at) / 1000) * this.limit.perSecond >= this.limit.burst;
  }

  private spend(b: Bucket, now: number): boolean {
    const { perSecond, burst } = this.limit;
    b.tokens = Math.min(burst, b.tokens + (Math.max(0, now - b.at) / 1000) * perSecond);
    b.at = Math.max(b.at, now);
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }
}
