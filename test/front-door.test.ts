/**
 * The gateway's TCP front door, against clients nobody here wrote and against bad input:
 * coturn's turnutils_uclient relays over TURN/TCP (`-t`, the plain port) and TURN/TLS (`-S`,
 * the TLS port) with no loss; the certificate files are re-read when replaced, new handshakes
 * get the new one and a connection already open keeps working; garbage, lying lengths, slow
 * and idle connections are closed or capped while everyone else is served, and the gateway
 * never falls over. Assertions are on what clients see, never on timings.
 */
import type { ChildProcess } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, renameSync } from 'node:fs';
import { connect as netConnect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type ConnectionOptions, type TLSSocket, connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type GatewayProcess, startGateway } from '../e2e/support/gateway-process.ts';
import { freeUdpPort } from '../e2e/support/ports.ts';
import { type Finished, missingCoturn, run, start } from './support/coturn.ts';
import { isAlive, loopbackSource, waitFor } from './support/fuzz-gateway.ts';
import { selfSigned } from './support/pebble.ts';

const missing = missingCoturn();
if (missing.length > 0)
  throw new Error(`${missing.join(', ')} not found: install coturn (apt-get install coturn)`);

let gateway: GatewayProcess;
let peer: ChildProcess;
let peerPort: number;
let dir: string;
let plainPort: number;
let tlsPort: number;
let secret: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'rtcmesh-front-door-'));
  const first = selfSigned(dir, 'first', 'IP:127.0.0.1');
  copyFileSync(first.cert, join(dir, 'cert.pem'));
  copyFileSync(first.key, join(dir, 'key.pem'));
  gateway = await startGateway({
    args: [
      '--tls-listen',
      '127.0.0.1:0',
      '--tls-cert',
      join(dir, 'cert.pem'),
      '--tls-key',
      join(dir, 'key.pem'),
      '--turn-allow-private',
      // coturn 4.6's uclient binds channels in RFC 5766's range.
      '--turn-rfc5766-channels',
      '--registry',
      'memory',
      // Short, so the slow and idle cases end within the test.
      '--limit',
      'requestTimeoutMs=3000',
      '--limit',
      'turn.streamIdleMs=3000',
      '--limit',
      'maxConnectionsPerIp=50',
    ],
  });
  const ports = /TURN over tcp port (\d+), over tls port (\d+)/.exec(gateway.output());
  plainPort = Number(ports?.[1]);
  tlsPort = Number(ports?.[2]);
  secret = readFileSync(join(gateway.dataDir, 'turn-secret'), 'utf8').trim();
  peerPort = await freeUdpPort();
  peer = start('turnutils_peer', ['-L', '127.0.0.1', '-p', String(peerPort)], undefined);
}, 90_000);

afterAll(async () => {
  peer?.kill();
  await gateway?.stop();
});

function expectAllEchoed(result: Finished, messages: number): void {
  expect(result.code, result.output).toBe(0);
  expect(result.output).toMatch(/Total lost packets 0 \(/);
  const totals = [...result.output.matchAll(/tot_send_msgs=(\d+), tot_recv_msgs=(\d+)\n/g)].at(-1);
  expect(totals?.slice(1).map(Number), result.output).toEqual([messages, messages]);
}

const uclient = (args: string[], port: number) =>
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
      '-W',
      secret,
      '-u',
      'front-door',
      ...args,
      '127.0.0.1',
    ],
    undefined,
  );

/** TLS to the front door from a loopback source address (Node passes it on to the TCP socket). */
const tlsTo = (localAddress: string): ConnectionOptions & { localAddress: string } => ({
  host: '127.0.0.1',
  port: tlsPort,
  localAddress,
  rejectUnauthorized: false,
});

/** GET /healthz over TLS from `localAddress`: the status, or the error. */
function healthz(localAddress = '127.0.0.1'): Promise<number | string> {
  return new Promise((resolve) => {
    const socket = tlsConnect(tlsTo(localAddress));
    let text = '';
    socket.setTimeout(30_000, () => socket.destroy(new Error('timeout')));
    socket.on('secureConnect', () =>
      socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'),
    );
    socket.on('data', (d: Buffer) => {
      text += d.toString();
    });
    socket.on('error', (err) => resolve(err.message));
    socket.on('close', () => resolve(Number(/^HTTP\/1\.1 (\d+)/.exec(text)?.[1] ?? 0)));
  });
}

