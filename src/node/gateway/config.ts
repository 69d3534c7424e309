/** Gateway configuration: flags, then environment, then embedded defaults (DESIGN §5). */
import { fileURLToPath } from 'node:url';

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
}

export const DEFAULT_LISTEN = '127.0.0.1:8080';
export const DEFAULT_DATA_DIR = './data';
/** The PWA built next to this bundle: dist/node/rtcmesh.mjs serves dist/pwa. */
export const DEFAULT_PWA_DIR = fileURLToPath(new URL('../pwa/', import.meta.url));

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

/** Parses `HOST:PORT`, `[IPv6]:PORT`, `:PORT` or `PORT`. */
export function parseListen(text: string): ListenAddress {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):?(\d{1,5})$/.exec(text.trim());
  const port = Number(m?.[3]);
  if (!m || !Number.isInteger(port) || port > 65535) {
    throw new ConfigError(`--listen must be HOST:PORT (for example 127.0.0.1:8080), not "${text}"`);
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
