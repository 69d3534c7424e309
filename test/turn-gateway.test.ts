/**
 * The gateway's TURN wiring, as a real process: where TURN listens by default and when told,
 * the secret file kept across restarts, --turn-secret and --turn-url in the ICE servers a
 * node gets, TURN metrics, bad flags refused, and the port given back on stop.
 */
import { execFile } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { RTCMESH_BIN, startGateway } from '../e2e/support/gateway-process.ts';
import { freeUdpPort } from '../e2e/support/ports.ts';
import { MessageBuilder, Method, XorMappedAddress } from '../src/node/stun/index.ts';
import { attr, connectForIceServers, TestTurnClient } from './support/turn-client.ts';

const run = promisify(execFile);
const rtcmesh = (...args: string[]) =>
  run(process.execPath, [RTCMESH_BIN, ...args], { timeout: 10_000 }).then(
    () => ({ code: 0, stderr: '' }),
    (e: { code: number; stderr: string }) => ({ code: e.code, stderr: e.stderr }),
  );

async function bindable(port: number): Promise<boolean> {
  const s = createSocket('udp4');
  const ok = await new Promise<boolean>((resolve) => {
    s.once('error', () => resolve(false));
    s.bind(port, '127.0.0.1', () => resolve(true));
  });
  s.close();
  return ok;
}

describe('gateway TURN wiring', () => {
  it('listens beside the WebRTC port, keeps its secret across restarts, and frees the port on stop', async () => {
    // A fixed --udp port puts TURN on the next one.
    const udp = await freeUdpPort(2);
    const dataDir = mkdtempSync(join(tmpdir(), 'rtcmesh-turn-'));
    const first = await startGateway({ dataDir, udp: `127.0.0.1:${udp}` });
    expect(first.udpPort).toBe(udp);
    expect(first.turnPort).toBe(udp + 1);
    expect(first.output()).toMatch(
      new RegExp(
        `WebRTC on udp 127\\.0\\.0\\.1:${udp}, TURN on udp 127\\.0\\.0\\.1:${udp + 1} \\(data in `,
      ),
    );
    const secret = readFileSync(join(dataDir, 'turn-secret'), 'utf8');
    const metrics = await (await fetch(`${first.url}/metrics`)).text();
    expect(metrics).toMatch(/^rtcmesh_turn_allocations 0$/m);
    expect(metrics).toMatch(/^rtcmesh_turn_relayed_bytes_to_client_total 0$/m);
    await first.stop();
    expect(await bindable(udp + 1)).toBe(true);

    const again = await startGateway({ dataDir });
    expect(readFileSync(join(dataDir, 'turn-secret'), 'utf8')).toBe(secret);
    // Its STUN answers where it says it listens.
    const probe = await TestTurnClient.open(
      { host: '127.0.0.1', port: again.turnPort ?? 0 },
      { username: '', password: '' },
    );
    const res = await probe.transact(new MessageBuilder(Method.BINDING, 'request').build());
    expect(attr(res, XorMappedAddress).port).toBe(probe.port);
    probe.close();
    await again.stop();
  });

  it('--turn-secret makes the credentials; --turn-url hands out an external server instead', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'rtcmesh-turn-'));
    const gateway = await startGateway({
      dataDir,
      args: [
        '--turn-secret',
        'shared-with-coturn',
        '--turn-url',
        'turn:turn.example.org:3478?transport=udp',
      ],
    });
    try {
      expect(gateway.turnPort).toBeUndefined();
      expect(gateway.output()).toMatch(
        /, TURN at turn:turn\.example\.org:3478\?transport=udp \(data in /,
      );
      expect(existsSync(join(dataDir, 'turn-secret'))).toBe(false);
      const { id, iceServers } = await connectForIceServers(gateway.url);
      expect(iceServers).toHaveLength(1);
      const [server] = iceServers;
      expect(server?.urls).toEqual([
        'stun:turn.example.org:3478',
        'turn:turn.example.org:3478?transport=udp',
      ]);
      expect(server?.username).toMatch(new RegExp(`^\\d+:${id}$`));
      // What coturn with static-auth-secret=shared-with-coturn would expect.
      expect(server?.credential).toBe(
        createHmac('sha1', 'shared-with-coturn')
          .update(server?.username ?? '')
          .digest('base64'),
      );
      expect(await (await fetch(`${gateway.url}/metrics`)).text()).not.toMatch(/rtcmesh_turn_/);
    } finally {
      await gateway.stop();
    }
  });

  it('--turn HOST:PORT, and --limit turn.credentialLifetimeS', async () => {
    const port = await freeUdpPort();
    const gateway = await startGateway({
      args: ['--turn', `127.0.0.1:${port}`, '--limit', 'turn.credentialLifetimeS=120'],
    });
    try {
      expect(gateway.turnPort).toBe(port);
      const { iceServers } = await connectForIceServers(gateway.url);
      const expiry = Number(iceServers[0]?.username.split(':')[0]);
      expect(expiry - Date.now() / 1000).toBeGreaterThan(100);
      expect(expiry - Date.now() / 1000).toBeLessThanOrEqual(120);
    } finally {
      await gateway.stop();
    }
  });

  it('refuses bad TURN flags with a clear error', async () => {
    const data = mkdtempSync(join(tmpdir(), 'rtcmesh-turn-'));
    const gateway = (...args: string[]) =>
      rtcmesh(
        'gateway',
        '--listen',
        '127.0.0.1:0',
        '--udp',
        '127.0.0.1:0',
        '--data',
        data,
        ...args,
      );
    for (const [args, message] of [
      [['--turn-url', 'http://turn.example.org'], /--turn-url must be a TURN URL/],
      [['--turn-url', 'turn:host:99999'], /--turn-url must be a TURN URL/],
      [['--turn-relay-ip', 'relay.example.org'], /--turn-relay-ip must be an IP address/],
      [['--turn', 'nowhere'], /--turn must be HOST:PORT/],
      [['--turn', '0.0.0.0:0'], /--turn on all interfaces needs --turn-relay-ip or --public-ip/],
      [['--turn-secret', ''], /--turn-secret must not be empty/],
      [['--limit', 'turn.nope=1'], /--limit turn\.NAME takes one of/],
      [['--turn-relay-ip', '192.0.2.99'], /--turn-relay-ip is not an address of this host/],
    ] as const) {
      const result = await gateway(...args);
      expect(result.code, args.join(' ')).toBe(2);
      expect(result.stderr).toMatch(message);
    }
  });
});
