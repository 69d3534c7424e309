/**
 * Structured logs for the gateway and the CLI (pino): JSON lines in production, readable
 * lines in a terminal, on stderr so stdout stays the CLI's own output.
 */
import { destination, type Logger, pino } from 'pino';
import pretty from 'pino-pretty';

export type { Logger };

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
export type LogFormat = 'json' | 'pretty';

export function isLogLevel(text: string): text is LogLevel {
  return (LOG_LEVELS as readonly string[]).includes(text);
}

/** A logger on stderr: `pretty` when stderr is a terminal unless told otherwise. */
export function createLogger(options: { level?: LogLevel; format?: LogFormat } = {}): Logger {
  const format = options.format ?? (process.stderr.isTTY ? 'pretty' : 'json');
  const stream =
    format === 'pretty'
      ? pretty({
          destination: 2,
          sync: true,
          colorize: process.stderr.isTTY === true,
          translateTime: 'HH:MM:ss.l',
          ignore: 'pid,hostname',
        })
      : destination({ dest: 2, sync: true });
  return pino({ level: options.level ?? 'info', base: { name: 'rtcmesh' } }, stream);
}

/** Says nothing: the default of library objects whose owner passed no logger. */
export const silentLogger: Logger = pino({ level: 'silent' });
