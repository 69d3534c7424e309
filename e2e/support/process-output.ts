/**
 * What a child process printed, and its exit code once everything it printed has been read.
 *
 * A child's 'exit' can come before the last 'data' of its stdout and stderr (Node documents
 * it; seen under load as an echo that "came back short"). So `exited` waits for 'close', which
 * follows the end of both streams. A grandchild that keeps an inherited pipe open would hold
 * 'close' back: after 'exit', output gets a bounded grace, then `exited` settles anyway.
 */
import type { ChildProcess } from 'node:child_process';

/** After 'exit', how long a pipe a grandchild still holds may delay `exited` (a bound, not a timing). */
const DRAIN_GRACE_MS = 10_000;

export interface ProcessOutput {
  /** Everything read from stdout so far. */
  out: () => Buffer;
  /** Everything read from stderr so far, as text. */
  err: () => string;
  /** The exit code (null when killed by a signal), once its output has been read. */
  exited: Promise<number | null>;
}

export function captureOutput(child: ChildProcess): ProcessOutput {
  const chunks: Buffer[] = [];
  let stderr = '';
  child.stdout?.on('data', (d: Buffer) => {
    chunks.push(d);
  });
  child.stderr?.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  // A child that exits before reading all its input is the test's to judge, not an EPIPE.
  child.stdin?.on('error', () => {});
  const exited = new Promise<number | null>((resolve) => {
    child.once('close', (code) => resolve(code));
    child.once('exit', (code) => {
      setTimeout(() => resolve(code), DRAIN_GRACE_MS).unref();
    });
  });
  return {
    out: () => (chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks)),
    err: () => stderr,
    exited,
  };
}