/** Resolves when the gateway has closed the connection (what it sends is read and dropped). */
const closed = (socket: Socket) => {
  socket.resume();
  return socket.destroyed || socket.closed
    ? Promise.resolve()
    : new Promise<void>((resolve) => socket.once('close', () => resolve()));
};

function serialOf(socket: TLSSocket): string {
  return socket.getPeerCertificate().serialNumber;
}

function openTls(localAddress = '127.0.0.1'): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect(tlsTo(localAddress), () => resolve(socket));
    socket.once('error', reject);
  });
}

describe('TURN over TCP and TLS with coturn’s client', () => {
  it('the ICE servers list UDP, then TCP, then TLS', async () => {
    const { connectForIceServers } = await import('./support/turn-client.ts');
    // The node API over HTTPS with the test's self-signed certificate.
    process.env.NODE_TLS_REJECT_UNAUTHORIZED = '0';
    try {
      const { iceServers } = await connectForIceServers(gateway.url);
      const urls = iceServers[0]?.urls ?? [];
      expect(urls.map((u) => u.replace(/:\d+(?=\?|$)/, ':PORT'))).toEqual([
        'stun:127.0.0.1:PORT',
        'turn:127.0.0.1:PORT?transport=udp',
        'turn:127.0.0.1:PORT?transport=tcp',
        'turns:127.0.0.1:PORT?transport=tcp',
      ]);
      expect(urls[2]).toBe(`turn:127.0.0.1:${plainPort}?transport=tcp`);
      expect(urls[3]).toBe(`turns:127.0.0.1:${tlsPort}?transport=tcp`);
    } finally {
      delete process.env.NODE_TLS_REJECT_UNAUTHORIZED;
    }
  });

  it('turnutils_uclient -t (TCP, the plain port): Send indications and channels, no loss', async () => {
    expectAllEchoed(await uclient(['-t', '-s', '-c', '-m', '4', '-n', '10'], plainPort), 40);
    expectAllEchoed(await uclient(['-t', '-c', '-m', '4', '-n', '10'], plainPort), 40);
  }, 120_000);

  it('turnutils_uclient -S (TLS, the TLS port): Send indications and channels, nothing lost by the relay', async () => {
    // uclient's own TLS reader misses echoes on a loaded machine against coturn's TLS listener
    // too (DESIGN §7), so the relay is judged by its own books: every byte the clients sent
    // reached the peer, and every byte the peer echoed went back on the TLS connections.
    const tlsBytes = async () =>
      Number(
        /rtcmesh_turn_transport_relayed_bytes_total\{transport="tls"\} (\d+)/.exec(
          await fetchMetrics(),
        )?.[1] ?? Number.NaN,
      );
    for (const mode of [['-s'], []]) {
      const before = await tlsBytes();
      const result = await uclient(['-t', '-S', ...mode, '-c', '-m', '4', '-n', '10'], tlsPort);
      expect(result.code, result.output).toBe(0);
      const totals = [...result.output.matchAll(/tot_send_msgs=(\d+), tot_recv_msgs=(\d+)\n/g)].at(
        -1,
      );
      expect(Number(totals?.[1]), result.output).toBe(40);
      expect(Number(totals?.[2]), result.output).toBeGreaterThan(0);
      // 40 messages of 100 bytes to the peer, and their 40 echoes back.
      expect((await tlsBytes()) - before, result.output).toBe(2 * 40 * 100);
    }
    const metrics = await fetchMetrics();
    expect(metrics).toMatch(/rtcmesh_turn_transport_relayed_bytes_total\{transport="tls"\} [1-9]/);
    expect(metrics).toMatch(/rtcmesh_turn_transport_relayed_bytes_total\{transport="tcp"\} [1-9]/);
    expect(metrics).toMatch(/rtcmesh_turn_transport_connections_total\{transport="tls"\} [1-9]/);
  }, 120_000);
});

