/** Gateway configuration: flags, then environment, then embedded defaults (DESIGN §5). */
import { fileURLToPath } from 'node:url';
import { parseIp } from '../stun/ip.ts';
import { DEFAULT_TURN_LIMITS, type TurnLimits } from '../turn/server.ts';
import { DEFAULT_LIMITS, type GatewayLimits } from './limits.ts';

/**
 * HTTPS and TURN over TLS on one TCP port (front-door.ts), with a certificate from files or
 * from an ACME CA. The plain HTTP port (`listen`) then answers ACME challenges and redirects.
 */
export interface TlsConfig {
  /** The TLS front door (default 0.0.0.0:443). */
  listen: ListenAddress;
  /** `--tls-cert` and `--tls-key`: PEM files, re-read when they change. */
  files: { certFile: string; keyFile: string } | undefined;
  /** `--domain`, `--acme-email`, `--acme-directory`: a certificate from an ACME CA. */
  acme: { domain: string; email: string; directoryUrl: string } | undefined;
}

export const DEFAULT_TLS_LISTEN = '0.0.0.0:443';
/** The plain HTTP port's default when TLS is on (ACME http-01 needs port 80). */
export const DEFAULT_TLS_PLAIN_LISTEN = '0.0.0.0:80';

/** Checks a --domain: a DNS name ACME can issue for (no wildcard, no IP, no port). */
export function parseDomain(text: string): string {
  const name = text.trim().toLowerCase().replace(/\.$/, '');
  if (
    name.length > 253 ||
    !/^(?=.*[a-z])([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)+$/.test(
      name,
    )
  )
    throw new ConfigError(`--domain must be a DNS name such as mesh.example.org, not "${text}"`);
  return name;
}

/** The https origin of a TLS front door: the domain, or the listen host, and the port. */
export function httpsUrl(tls: TlsConfig, port: number): string {
  const host = tls.acme?.domain ?? (isWildcard(tls.listen.host) ? 'localhost' : tls.listen.host);
  const shown = host.includes(':') ? `[${host}]` : host;
  return `https://${shown}${port === 443 ? '' : `:${port}`}`;
}

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
  /** Cluster mode: the registry and the signaling bus on this Redis (replaces `registry`). */
  redis: RedisConfig | undefined;
  limits: GatewayLimits;
  /**
   * Behind a reverse proxy: per-address limits use the address the proxy saw (the last
   * `X-Forwarded-For` entry) instead of the proxy's own.
   */
  trustProxy: boolean;
  /** Private mesh: only these node IDs may connect, register and dial (undefined: anyone). */
  allow: ReadonlySet<string> | undefined;
  turn: TurnConfig;
  push: PushConfig;
  /** HTTPS on a TCP front door (undefined: plain HTTP on `listen`, as behind a proxy). */
  tls: TlsConfig | undefined;
  federation: FederationConfig;
}

/** Federation without Redis (federation/): gateways on different networks linked directly. */
export interface FederationConfig {
  /** Gateways to link to (--peer URL, optionally `#<gateway ID>` to pin which one). */
  peers: string[];
  /** Accept links other gateways open (--peer or --federate turn it on). */
  accept: boolean;
  /** Only these gateways may link (--peer-allow; undefined: any that proves its identity). */
  allow: ReadonlySet<string> | undefined;
}

/** Cluster mode (DESIGN §5): several gateways on one Redis serve one mesh. */
export interface RedisConfig {
  /** `redis://[user:password@]host[:port][/db]` or `rediss://…` */
  url: string;
  /** Key and channel prefix: gateways with the same Redis and prefix are one cluster. */
  prefix: string;
  /** How long a node's presence lasts without its gateway refreshing it. */
  presenceTtlMs: number;
}

