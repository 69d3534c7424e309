/**
 * How rtcmesh validates what it receives: zod's mini build (the full build would weigh
 * ~25 KB gzip in each of the window, the node worker and the service worker), and one way to
 * turn a failed parse into a clear message. Every schema imports `zod/mini` (never `zod`:
 * esbuild, which builds the service worker, cannot tree-shake a re-exported namespace).
 */
import * as z from 'zod/mini';

/** A schema of what arrives from outside. */
export type Schema<T> = z.ZodMiniType<T>;

export type ParseResult<T> = { ok: true; value: T } | { ok: false; message: string };

/** A string of at most `max` characters. */
export const maxString = (max: number) => z.string().check(z.maxLength(max));

/** Checks a value against a schema; never throws. `what` starts the message of a failure. */
export function parseValue<T>(
  schema: Schema<T>,
  value: unknown,
  what = 'invalid message',
): ParseResult<T> {
  const result = z.safeParse(schema, value);
  if (result.success) return { ok: true, value: result.data };
  const issue = result.error.issues[0];
  return {
    ok: false,
    message: `${what}: ${issue?.path.join('.') || '(root)'}: ${issue ? describeIssue(issue) : 'bad'}`,
  };
}

/**
 * What is wrong, in words. The mini build carries no locale (its messages are all "Invalid
 * input"), so the few issue kinds our schemas raise are spelled out here, the same everywhere.
 */
function describeIssue(issue: z.core.$ZodIssue): string {
  switch (issue.code) {
    case 'invalid_type':
      return `expected ${issue.expected}`;
    case 'too_big':
      return `too big: at most ${issue.maximum}${issue.origin === 'string' ? ' characters' : ''}`;
    case 'too_small':
      return `too small: at least ${issue.minimum}${issue.origin === 'string' ? ' characters' : ''}`;
    case 'invalid_format':
      return `not in the expected format`;
    case 'invalid_value':
      return `expected one of ${issue.values.map((v) => (typeof v === 'string' ? JSON.stringify(v) : String(v))).join(', ')}`;
    case 'invalid_union':
      return 'matches no allowed shape';
    case 'custom':
      return issue.message;
    default:
      return issue.code;
  }
}
