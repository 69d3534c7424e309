/** Remembers request-token IDs until they expire, so a captured request cannot be replayed. */

export interface ReplayGuard {
  /** True the first time `key` is seen; false for a replay. */
  firstSeen(key: string, expiresAtS: number, nowS: number): Promise<boolean>;
}

export class MemoryReplayGuard implements ReplayGuard {
  private readonly seen = new Map<string, number>();
  private nextSweepS = 0;

  constructor(private readonly maxEntries = 1_000_000) {}

  async firstSeen(key: string, expiresAtS: number, nowS: number): Promise<boolean> {
    if (nowS >= this.nextSweepS || this.seen.size >= this.maxEntries) this.sweep(nowS);
    const known = this.seen.get(key);
    if (known !== undefined && known > nowS) return false;
    if (this.seen.size >= this.maxEntries) {
      // Tokens live at most minutes, so this only happens under a flood: refuse rather than forget.
      throw new Error('replay guard is full; try again shortly');
    }
    this.seen.set(key, expiresAtS);
    return true;
  }

  get size(): number {
    return this.seen.size;
  }

  private sweep(nowS: number): void {
    for (const [key, exp] of this.seen) if (exp <= nowS) this.seen.delete(key);
    this.nextSweepS = nowS + 30;
  }
}
