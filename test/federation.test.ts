/**
 * Federation without Redis, for real (docs/design.md "Federation and large meshes"): gateway
 * processes in network namespaces with no route outside, LANs that reach only their own
 * gateway, CLI nodes as real processes. A node on one LAN dials a node on another by ID;
 * the bytes cross each side's own gateway relay (two relay hops), DTLS end to end.
 */
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { runCli } from '../e2e/support/cli-process.ts';
import { type GatewayProcess, metric, startGateway } from '../e2e/support/gateway-process.ts';
import { waitFor } from '../e2e/support/wait.ts';
import {
  createNodeRecord,
  encodeBase32,
  generateNodeKeyPair,
  identityOf,
  type NodeId,
  nodeKeyFromCryptoKeys,
} from '../src/core/identity/index.ts';
import { signJws } from '../src/core/identity/jws.ts';
import { buildFederatedLans, type FederatedLans } from './support/federated-lans.ts';

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

interface Cli {
  child: ChildProcess;
  exited: Promise<number | null>;
  out(): Buffer;
  err(): string;
}

/** `rtcmesh …` as a user runs it, inside a namespace. */
function rtcmesh(ns: string, gatewayUrl: string, args: string[], input?: Buffer): Cli {
  const run = runCli(args, {
    netns: ns,
    gateway: gatewayUrl,
    ...(input !== undefined ? { input } : {}),
  });
  cleanups.push(() => run.stop());
  return run;
}

interface Mesh {
  net: FederatedLans;
  gateways: GatewayProcess[];
  urls: string[];
}

/**
 * One gateway per LAN: nodes reach it on its LAN address; its TURN relays from its address on
 * its first backbone and may relay to the backbones listed (--turn-peer-net); it links to
 * the gateways named in `peers` (by number) over the backbone.
 */
async function startMesh(
  tag: string,
  lans: number,
  backbones: [number, number][],
  peers: [number, number][],
  options: {
    routedThrough?: [number, number, number];
    peerNets?: string[][];
    script?: (i: number) => string | undefined;
    extraArgs?: (i: number) => string[];
    env?: Record<string, string>;
  } = {},
): Promise<Mesh> {
  const net = buildFederatedLans(tag, lans, backbones, options.routedThrough);
  cleanups.push(() => net.destroy());
  const gateways = await Promise.all(
    net.gateways.map(async (g, index) => {
      const i = index + 1;
      const links = peers
        .filter(([from]) => from === i)
        .map(([, to]) => `http://${net.gateways[to - 1]?.backboneIps.get(i)}:8080`);
      const relayIp = [...g.backboneIps.values()][0] as string;
      const script = options.script?.(i);
      const gateway = await startGateway({
        netns: g.ns,
        listen: '0.0.0.0:8080',
        udp: `${g.lanIp}:3478`,
        ...(script ? { script, env: options.env ?? {} } : {}),
        args: [
          '--public-url',
          `http://${g.lanIp}:8080`,
          '--registry',
          'memory',
          '--turn-relay-ip',
          relayIp,
          '--federate',
          ...(options.peerNets?.[index] ?? g.backboneNets).flatMap((n) => ['--turn-peer-net', n]),
          ...links.flatMap((url) => ['--peer', url]),
          ...(options.extraArgs?.(i) ?? []),
        ],
      });
      cleanups.push(() => gateway.stop());
      return gateway;
    }),
  );
  return { net, gateways, urls: net.gateways.map((g) => `http://${g.lanIp}:8080`) };
}

/** A listener on LAN `to` running `cat`; its node ID once it is connected. */
async function echoListener(mesh: Mesh, lan: number): Promise<string> {
  const host = mesh.net.hosts[lan - 1] as { ns: string };
  const listener = rtcmesh(host.ns, mesh.urls[lan - 1] as string, [
    'listen',
    'echo',
    '--exec',
    'cat',
  ]);
  return waitFor(() => /node (\S+) \(/.exec(listener.err())?.[1], 'the listener to connect');
}

/**
 * Dials `id` from LAN `from` with `payload` on stdin. Presence crosses the gateways by
 * itself a moment after the listener connects: a dial that finds the callee not yet known
 * is tried again (bounded), anything else is the outcome.
 */
async function dial(mesh: Mesh, from: number, id: string, payload: Buffer) {
  const host = mesh.net.hosts[from - 1] as { ns: string };
  for (let attempt = 0; ; attempt++) {
    const dialer = rtcmesh(host.ns, mesh.urls[from - 1] as string, ['dial', id, 'echo'], payload);
    const code = await dialer.exited;
    if (code === 1 && /not-found|offline/.test(dialer.err()) && attempt < 30) {
      await new Promise((r) => setTimeout(r, 1000));
      continue;
    }
    return { code, out: dialer.out(), err: dialer.err() };
  }
}

/** The first offset where two buffers differ (diagnostics). */
function diffAt(a: Buffer, b: Buffer): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return n;
}

