/**
 * A real gateway in this test's own process (`Gateway.start`): loopback HTTP and UDP on free
 * ports, an in-memory registry, a fresh data directory. For tests that need several gateways
 * with different limits, or a gateway and nodes sharing one process.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaultConfig, type GatewayConfig } from '../../src/node/gateway/config.ts';
import { Gateway } from '../../src/node/gateway/gateway.ts';

export async function startGatewayInProcess(
  adjust: (config: GatewayConfig) => void = () => {},
): Promise<Gateway> {
  const config = defaultConfig();
  config.listen = { host: '127.0.0.1', port: 0 };
  config.udp = { host: '127.0.0.1', port: 0 };
  config.registry = 'memory';
  config.dataDir = mkdtempSync(join(tmpdir(), 'rtcmesh-gw-'));
  adjust(config);
  return Gateway.start(config);
}
