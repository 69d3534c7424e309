/** Per-user quotas: how many allocations a user holds, and a byte budget for what they relay. */

export class UserQuotas {
  private readonly allocations = new Map<string, number>();
  private readonly budgets = new Map<string, { bytes: number; at: number }>();

  constructor(
    private readonly maxAllocations: number,
    /** Relayed bytes per second per user, both directions together; the bucket holds one second. */
    private readonly bytesPerSecond: number,
  ) {}

  allocationsOf(user: string): number {
    return this.allocations.get(user) ?? 0;
  }

  /** Counts one more allocation for `user`; false (486) if that would pass the quota. */
  takeAllocation(user: string): boolean {
    const n = this.allocationsOf(user);
    if (n >= this.maxAllocations) return false;
    this.allocations.set(user, n + 1);
    return true;
  }

  releaseAllocation(user: string): void {
    const n = this.allocationsOf(user) - 1;
    if (n > 0) this.allocations.set(user, n);
    else this.allocations.delete(user);
  }

  /** Spends `bytes` of the user's budget; false if the datagram must be dropped. */
  spend(user: string, bytes: number, now: number): boolean {
    let b = this.budgets.get(user);
    if (!b) {
      b = { bytes: this.bytesPerSecond, at: now };
      this.budgets.set(user, b);
    }
    b.bytes = Math.min(this.bytesPerSecond, b.bytes + ((now - b.at) / 1000) * this.bytesPerSecond);
    b.at = now;
    if (b.bytes < bytes) return false;
    b.bytes -= bytes;
    return true;
  }

  /** Forgets budgets of users without allocations (a full bucket is the same as none). */
  sweep(): void {
    for (const user of this.budgets.keys())
      if (!this.allocations.has(user)) this.budgets.delete(user);
  }
}
