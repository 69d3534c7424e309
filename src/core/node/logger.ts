/**
 * Where a node's diagnostics go. The shape of `console` and of pino's logger (a message
 * first), so either can be passed as is. The library is silent unless given one; the CLI
 * passes one that writes to stderr.
 */
export interface Logger {
  debug(message: string, ...rest: unknown[]): void;
  info(message: string, ...rest: unknown[]): void;
  warn(message: string, ...rest: unknown[]): void;
  error(message: string, ...rest: unknown[]): void;
}

const nothing = () => {};

/** Says nothing. */
export const silentLogger: Logger = {
  debug: nothing,
  info: nothing,
  warn: nothing,
  error: nothing,
};

/** Warnings and errors on the console, prefixed `rtcmesh:` (the browser's default). */
export const consoleLogger: Logger = {
  debug: nothing,
  info: nothing,
  warn: (message, ...rest) => console.warn(`rtcmesh: ${message}`, ...rest),
  error: (message, ...rest) => console.error(`rtcmesh: ${message}`, ...rest),
};
