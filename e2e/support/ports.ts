/**
 * Ports for servers a test starts (redis-server, pebble, a gateway's fixed HTTP port…).
 *
 * Why not `listen(0)`: the port comes back free, but the server that needs it binds it only
 * later (pebble must be told the gateway's HTTP port before the gateway starts). In between, the
 * kernel may hand the same port to anything in the ephemeral range: another test's `listen(0)`
 * or the source port of an outgoing connection (CI saw "EADDRINUSE 127.0.0.1:34319"). So ports
 * are chosen below the ephemeral range, where the kernel never assigns one by itself, and each
 * is checked free by binding it.
 */

import { createSocket } from 'node:dgram';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';

const LOWEST = 10_000;
/** Ports this process has handed out, never handed out twice. */
const given = new Set<number>();

/** First port of the kernel's ephemeral range (Linux: /proc; 32768 elsewhere, the usual start). */
function ephemeralStart(): number {
  try {
    const [low] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8')
      .trim()
      .split(/\s+/);
    const n = Number(low);
    if (Number.isInteger(n) && n > LOWEST + 1000) return n;
  } catch {
    // Not Linux: fall through to the common default.
  }
  return 32_768;
}

function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

function bindableUdp(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createSocket('udp4');
    socket.once('error', () => {
      socket.close();
      resolve(false);
    });
    socket.bind(port, '127.0.0.1', () => socket.close(() => resolve(true)));
  });
}

async function choose(free: (port: number) => Promise<boolean>, what: string): Promise<number> {
  const end = ephemeralStart();
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = LOWEST + Math.floor(Math.random() * (end - LOWEST - 8));
    if (given.has(port)) continue;
    if (await free(port)) {
      given.add(port);
      return port;
    }
  }
  throw new Error(`no free ${what} found between ${LOWEST} and ${end} on 127.0.0.1`);
}

/** A TCP port free on 127.0.0.1 now, outside the ephemeral range; the caller's server binds it next. */
export function freeTcpPort(): Promise<number> {
  return choose(bindable, 'TCP port');
}

/**
 * A UDP port free on 127.0.0.1 now, outside the ephemeral range, with the `consecutive - 1`
 * ports after it free too (a gateway given `--udp P` puts its TURN server on P + 1).
 */
export async function freeUdpPort(consecutive = 1): Promise<number> {
  const port = await choose(async (first) => {
    for (let i = 0; i < consecutive; i++) {
      if (given.has(first + i) || !(await bindableUdp(first + i))) return false;
    }
    return true;
  }, `run of ${consecutive} UDP port(s)`);
  for (let i = 1; i < consecutive; i++) given.add(port + i);
  return port;
}
