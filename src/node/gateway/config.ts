/** Gateway configuration: flags, then environment, then embedded defaults (DESIGN §5). */
import { fileURLToPath } from 'node:url';
import { DEFAULT_LIMITS, type GatewayLimits } from './limits.ts';

export interface ListenAddress {
  host: string;
  port: number;
}

export interface GatewayConfig {
  listen: ListenAddress;
  /** Data directory: the gateway key now; VAPID keys, TURN secret and the registry later. */
  dataDir: string;
  /** The origin nodes use to reach this gateway; request tokens must name it as audience. */
  publicUrl: string | undefined;
  /** The built PWA to serve. */
  pwaDir: string;
  /** The UDP port every node's WebRTC association shares. */
  udp: ListenAddress;
  /** The address the gateway advertises as its only ICE candidate (default: the --udp host). */
  publicIp: string | undefined;
  /** Embedded SQLite in the data directory, or memory only (nothing kept across restarts). */
  registry: 'sqlite' | 'memory';
  limits: GatewayLimits;
}

export const DEFAULT_UDP_PORT = 3478;

export function defaultConfig(): GatewayConfig {
  const listen = parseListen(DEFAULT_LISTEN);
  return {
    listen,
    dataDir: DEFAULT_DATA_DIR,
    publicUrl: undefined,
    pwaDir: DEFAULT_PWA_DIR,
    udp: { host: listen.host, port: DEFAULT_UDP_PORT },
    publicIp: undefined,
    registry: 'sqlite',
    limits: { ...DEFAULT_LIMITS },
  };
}

/** Parses a duration such as `60s`, `500ms`, `2m` or a number of seconds. */
export function parseDuration(text: string, flag: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  if (!m)
    throw new ConfigError(`${flag} must be a duration such as 30s, 500ms or 2m, not "${text}"`);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m[2] ?? 's') as 'ms' | 's' | 'm' | 'h'];
  return Math.round(Number(m[1]) * unit);
}

export const DEFAULT_LISTEN = '127.0.0.1:8080';
export const DEFAULT_DATA_DIR = './data';
/** The PWA built next to this bundle: dist/node/rtcmesh.mjs serves dist/pwa. */
export const DEFAULT_PWA_DIR = fileURLToPath(new URL('../pwa/', import.meta.url));

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

/** Parses `HOST:PORT`, `[IPv6]:PORT`, `:PORT` or `PORT`. */
export function parseListen(text: string, flag = '--listen'): ListenAddress {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):?(\d{1,5})$/.exec(text.trim());
  const port = Number(m?.[3]);
  if (!m || !Number.isInteger(port) || port > 65535) {
    throw new ConfigError(`${flag} must be HOST:PORT (for example 127.0.0.1:8080), not "${text}"`);
  }
  return { host: m[1] ?? (m[2] || '127.0.0.1'), port };
}

export function parsePublicUrl(text: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new ConfigError(`--public-url must be an absolute http(s) URL, not "${text}"`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new ConfigError(`--public-url must be http or https, not ${url.protocol}`);
  }
  return url.origin;
}

/** The URL to print and to use as audience when no public URL is set. */
export function localUrl(listen: ListenAddress, port = listen.port): string {
  const host = listen.host === '0.0.0.0' || listen.host === '::' ? 'localhost' : listen.host;
  return `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
}

/** Applies `--limit name=value` (or `name.field=value` for rates) to the limits. */
export function setLimit(limits: GatewayLimits, setting: string): void {
  const m = /^([A-Za-z]+)(?:\.(perSecond|burst))?=(\d+(?:\.\d+)?)$/.exec(setting.trim());
  const name = m?.[1] as keyof GatewayLimits | undefined;
  if (!m || !name || !(name in limits)) {
    throw new ConfigError(
      `--limit takes NAME=NUMBER with a known limit (${Object.keys(limits).join(', ')}), not "${setting}"`,
    );
  }
  const value = Number(m[3]);
  const table = limits as unknown as Record<string, number | Record<string, number>>;
  const current = table[name];
  if (typeof current === 'number') {
    if (m[2]) throw new ConfigError(`--limit ${name} is a number, not a rate`);
    table[name] = value;
  } else {
    if (!m[2])
      throw new ConfigError(`--limit ${name} is a rate: set ${name}.perSecond or ${name}.burst`);
    table[name] = { ...current, [m[2]]: value };
  }
}
