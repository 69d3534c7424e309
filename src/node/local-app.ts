/**
 * `rtcmesh app`: the app for a browser on a device of a LAN with no internet (docs/design.md
 * §10 "Browsers in a disconnected mesh"). A page cannot multicast and needs a secure origin, so
 * this device runs a small gateway of the browser's own: the PWA and the gateway API on
 * http://localhost:PORT (127.0.0.1 and ::1, never the LAN; localhost is a secure context), and
 * that gateway federates with the gateways LAN discovery finds, each pinned to the ID its
 * signed announcement proved and checked by its signed record when the link opens. The page
 * takes its origin as its gateway, as it always does, so it needs no configuration; dials to
 * and from the LAN's nodes travel along the federation (docs/design.md §9), and the browser
 * still checks every peer's signed record against the DTLS fingerprint.
 */
import { createServer, type Socket, connect as tcpConnect } from 'node:net';
import { join } from 'node:path';
import type { NodeId } from '../core/identity/index.ts';
import { type Logger, silentLogger } from '../core/node/logger.ts';
import { LanDiscovery } from './discovery/lan-discovery.ts';
import { federateWithLan } from './discovery/lan-federation.ts';
import { lanAddress, startLanMode } from './discovery/lan-mode.ts';
import { ConfigError, defaultConfig } from './gateway/config.ts';
import { Gateway } from './gateway/gateway.ts';
import { loadOrCreateIdentity } from './identity-store.ts';
import { createLogger } from './log.ts';

export const DEFAULT_APP_PORT = 7743;
/** Connections the ::1 side forwards at once (one browser's page, workers and sockets). */
const MAX_FORWARDED = 256;
const WATCH_MS = 500;

export interface LocalAppOptions {
  /** This device's data directory (the local gateway's key goes in `app-gateway/` there). */
  dataDir: string;
  /** The localhost port the browser opens (default DEFAULT_APP_PORT). */
  port?: number;
  /** This device may also run the LAN's gateway when none answers (the election, §10). */
  mayServe?: boolean;
  /**
   * Where the local gateway's WebRTC and TURN (UDP) ports listen (default 127.0.0.1, so
   * nothing of it is on the LAN). Chromium pairs its LAN host candidates with this loopback
   * one with no flag (docs/design.md §7); a browser that could not would signal over HTTP.
   */
  udpAddress?: string;
  /** The LAN discovery UDP port (default LAN_PORT). */
  lanPort?: number;
  /** The built PWA (default: dist/pwa beside this program). */
  pwaDir?: string;
  logger?: Logger;
}

export interface LocalApp {
  /** The URL to open: http://localhost:PORT. */
  readonly url: string;
  readonly gateway: Gateway;
  /** The LAN gateways linked now (each proved its ID). */
  linked(): readonly NodeId[];
  /** Stops following the LAN, the ::1 forwarder and the local gateway. */
  close(): Promise<void>;
}

/** [::1]:port → 127.0.0.1:port, so `localhost` works whichever address a browser tries. */
async function forwardIpv6Loopback(
  port: number,
  log: Logger,
): Promise<{ close(): Promise<void> } | undefined> {
  const open = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = tcpConnect(port, '127.0.0.1');
    open.add(client);
    client.pipe(upstream).pipe(client);
    const end = () => {
      open.delete(client);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end);
    upstream.on('error', end);
    client.on('close', end);
    upstream.on('close', end);
  });
  server.maxConnections = MAX_FORWARDED;
  return new Promise((resolve) => {
    server.once('error', (err) => {
      log.debug(`no [::1]:${port} (${err.message}): localhost is 127.0.0.1 only`);
      resolve(undefined);
    });
    server.listen({ host: '::1', port, ipv6Only: true }, () =>
      resolve({
        close: () =>
          new Promise<void>((done) => {
            server.close(() => done());
            for (const socket of open) socket.destroy();
          }),
      }),
    );
  });
}

export async function startLocalApp(options: LocalAppOptions): Promise<LocalApp> {
  const log = options.logger ?? silentLogger;
  const port = options.port ?? DEFAULT_APP_PORT;
  const udpAddress = options.udpAddress ?? '127.0.0.1';
  if (!lanAddress())
    throw new ConfigError('this host has no LAN address: `rtcmesh app` finds its mesh on the LAN');
  const config = defaultConfig();
  config.listen = { host: '127.0.0.1', port };
  // The page's origin: request tokens name it as their audience.
  config.publicUrl = `http://localhost:${port}`;
  config.udp = { host: udpAddress, port: 0 };
  config.dataDir = join(options.dataDir, 'app-gateway');
  config.registry = 'memory';
  if (options.pwaDir) config.pwaDir = options.pwaDir;
  // Its browser's peers are on the LAN's private addresses.
  config.turn.allowPrivatePeers = true;
  const level = process.env.RTCMESH_DEBUG === '1' ? 'debug' : 'warn';
  const gateway = await Gateway.start(config, { logger: createLogger({ level }) });
  const federation = gateway.federation;
  if (!federation) {
    await gateway.stop(500);
    throw new Error('the local gateway has no federation');
  }
  const ipv6 = await forwardIpv6Loopback(port, log);
  const lanOptions = options.lanPort !== undefined ? { port: options.lanPort } : {};
  let lan: { discovery: LanDiscovery; close(): Promise<void> };
  try {
    if (options.mayServe) {
      const { identity } = await loadOrCreateIdentity(options.dataDir);
      lan = await startLanMode({
        dataDir: options.dataDir,
        identity,
        lan: { mayServe: true, ...lanOptions },
        logger: log,
      });
    } else {
      const discovery = await LanDiscovery.start({ ...lanOptions, logger: log });
      log.info(`looking for a gateway on this LAN (UDP ${discovery.port})`);
      lan = { discovery, close: async () => discovery.close() };
    }
  } catch (err) {
    await ipv6?.close();
    await gateway.stop(500);
    throw err;
  }
  const { discovery } = lan;
  const unfollow = federateWithLan(discovery, federation, gateway.identity.id, [], log);
  void discovery.query();
  // Tell the user when the browser's gateway is (or is no longer) part of the LAN's mesh.
  let shown = new Set<NodeId>();
  const watch = setInterval(() => {
    const now = new Set(federation.linkedPeers);
    for (const id of now) {
      if (shown.has(id)) continue;
      const url = discovery.gateways().find((g) => g.id === id)?.url ?? 'an unannounced URL';
      log.info(`linked to the LAN gateway ${id} at ${url} (its signed record checked)`);
    }
    for (const id of shown) if (!now.has(id)) log.info(`link to the LAN gateway ${id} lost`);
    if (!now.size && shown.size) log.info('no LAN gateway linked now: looking again');
    shown = now;
  }, WATCH_MS);
  return {
    url: config.publicUrl,
    gateway,
    linked: () => federation.linkedPeers,
    async close() {
      clearInterval(watch);
      unfollow();
      await lan.close();
      await ipv6?.close();
      await gateway.stop(500);
    },
  };
}
