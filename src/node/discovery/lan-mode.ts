/**
 * A node with no gateway configured (DESIGN "The disconnected mesh"): it locates gateways by
 * LAN discovery (falling back on the ones it kept on disk), and with `mayServe` takes part in
 * the election, running the embedded gateway when it wins.
 */
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import { createNodeRecord, type NodeIdentity } from '../../core/identity/index.ts';
import { GatewayClient, type LocatedGateway } from '../../core/node/gateway-client.ts';
import { type Logger, silentLogger } from '../../core/node/logger.ts';
import { loadOrCreateCertificate } from '../certificate-store.ts';
import { defaultConfig } from '../gateway/config.ts';
import { Gateway } from '../gateway/gateway.ts';
import { NODE_KEY_FILE } from '../identity-store.ts';
import { createLogger } from '../log.ts';
import { nodeRtcPlatform } from '../rtc-platform.ts';
import { GatewayElection, type ServedGateway } from './election.ts';
import {
  type KeptGateway,
  loadLanGateways,
  saveLanGateways,
  withGateway,
} from './kept-gateways.ts';
import { LanDiscovery } from './lan-discovery.ts';

export interface LanModeOptions {
  /** This device may run the LAN's gateway when none answers (a powered device). */
  mayServe?: boolean;
  /** The address the embedded gateway serves on (default: this host's first LAN address). */
  serveAddress?: string;
  /** The discovery UDP port (default LAN_PORT). */
  port?: number;
}

export interface LanMode {
  readonly discovery: LanDiscovery;
  /** The election, on a device that may serve. */
  readonly election: GatewayElection | undefined;
  /** Where gateways are now: heard on the LAN, else kept from before. */
  locate(signal: AbortSignal): Promise<readonly LocatedGateway[]>;
  /** A located gateway failed: the election does not count it for a while. */
  distrust(gateway: LocatedGateway): void;
  /** Stops discovery and the election (and the embedded gateway, saying bye). */
  close(): Promise<void>;
}

/** This host's first LAN address: IPv4 if it has one, else a global or ULA IPv6. */
export function lanAddress(): string | undefined {
  const all = Object.values(networkInterfaces()).flatMap((a) => a ?? []);
  const usable = all.filter((a) => !a.internal);
  return (
    usable.find((a) => a.family === 'IPv4')?.address ??
    usable.find((a) => a.family === 'IPv6' && !a.address.toLowerCase().startsWith('fe80'))?.address
  );
}

/** The embedded gateway: a library Gateway on this device's LAN address, kept in memory. */
export async function startEmbeddedGateway(
  dataDir: string,
  address: string,
): Promise<ServedGateway> {
  const config = defaultConfig();
  config.listen = { host: address, port: 0 };
  config.udp = { host: address, port: 0 };
  config.dataDir = join(dataDir, 'gateway');
  config.registry = 'memory';
  // The LAN's peers are on private addresses: the relay must reach them.
  config.turn.allowPrivatePeers = true;
  // `rtcmesh app` on a device of this LAN links its browser's local gateway to this one
  // (each gateway proving its ID by its signed record, as every federation link does).
  config.federation.accept = true;
  const level = process.env.RTCMESH_DEBUG === '1' ? 'debug' : 'warn';
  const gateway = await Gateway.start(config, { logger: createLogger({ level }) });
  return {
    identity: gateway.identity,
    url: gateway.publicUrl,
    dataDir: config.dataDir,
    stop: () => gateway.stop(500),
  };
}

/** A gateway that failed is not counted by the election for this long. */
const DISTRUST_MS = 30_000;
const MAX_DISTRUSTED = 32;
const PROVE_TIMEOUT_MS = 10_000;

/**
 * Whether `rival` works and is who it announced: a session with it, as the embedded gateway's
 * own identity (a node of its own, so this device's node is not registered twice).
 */
async function provesItself(rival: LocatedGateway, own: ServedGateway): Promise<boolean> {
  const certificate = await loadOrCreateCertificate(own.dataDir, own.identity);
  const client = new GatewayClient({
    gatewayUrl: rival.url,
    identity: own.identity,
    record: () => createNodeRecord(own.identity, { fingerprints: [certificate.fingerprint] }),
    rtc: nodeRtcPlatform({
      certFile: certificate.certFile,
      keyFile: join(own.dataDir, NODE_KEY_FILE),
    }),
    locate: async () => [rival],
    onMessage: () => {},
    onStatus: (status) => {
      if (status === 'connected') done(true);
    },
  });
  let done: (ok: boolean) => void = () => {};
  const proved = new Promise<boolean>((resolve) => {
    done = resolve;
    setTimeout(() => resolve(false), PROVE_TIMEOUT_MS);
  });
  client.start();
  try {
    return await proved;
  } finally {
    client.stop();
  }
}

export async function startLanMode(options: {
  dataDir: string;
  identity: NodeIdentity;
  lan: LanModeOptions;
  logger?: Logger;
}): Promise<LanMode> {
  const log = options.logger ?? silentLogger;
  const { dataDir, lan } = options;
  const discovery = await LanDiscovery.start({
    ...(lan.port !== undefined ? { port: lan.port } : {}),
    logger: log,
  });
  log.info(`looking for a gateway on this LAN (UDP ${discovery.port})`);
  let kept: KeptGateway[] = await loadLanGateways(dataDir);
  let saving = Promise.resolve();
  discovery.on('gateway', (heard) => {
    kept = withGateway(kept, { id: heard.id, url: heard.url, seenAt: heard.heardAt });
    const snapshot = kept;
    saving = saving
      .then(() => saveLanGateways(dataDir, snapshot))
      .catch((err: unknown) =>
        log.warn(`could not keep the LAN's gateways: ${(err as Error).message}`),
      );
  });
  // Gateways that failed lately (unreachable, or could not prove their ID), until when.
  const distrusted = new Map<string, number>();
  const distrust = (gateway: LocatedGateway) => {
    distrusted.delete(gateway.id);
    distrusted.set(gateway.id, Date.now() + DISTRUST_MS);
    while (distrusted.size > MAX_DISTRUSTED)
      distrusted.delete(distrusted.keys().next().value ?? '');
  };
  const working = () => {
    const now = Date.now();
    return discovery.gateways().filter((g) => (distrusted.get(g.id) ?? 0) <= now);
  };
  let election: GatewayElection | undefined;
  if (lan.mayServe) {
    const address = lan.serveAddress ?? lanAddress();
    if (!address) log.warn('--may-serve: this host has no LAN address to serve on');
    else
      election = new GatewayElection({
        discovery,
        identity: options.identity,
        gateways: working,
        provesItself,
        onUnproven: distrust,
        startGateway: () => startEmbeddedGateway(dataDir, address),
        logger: log,
      });
  }
  return {
    discovery,
    election,
    distrust,
    async locate(signal) {
      const heard = discovery.gateways();
      const found = heard.length ? heard : await discovery.query(signal);
      if (found.length) return found;
      // Nobody answers now: the gateways of before may still be there (unannounced, or
      // announcing on a network we do not hear).
      return kept;
    },
    async close() {
      await election?.stop();
      discovery.close();
      await saving;
    },
  };
}
