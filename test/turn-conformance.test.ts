/**
 * The gateway's STUN/TURN server against clients nobody here wrote: coturn's
 * turnutils_stunclient and turnutils_uclient, over UDP, several clients at once, with Send
 * indications and with channels, relaying to coturn's turnutils_peer (an echo server) on
 * loopback. Credentials are the shared-secret kind: made by uclient from the secret (-W), and
 * the ones a node gets from POST /v1/connect (-u/-w). Assertions are on what the clients
 * print, never on timings. As root, an nftables counter proves the coturn programs sent
 * nothing anywhere but 127.0.0.1.
 */
import type { ChildProcess } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type GatewayProcess, startGateway } from '../e2e/support/gateway-process.ts';
import { freeUdpPort } from '../e2e/support/ports.ts';
import {
  type Finished,
  type LoopbackGuard,
  loopbackGuard,
  missingCoturn,
  run,
  start,
} from './support/coturn.ts';
import { connectForIceServers } from './support/turn-client.ts';

const missing = missingCoturn();
if (missing.length > 0)
  throw new Error(
    `${missing.join(', ')} not found: install coturn (apt-get install coturn), as .ci/run does`,
  );

let gateway: GatewayProcess;
let peer: ChildProcess;
let peerPort: number;
let guard: LoopbackGuard | undefined;

beforeAll(async () => {
  const made = loopbackGuard();
  if (typeof made === 'string')
    console.warn(`turn-conformance: cannot prove loopback-only traffic (${made})`);
  else guard = made;
  // Loopback peers need --turn-allow-private: everything here is on 127.0.0.1.
  gateway = await startGateway({ args: ['--turn-allow-private'] });
  peerPort = await freeUdpPort();
  peer = start('turnutils_peer', ['-L', '127.0.0.1', '-p', String(peerPort)], guard);
});

afterAll(async () => {
  peer?.kill();
  await gateway?.stop();
  guard?.close();
});

/** uclient's totals: every message it sent came back through the relay. */
function expectAllEchoed(result: Finished, messages: number): void {
  expect(result.code, result.output).toBe(0);
  expect(result.output).toMatch(/Total lost packets 0 \(/);
  expect(result.output).toMatch(/total send dropped 0 \(/);
  const totals = [...result.output.matchAll(/tot_send_msgs=(\d+), tot_recv_msgs=(\d+)\n/g)].at(-1);
  expect(totals?.slice(1).map(Number), result.output).toEqual([messages, messages]);
}

const uclient = (args: string[], port = gateway.turnPort ?? 0) =>
  run(
    'turnutils_uclient',
    [
      '-p',
      String(port),
      '-L',
      '127.0.0.1',
      '-e',
      '127.0.0.1',
      '-r',
      String(peerPort),
      ...args,
      '127.0.0.1',
    ],
    guard,
  );

describe('coturn clients against the gateway', () => {
  it('the secret is made once, mode 0600, in the data directory', () => {
    const file = join(gateway.dataDir, 'turn-secret');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(readFileSync(file, 'utf8').trim().length).toBeGreaterThanOrEqual(32);
    expect(gateway.turnPort).toBeGreaterThan(0);
  });

  it('turnutils_stunclient gets its reflexive address from a Binding', async () => {
    const result = await run(
      'turnutils_stunclient',
      ['-p', String(gateway.turnPort), '-L', '127.0.0.1', '127.0.0.1'],
      guard,
    );
    expect(result.code, result.output).toBe(0);
    expect(result.output).toMatch(/UDP reflexive addr: 127\.0\.0\.1:\d+/);
  });

  it('turnutils_uclient: 4 clients, Send and Data indications, RTP/RTCP pairs, secret (-W)', async () => {
    const secret = readFileSync(join(gateway.dataDir, 'turn-secret'), 'utf8').trim();
    // Without -c each client allocates an even port reserving the next (EVEN-PORT with R),
    // then a second allocation on it (RESERVATION-TOKEN).
    const result = await uclient(['-s', '-m', '4', '-n', '10', '-W', secret, '-u', 'conformance']);
    expectAllEchoed(result, 40);
  });

  it('turnutils_uclient: 4 clients, Send indications, one allocation each (-c)', async () => {
    const secret = readFileSync(join(gateway.dataDir, 'turn-secret'), 'utf8').trim();
    const result = await uclient(['-s', '-c', '-m', '4', '-n', '10', '-W', secret, '-u', 'single']);
    expectAllEchoed(result, 40);
  });

  it('turnutils_uclient: channels, with the credentials POST /v1/connect gives a node (-u, -w)', async () => {
    // coturn 4.6's uclient binds channels anywhere in RFC 5766's 0x4000–0x7FFF; RFC 8656
    // allows 0x4000–0x4FFF only, so this gateway opts in to the old range.
    const legacy = await startGateway({
      args: ['--turn-allow-private', '--turn-rfc5766-channels'],
    });
    try {
      const { id, iceServers } = await connectForIceServers(legacy.url);
      expect(iceServers).toHaveLength(1);
      const [server] = iceServers;
      expect(server?.urls).toEqual([
        `stun:127.0.0.1:${legacy.turnPort}`,
        `turn:127.0.0.1:${legacy.turnPort}?transport=udp`,
        // TURN over TCP on the gateway's HTTP port (the front door tells them apart).
        `turn:127.0.0.1:${new URL(legacy.url).port}?transport=tcp`,
      ]);
      const [expiry, user] = server?.username.split(':') ?? [];
      expect(user).toBe(id);
      expect(Number(expiry) - Date.now() / 1000).toBeGreaterThan(3500);
      expect(Number(expiry) - Date.now() / 1000).toBeLessThanOrEqual(3600);

      const result = await uclient(
        ['-c', '-m', '4', '-n', '10', '-u', server?.username ?? '', '-w', server?.credential ?? ''],
        legacy.turnPort,
      );
      expectAllEchoed(result, 40);
      expect(result.output).not.toMatch(/channel bind: error/);
      // A wrong password gets nowhere.
      const refused = await uclient(
        ['-c', '-n', '1', '-u', server?.username ?? '', '-w', 'not-the-credential'],
        legacy.turnPort,
      );
      expect(refused.code).not.toBe(0);
      const metrics = await (await fetch(`${legacy.url}/metrics`)).text();
      expect(
        Number(/^rtcmesh_turn_relayed_bytes_to_peer_total (\d+)/m.exec(metrics)?.[1]),
      ).toBeGreaterThanOrEqual(4000);
    } finally {
      await legacy.stop();
    }
  });

  it('the coturn programs sent nothing anywhere but 127.0.0.1', (ctx) => {
    if (!guard) return ctx.skip();
    const { loopback, other } = guard.counts();
    console.log(
      `turn-conformance: coturn sent ${loopback} packets to 127.0.0.1, ${other} elsewhere`,
    );
    expect(other).toBe(0);
    expect(loopback).toBeGreaterThan(100);
  });
});
