/**
 * A node with no gateway configured (DESIGN "The disconnected mesh"): it locates gateways by
 * LAN discovery (falling back on the ones it kept on disk), and with `mayServe` takes part in
 * the election, running the embedded gateway when it wins.
 */
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import type { NodeIdentity } from '../../core/identity/index.ts';
import type { LocatedGateway } from '../../core/node/gateway-client.ts';
import { type Logger, silentLogger } from '../../core/node/logger.ts';
import { defaultConfig } from '../gateway/config.ts';
import { Gateway } from '../gateway/gateway.ts';
import { createLogger } from '../log.ts';
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
  const level = process.env.RTCMESH_DEBUG === '1' ? 'debug' : 'warn';
  const gateway = await Gateway.start(config, { logger: createLogger({ level }) });
  return { identity: gateway.identity, url: gateway.publicUrl, stop: () => gateway.stop(500) };
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
  let election: GatewayElection | undefined;
  if (lan.mayServe) {
    const address = lan.serveAddress ?? lanAddress();
    if (!address) log.warn('--may-serve: this host has no LAN address to serve on');
    else
      election = new GatewayElection({
        discovery,
        identity: options.identity,
        startGateway: () => startEmbeddedGateway(dataDir, address),
        logger: log,
      });
  }
  return {
    discovery,
    election,
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