async function fetchMetrics(): Promise<string> {
  const socket = await openTls();
  socket.write('GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
  let text = '';
  socket.on('data', (d: Buffer) => {
    text += d.toString();
  });
  await closed(socket);
  return text;
}

describe('certificate files', () => {
  it('replaced, they are served to new handshakes; an open connection keeps working', async () => {
    const open = await openTls();
    const before = serialOf(open);
    const second = selfSigned(dir, 'second', 'IP:127.0.0.1');
    // As certbot does: new files moved into place.
    copyFileSync(second.key, join(dir, 'key.new'));
    copyFileSync(second.cert, join(dir, 'cert.new'));
    renameSync(join(dir, 'key.new'), join(dir, 'key.pem'));
    renameSync(join(dir, 'cert.new'), join(dir, 'cert.pem'));
    let after = before;
    const deadline = Date.now() + 60_000;
    while (after === before && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 500));
      const probe = await openTls();
      after = serialOf(probe);
      probe.destroy();
    }
    expect(after).not.toBe(before);
    // The connection made before still speaks, with its certificate.
    expect(serialOf(open)).toBe(before);
    open.write('GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    let text = '';
    open.on('data', (d: Buffer) => {
      text += d.toString();
    });
    await closed(open);
    expect(text).toMatch(/^HTTP\/1\.1 200/);
  }, 90_000);
});

describe('bad input on the front door', () => {
  it('garbage instead of a TLS handshake is dropped; others are served', async () => {
    const socket = netConnect({ host: '127.0.0.1', port: tlsPort });
    socket.on('error', () => {});
    socket.write(Buffer.alloc(4096, 0x5a));
    await closed(socket);
    expect(await healthz()).toBe(200);
  });

  it('garbage after the handshake gets 400 or a close; a STUN length that is not a STUN length closes', async () => {
    const http = await openTls();
    http.write(Buffer.from([0xff, 0xfe, 0x00, 0x13, 0x37, 0x0a, 0x0d, 0x0a, 0x0d, 0x0a]));
    await closed(http);
    const stun = await openTls();
    // A STUN header whose length is not a multiple of 4.
    stun.write(
      Buffer.from([0x00, 0x01, 0x00, 0x07, 0x21, 0x12, 0xa4, 0x42, ...new Array(12).fill(1)]),
    );
    await closed(stun);
    expect(await healthz()).toBe(200);
    expect(isAlive(gateway.process.pid ?? 0)).toBe(true);
  });

  it('a TURN frame whose length lies is held only until the idle timeout', async () => {
    const socket = await openTls();
    // Says 65532 bytes follow; 16 do.
    socket.write(
      Buffer.from([0x00, 0x01, 0xff, 0xfc, 0x21, 0x12, 0xa4, 0x42, ...new Array(28).fill(2)]),
    );
    expect(await healthz()).toBe(200);
    await closed(socket);
    const plain = netConnect({ host: '127.0.0.1', port: plainPort });
    plain.on('error', () => {});
    plain.write(Buffer.from([0x00, 0x01, 0xff, 0xfc, 0x21, 0x12, 0xa4, 0x42]));
    await closed(plain);
  }, 60_000);

  it('one byte a second (slowloris) is cut off; a silent connection too', async () => {
    const slow = await openTls();
    const silent = await openTls();
    const request = Buffer.from(`GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ${'a'.repeat(200)}`);
    let i = 0;
    const timer = setInterval(() => {
      if (!slow.destroyed && i < request.length) slow.write(request.subarray(i, ++i));
    }, 1000);
    try {
      expect(await healthz()).toBe(200);
      await Promise.all([closed(slow), closed(silent)]);
      expect(i).toBeLessThan(request.length);
    } finally {
      clearInterval(timer);
    }
  }, 90_000);

  it('hundreds of idle TLS connections: capped per address, closed when idle; others are served', async () => {
    const sockets: Socket[] = [];
    for (let n = 0; n < 300; n++) {
      const socket = netConnect({
        host: '127.0.0.1',
        port: tlsPort,
        localAddress: loopbackSource(n % 3),
      });
      socket.on('error', () => {});
      sockets.push(socket);
    }
    // Three addresses, 50 each at most: the rest are refused at once.
    expect(await waitFor(() => sockets.filter((s) => s.destroyed).length >= 150, 60_000)).toBe(
      true,
    );
    // Someone else is served meanwhile.
    expect(await healthz(loopbackSource(10))).toBe(200);
    // The idle ones never finished a handshake: all closed.
    expect(await waitFor(() => sockets.every((s) => s.destroyed || s.closed), 60_000)).toBe(true);
    expect(await healthz(loopbackSource(0))).toBe(200);
    const metrics = await fetchMetrics();
    expect(metrics).toMatch(
      /rtcmesh_front_door_connections_total\{port="tls",kind="refused"\} [1-9]/,
    );
    expect(isAlive(gateway.process.pid ?? 0)).toBe(true);
  }, 150_000);
});
