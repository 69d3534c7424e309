/** Housekeeping timers that must not keep a Node process alive (a no-op in browsers). */
export function background(fn: () => void, ms: number): ReturnType<typeof setTimeout> {
  const timer = setTimeout(fn, ms);
  (timer as { unref?: () => void }).unref?.();
  return timer;
}