const FOUR_MIB = Buffer.from(Array.from({ length: 4 * 1024 * 1024 }, (_, i) => (i * 7919) % 251));

describe('federation without Redis, across LANs with no route between them', () => {
  it('a node on LAN 1 dials a node on LAN 2 by ID: 4 MiB echo through two relays', async () => {
    const mesh = await startMesh('fda', 2, [[1, 2]], [[1, 2]]);
    // LAN 1 reaches nothing of LAN 2 or of the backbone: only its own gateway.
    const id = await echoListener(mesh, 2);
    const result = await dial(mesh, 1, id, FOUR_MIB);
    expect(result.err).toMatch(/echo: connected to/);
    expect(result.code).toBe(0);
    if (!result.out.equals(FOUR_MIB))
      console.log('mismatch', result.out.length, diffAt(result.out, FOUR_MIB), result.err);
    expect(result.out.equals(FOUR_MIB)).toBe(true);
    // The path: A → GW1's relay (on the backbone) → GW2's relay → B.
    const path = /echo: path (.*)/.exec(result.err)?.[1] ?? '';
    expect(path).toMatch(/2 relay hops/);
    expect(path).toMatch(/relay 10\.77\.12\.1:\d+ → relay 10\.77\.12\.2:\d+/);
  }, 300_000);

  it('a chain of three gateways across three LANs: LAN 1 reaches LAN 3 through GW2', async () => {
    const mesh = await startMesh(
      'fdb',
      3,
      [
        [1, 2],
        [2, 3],
      ],
      [
        [1, 2],
        [3, 2],
      ],
      {
        // GW1 and GW3 share no network: GW2 forwards between its backbones (design: "three
        // gateways in a chain"), and the ends' relays may send to the far backbone.
        routedThrough: [2, 1, 3],
        peerNets: [
          ['10.77.12.0/24', '10.77.23.0/24'],
          ['10.77.12.0/24', '10.77.23.0/24'],
          ['10.77.12.0/24', '10.77.23.0/24'],
        ],
      },
    );
    const id = await echoListener(mesh, 3);
    const payload = FOUR_MIB.subarray(0, 1024 * 1024);
    const result = await dial(mesh, 1, id, payload);
    expect(result.err).toMatch(/echo: connected to/);
    expect(result.code).toBe(0);
    expect(result.out.equals(payload)).toBe(true);
    const path = /echo: path (.*)/.exec(result.err)?.[1] ?? '';
    expect(path).toMatch(/relay 10\.77\.12\.1:\d+ → relay 10\.77\.23\.3:\d+/);
    // And the other way: LAN 3 dials LAN 1 (signaling crosses GW2 both ways).
    const back = await echoListener(mesh, 1);
    const reverse = await dial(mesh, 3, back, Buffer.from('hello across three gateways\n'));
    expect(reverse.code).toBe(0);
    expect(reverse.out.toString()).toBe('hello across three gateways\n');
  }, 300_000);

  it('a chain of three gateways whose middle one routes no IP: TURN chaining through GW2', async () => {
    const mesh = await startMesh(
      'fde',
      3,
      [
        [1, 2],
        [2, 3],
      ],
      [
        [1, 2],
        [3, 2],
      ],
      {
        // GW2 runs a transit relay on each backbone, relaying onto the other; GW1 and GW3
        // forward their nodes' UDP to the one facing them.
        extraArgs: (i) =>
          i === 2
            ? ['--turn-transit', '10.77.12.2=10.77.23.2', '--turn-transit', '10.77.23.2=10.77.12.2']
            : [],
      },
    );
    const id = await echoListener(mesh, 3);
    const payload = FOUR_MIB.subarray(0, 1024 * 1024);
    const result = await dial(mesh, 1, id, payload);
    expect(result.err).toMatch(/echo: connected to/);
    expect(result.code).toBe(0);
    expect(result.out.equals(payload)).toBe(true);
    const path = /echo: path (.*)/.exec(result.err)?.[1] ?? '';
    // One of GW2's transit relays meets an end gateway's relay on a backbone.
    expect(path).toMatch(/2 relay hops/);
    expect(path).toMatch(/relay 10\.77\.(12\.2|23\.2):\d+/);
  }, 300_000);

  for (const mode of ['swap-fingerprint', 'substitute-record'] as const) {
    it(`a federated gateway that lies (${mode}): the dial fails with the identity error`, async () => {
      const script = fileURLToPath(
        new URL('../dist/test/tampering-federated-gateway.mjs', import.meta.url),
      );
      await build({
        entryPoints: [
          fileURLToPath(new URL('../e2e/support/tampering-federated-gateway.ts', import.meta.url)),
        ],
        outfile: script,
        bundle: true,
        platform: 'node',
        format: 'esm',
        target: 'node20',
        packages: 'external',
        logLevel: 'warning',
      });
      // GW2, the callee's gateway, tampers with the answer it sends back across the federation.
      const mesh = await startMesh(
        `fd${mode === 'swap-fingerprint' ? 'c' : 'd'}`,
        2,
        [[1, 2]],
        [[1, 2]],
        {
          script: (i) => (i === 2 ? script : undefined),
          env: { RTCMESH_TAMPER: mode },
        },
      );
      const id = await echoListener(mesh, 2);
      const result = await dial(mesh, 1, id, Buffer.from('secret\n'));
      expect(result.code).toBe(1);
      expect(result.err).toMatch(/identity/);
      expect(result.err).toMatch(
        mode === 'swap-fingerprint'
          ? /fingerprint-not-listed|not in the record/
          : /wrong-peer|expected node/,
      );
      expect(result.out.length).toBe(0);
    }, 300_000);
  }
});

