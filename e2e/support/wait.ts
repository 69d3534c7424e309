/** Waiting for a state in tests: a generous bound for a loaded machine, never a timing. */

/** Polls `check` until it returns something truthy, and returns that; fails naming `what`. */
export async function waitFor<T>(
  check: () => T | undefined | null | false,
  what: string,
  ms = 120_000,
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
