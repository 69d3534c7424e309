/** Jittered exponential backoff ("full jitter"): reconnects spread out instead of stampeding. */
export class Backoff {
  private attempt = 0;

  constructor(
    private readonly baseMs = 500,
    private readonly maxMs = 30_000,
    private readonly random: () => number = Math.random,
  ) {}

  next(): number {
    const cap = Math.min(this.maxMs, this.baseMs * 2 ** this.attempt);
    this.attempt = Math.min(this.attempt + 1, 30);
    return Math.round(cap / 4 + this.random() * ((cap * 3) / 4));
  }

  reset(): void {
    this.attempt = 0;
  }
}