/** A federation link the test drives by hand: a stranger, or a peer that lies and floods. */
async function rawLink(
  url: string,
): Promise<{ ws: WebSocket; closed: Promise<number>; frames: unknown[] }> {
  const ws = new WebSocket(`${url.replace(/^http/, 'ws')}/v1/federation`, {
    perMessageDeflate: false,
  });
  const frames: unknown[] = [];
  ws.on('message', (d) => frames.push(JSON.parse(d.toString())));
  const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
  ws.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  return { ws, closed, frames };
}

/** A gateway identity the test holds, proving itself as a real one would. */
async function authenticate(link: { ws: WebSocket; frames: unknown[] }): Promise<NodeId> {
  const pair = await generateNodeKeyPair();
  const identity = await identityOf(await nodeKeyFromCryptoKeys(pair.privateKey, pair.publicKey));
  const fp = `sha-256 ${Array.from({ length: 32 }, () => 'AB').join(':')}`;
  const record = await createNodeRecord(identity, { fingerprints: [fp] });
  link.ws.send(JSON.stringify({ t: 'hello', v: 1, nonce: randomBytes(18).toString('base64url') }));
  const hello = await waitFor(
    () =>
      link.frames.find((f) => (f as { t?: string }).t === 'hello') as { nonce: string } | undefined,
    'the gateway hello',
  );
  const proof = await signJws(
    identity.key,
    { typ: 'rtcmesh-federation', alg: 'ES256' },
    {
      typ: 'rtcmesh-federation',
      from: identity.id,
      nonce: hello.nonce,
      iat: Math.floor(Date.now() / 1000),
    },
  );
  link.ws.send(JSON.stringify({ t: 'auth', record, proof }));
  return identity.id;
}

const randomId = () => encodeBase32(randomBytes(32));