/** Checks a --redis URL. */
export function parseRedisUrl(text: string): string {
  let url: URL;
  try {
    url = new URL(text.trim());
  } catch {
    throw new ConfigError(`--redis must be a URL such as redis://127.0.0.1:6379, not "${text}"`);
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:')
    throw new ConfigError(`--redis must be a redis:// or rediss:// URL, not ${url.protocol}`);
  return text.trim();
}

/** Web Push to wake nodes whose app is closed (DESIGN §2). */
export interface PushConfig {
  /**
   * Post to push endpoints on loopback, private and link-local addresses, and over plain
   * http (tests with a local push service). Off: only https endpoints on public addresses,
   * since an endpoint is a URL a client supplies.
   */
  allowPrivateEndpoints: boolean;
}

/** The gateway's STUN/TURN relay (DESIGN §3), or the external one it hands out instead. */
export interface TurnConfig {
  /** Where the built-in server listens (default: the --udp host, the --udp port + 1, or 0 with --udp …:0). */
  listen: ListenAddress | undefined;
  /** The shared secret of credentials (default: `turn-secret` in the data directory, made once). */
  secret: string | undefined;
  /** An external TURN server (coturn with the same secret): the built-in one then does not run. */
  url: string | undefined;
  /** The address relay sockets bind to and report (default: the TURN host, or --public-ip). */
  relayIp: string | undefined;
  /** Relay to loopback, private and link-local peers (tests on one machine). */
  allowPrivatePeers: boolean;
  /**
   * Private networks the relay may send to even without allowPrivatePeers (--turn-peer-net):
   * the backbone where federated gateways' relays live, so relay↔relay paths form.
   */
  peerNetworks: string[];
  /**
   * TURN chaining (--turn-transit LISTEN=RELAY): transit relays for peer gateways' nodes, each
   * listening on this gateway's address facing a peer and relaying from its address on
   * another network (docs/design.md §9).
   */
  transit: { listen: string; relay: string }[];
  /** Let clients bind channels 0x5000–0x7FFF, as RFC 5766 did (coturn 4.6's own client does). */
  rfc5766ChannelNumbers: boolean;
  limits: TurnGatewayLimits;
}

export interface TurnGatewayLimits extends TurnLimits {
  /** How long the credentials a node gets with its session are good for. */
  credentialLifetimeS: number;
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
    redis: undefined,
    limits: { ...DEFAULT_LIMITS },
    trustProxy: false,
    allow: undefined,
    turn: {
      listen: undefined,
      secret: undefined,
      url: undefined,
      relayIp: undefined,
      allowPrivatePeers: false,
      peerNetworks: [],
      transit: [],
      rfc5766ChannelNumbers: false,
      limits: { ...DEFAULT_TURN_LIMITS, credentialLifetimeS: 3600 },
    },
    push: { allowPrivateEndpoints: false },
    federation: { peers: [], accept: false, allow: undefined },
    tls: undefined,
  };
}

/** The TURN address when --turn is not given: beside the WebRTC port. */
export function defaultTurnListen(udp: ListenAddress, resolvedUdpPort: number): ListenAddress {
  if (udp.port === 0) return { host: udp.host, port: 0 };
  if (resolvedUdpPort >= 65535)
    throw new ConfigError(
      `--udp port ${resolvedUdpPort} leaves no port above it for TURN: set --turn`,
    );
  return { host: udp.host, port: resolvedUdpPort + 1 };
}

export const isWildcard = (host: string): boolean => host === '0.0.0.0' || host === '::';

/** A `turn:` or `turns:` URL as RFC 7065 writes them: `turn:HOST[:PORT][?transport=udp|tcp]`. */
export function parseTurnUrl(text: string): string {
  const m =
    /^(turns?):(\[[0-9a-fA-F:.]+\]|[^:?[\]/@]+)(?::(\d{1,5}))?(\?transport=(?:udp|tcp))?$/.exec(
      text.trim(),
    );
  if (!m || Number(m[3] ?? 0) > 65535)
    throw new ConfigError(
      `--turn-url must be a TURN URL such as turn:turn.example.org:3478?transport=udp, not "${text}"`,
    );
  return text.trim();
}

/** The `stun:` URL of the same host and port as a `turn:` URL (none for `turns:`). */
export function stunUrlOf(turnUrl: string): string | undefined {
  const m = /^turn:([^?]+)/.exec(turnUrl);
  return m ? `stun:${m[1]}` : undefined;
}

export function parseIpAddress(text: string, flag: string): string {
  if (!parseIp(text.trim())) throw new ConfigError(`${flag} must be an IP address, not "${text}"`);
  return text.trim();
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

/**
 * Applies `--limit name=value` (or `name.field=value` for rates) to the limits, and
 * `--limit turn.name=value` to the TURN limits.
 */
export function setLimit(
  limits: GatewayLimits,
  setting: string,
  turnLimits?: TurnGatewayLimits,
): void {
  const turn = /^turn\.([A-Za-z]+)=(\d+(?:\.\d+)?)$/.exec(setting.trim());
  if (turn?.[1] && turnLimits) {
    const name = turn[1] as keyof TurnGatewayLimits;
    if (!(name in turnLimits))
      throw new ConfigError(
        `--limit turn.NAME takes one of ${Object.keys(turnLimits).join(', ')}, not "${turn[1]}"`,
      );
    turnLimits[name] = Number(turn[2]);
    return;
  }
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