describe('federation links take garbage, lies and floods without harm', () => {
  it('strangers are cut, a lying peer is bounded, and the federation keeps working', async () => {
    const gw1 = await startGateway({ args: ['--registry', 'memory', '--federate'] });
    cleanups.push(() => gw1.stop());

    // Garbage: not JSON, binary, a frame over the size cap, an upgrade to another path.
    const garbage = await rawLink(gw1.url);
    for (let i = 0; i < 50; i++) garbage.ws.send(`{not json ${i}`);
    expect(await garbage.closed).toBeGreaterThan(0);
    const binary = await rawLink(gw1.url);
    binary.ws.send(Buffer.from([0, 1, 2, 3]));
    binary.ws.send(Buffer.from([4, 5]));
    await binary.closed;
    const huge = await rawLink(gw1.url);
    huge.ws.send('x'.repeat(512 * 1024));
    expect(await huge.closed).toBe(1009);
    await expect(
      new Promise((resolve, reject) => {
        const ws = new WebSocket(`${gw1.url.replace(/^http/, 'ws')}/v1/other`);
        ws.once('open', () => resolve('open'));
        ws.once('error', reject);
      }),
    ).rejects.toThrow(/404/);

    // A replayed or forged proof: another nonce, another gateway named than the record's.
    const forged = await rawLink(gw1.url);
    forged.ws.send(
      JSON.stringify({ t: 'hello', v: 1, nonce: randomBytes(18).toString('base64url') }),
    );
    const other = await generateNodeKeyPair();
    const otherIdentity = await identityOf(
      await nodeKeyFromCryptoKeys(other.privateKey, other.publicKey),
    );
    const fp = `sha-256 ${Array.from({ length: 32 }, () => 'CD').join(':')}`;
    forged.ws.send(
      JSON.stringify({
        t: 'auth',
        record: await createNodeRecord(otherIdentity, { fingerprints: [fp] }),
        proof: await signJws(
          otherIdentity.key,
          { alg: 'ES256' },
          { typ: 'rtcmesh-federation', from: randomId(), nonce: 'x'.repeat(24), iat: 0 },
        ),
      }),
    );
    await forged.closed;

    // A peer that proves its identity, then lies and floods.
    const liar = await rawLink(gw1.url);
    const liarId = await authenticate(liar);
    await waitFor(
      () => liar.frames.find((f) => (f as { t?: string }).t === 'announce'),
      'the gateway to announce itself',
    );
    // A transit relay somewhere else than the peer itself: the gateway must not forward there.
    liar.ws.send(
      JSON.stringify({
        t: 'transit',
        servers: [{ host: '127.0.0.9', port: 9, username: 'u', credential: 'c' }],
      }),
    );
    for (let i = 0; (await metric(gw1, 'rtcmesh_federation_dropped_total')) < 1; i++) {
      if (i > 300) throw new Error('the transit lie was not dropped');
      await new Promise((r) => setTimeout(r, 100));
    }
    // Paths that do not end at the liar, or loop, or name the gateway itself: all dropped.
    liar.ws.send(JSON.stringify({ t: 'announce', node: randomId(), path: [randomId()] }));
    liar.ws.send(JSON.stringify({ t: 'announce', node: randomId(), path: [liarId, liarId] }));
    liar.ws.send(JSON.stringify({ t: 'announce', node: randomId(), path: [gw1.id, liarId] }));
    // Messages with nowhere to go, or out of hops.
    for (let i = 0; i < 10; i++)
      liar.ws.send(
        JSON.stringify({
          t: 'route',
          to: randomId(),
          from: liarId,
          ttl: i % 2,
          body: { k: 'gone', node: randomId(), dialId: 'a'.repeat(22) },
        }),
      );
    // A flood of presence: far more than a peer may hold in the gateway's table.
    for (let i = 0; i < 40_000 && liar.ws.readyState === liar.ws.OPEN; i++)
      liar.ws.send(JSON.stringify({ t: 'announce', node: randomId(), path: [liarId] }));
    // Whatever the gateway made of it (rate-limited, cut, or up to the table's bound), its
    // table holds no more than one peer may fill.
    await new Promise<void>((resolve) => {
      const check = () => (liar.ws.bufferedAmount === 0 ? resolve() : setTimeout(check, 100));
      check();
    });
    expect(await metric(gw1, 'rtcmesh_federation_routes')).toBeLessThanOrEqual(20_000);
    liar.ws.close();

    // The gateway still serves, and an honest federation through it still carries a dial.
    expect((await fetch(`${gw1.url}/healthz`)).status).toBe(200);
    const gw2 = await startGateway({ args: ['--registry', 'memory', '--peer', gw1.url] });
    cleanups.push(() => gw2.stop());
    const listener = loopbackCli(gw2.url, ['listen', 'echo', '--exec', 'cat']);
    const id = await waitFor(() => /node (\S+) \(/.exec(listener.err())?.[1], 'the listener');
    for (let attempt = 0; ; attempt++) {
      const dialer = loopbackCli(gw1.url, ['dial', id, 'echo'], Buffer.from('still here\n'));
      const code = await dialer.exited;
      if (code === 1 && /not-found/.test(dialer.err()) && attempt < 30) {
        await new Promise((r) => setTimeout(r, 1000));
        continue;
      }
      expect(dialer.err()).toMatch(/echo: connected to/);
      expect(dialer.out().toString()).toBe('still here\n');
      break;
    }
  }, 300_000);
});

/** `rtcmesh …` on loopback (the test's own namespace). */
function loopbackCli(gatewayUrl: string, args: string[], input?: Buffer): Cli {
  const run = runCli(args, { gateway: gatewayUrl, ...(input !== undefined ? { input } : {}) });
  cleanups.push(() => run.stop());
  return run;
}
