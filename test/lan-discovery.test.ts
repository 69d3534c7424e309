/**
 * The disconnected mesh on one LAN (DESIGN "The disconnected mesh"): CLI devices in network
 * namespaces on a bridge with no route anywhere else, no Redis and no --gateway. Two devices
 * may serve (--may-serve), the others are plain: one capable device becomes the gateway, the
 * plain ones find it, a dial echoes 1 MiB; the gateway device dies and the other capable one
 * takes over. Then a hostile device floods the LAN with forged and garbage discovery packets.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { build } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RTCMESH_BIN } from '../e2e/support/gateway-process.ts';
import { repoPath } from '../e2e/support/paths.ts';
import { captureOutput, type ProcessOutput } from '../e2e/support/process-output.ts';
import { waitFor } from '../e2e/support/wait.ts';
import { buildLan, cliOnHost, type TestLan } from './support/lan.ts';

const TAG = `ld${process.pid % 1000}`;
/** Bounds for waits on a loaded machine, not timings. */
const TEST_MS = 300_000;
let lan: TestLan;
let scratch: string;
const children: ChildProcess[] = [];

beforeAll(async () => {
  scratch = mkdtempSync(join(tmpdir(), 'rtcmesh-lan-'));
  lan = buildLan(TAG, 8);
  await build({
    entryPoints: [repoPath('test/support/lan-forger.ts')],
    outfile: join(scratch, 'forger.mjs'),
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    logLevel: 'warning',
  });
});
afterAll(() => {
  for (const c of children) c.kill('SIGKILL');
  lan?.destroy();
  rmSync(scratch, { recursive: true, force: true });
});

type Device = ProcessOutput & { child: ChildProcess };

/** A command run on a LAN host, as a user runs it (`ip netns exec`). */
function onHost(host: number, command: string[], input?: Buffer): Device {
  return spawnDevice(lan.hosts[host - 1]?.ns ?? '', command, input);
}

function spawnDevice(ns: string, command: string[], input?: Buffer): Device {
  const child = spawn('ip', ['netns', 'exec', ns, ...command], { stdio: ['pipe', 'pipe', 'pipe'] });
  children.push(child);
  const output = captureOutput(child);
  if (input !== undefined) child.stdin?.end(input);
  return { child, ...output };
}

/** `rtcmesh …` on a host, with a data directory of its own and no gateway named. */
function rtcmesh(host: number, args: string[], input?: Buffer): Device {
  const run = cliOnHost(lan, host, scratch, args, { input });
  children.push(run.child);
  return run;
}

const SERVING = /serving as this LAN's gateway (\S+) at (\S+)/;
const nodeIdOf = (d: Device) => /node (\S+) \(\S+\) connected to/.exec(d.err())?.[1];
const connectedTo = (d: Device) => /node \S+ \(\S+\) connected to (\S+)/.exec(d.err())?.[1];

async function dialEcho(host: number, peer: string, bytes: number): Promise<Device> {
  const payload = randomBytes(bytes);
  const dialer = rtcmesh(host, ['dial', peer, 'echo'], payload);
  const code = await dialer.exited;
  expect(code, dialer.err()).toBe(0);
  expect(
    dialer.out().equals(payload),
    `${dialer.out().length} of ${bytes} bytes came back\n${dialer.err()}`,
  ).toBe(true);
  return dialer;
}

describe('LAN discovery and gateway election (no --gateway, no Redis)', () => {
  let capable: Device[];
  let listener: Device;
  let listenerId: string;
  let gatewayUrl: string;

  it(
    'one capable device becomes the gateway; plain ones find it; 1 MiB echoes back',
    async () => {
      capable = [rtcmesh(1, ['node', '--may-serve']), rtcmesh(2, ['node', '--may-serve'])];
      listener = rtcmesh(3, ['listen', 'echo', '--exec', 'cat']);
      const serving = await waitFor(
        () => capable.map((d) => SERVING.exec(d.err())).find((m) => m) ?? undefined,
        'a capable device to serve',
      );
      gatewayUrl = serving[2] ?? '';
      listenerId = await waitFor(() => nodeIdOf(listener), 'the listener to connect');
      expect(connectedTo(listener)).toBe(gatewayUrl);
      // Exactly one serves (the other found it and connected to it).
      await waitFor(
        () => capable.every((d) => connectedTo(d) === gatewayUrl) || undefined,
        'both capable devices on the one gateway',
      );
      expect(capable.filter((d) => SERVING.test(d.err()))).toHaveLength(1);
      const dialer = await dialEcho(4, listenerId, 1 << 20);
      expect(connectedTo(dialer)).toBe(gatewayUrl);
    },
    TEST_MS,
  );

  it(
    'the gateway device dies: the other capable one takes over and a new dial works',
    async () => {
      const index = capable.findIndex((d) => SERVING.test(d.err()));
      const gone = capable[index];
      const other = capable[1 - index];
      if (!gone || !other) throw new Error('no serving device');
      gone.child.kill('SIGKILL');
      await gone.exited;
      const takeover = await waitFor(
        () => SERVING.exec(other.err()) ?? undefined,
        'a takeover',
        30_000,
      );
      const newUrl = takeover[2] ?? '';
      expect(newUrl).not.toBe(gatewayUrl);
      gatewayUrl = newUrl;
      await waitFor(
        () => (listener.err().includes(`connected again to ${newUrl}`) ? true : undefined),
        'the listener to reconnect by itself',
      );
      const dialer = await dialEcho(4, listenerId, 1 << 20);
      expect(connectedTo(dialer)).toBe(newUrl);
    },
    TEST_MS,
  );

  it(
    'forged and garbage discovery packets: never used, and the LAN keeps working',
    async () => {
      const attackerIp = lan.hosts[4]?.ip ?? '';
      const forger = onHost(5, [
        process.execPath,
        join(scratch, 'forger.mjs'),
        '--ip',
        attackerIp,
        '--forged',
        '8001',
        '--rogue',
        '8002',
        '--ms',
        '15000',
      ]);
      // During the flood: a new device joins and is reached; the listener stays reachable.
      await new Promise((r) => setTimeout(r, 3000));
      const newcomer = rtcmesh(6, ['listen', 'echo', '--exec', 'cat']);
      const newcomerId = await waitFor(() => nodeIdOf(newcomer), 'the newcomer to connect');
      expect(connectedTo(newcomer)).toBe(gatewayUrl);
      await dialEcho(4, newcomerId, 1 << 20);
      await dialEcho(4, listenerId, 1 << 20);
      expect(await forger.exited, forger.err()).toBe(0);
      const report = JSON.parse(forger.out().toString()) as {
        forged: number;
        rogue: number;
        sent: number;
      };
      expect(report.sent).toBeGreaterThan(1000);
      // Forged announcements (the real ID, another address) never even got a request.
      expect(report.forged).toBe(0);
      // Nobody made a session with the attacker's address; the gateway kept serving.
      for (const d of [...capable, listener, newcomer])
        expect(d.err()).not.toMatch(new RegExp(`connected (again )?to http://${attackerIp}`));
      expect(capable.some((d) => d.child.exitCode === null && SERVING.test(d.err()))).toBe(true);
      expect(capable.some((d) => /stepping down/.test(d.err()))).toBe(false);
      // After the flood a new dial still works.
      await dialEcho(4, listenerId, 64 << 10);
    },
    TEST_MS,
  );

  it(
    'a node restarted while no gateway announces itself reaches the one it kept',
    async () => {
      // A standalone gateway on host 7, announced; a node on host 8 hears it and keeps it.
      const ip = lan.hosts[6]?.ip ?? '';
      const gatewayData = mkdtempSync(join(scratch, 'gw-'));
      const gatewayArgs = (announce: boolean) => [
        process.execPath,
        RTCMESH_BIN,
        'gateway',
        '--listen',
        `${ip}:8080`,
        '--udp',
        `${ip}:0`,
        '--registry',
        'memory',
        '--data',
        gatewayData,
        ...(announce ? ['--announce'] : []),
      ];
      const announced = onHost(7, gatewayArgs(true));
      await waitFor(
        () => (announced.out().includes('announced on the LAN') ? true : undefined),
        'the gateway',
      );
      const nodeData = mkdtempSync(join(scratch, 'kept-'));
      const node = () =>
        onHost(8, [
          process.execPath,
          RTCMESH_BIN,
          'listen',
          'echo',
          '--exec',
          'cat',
          '--data',
          nodeData,
        ]);
      const first = node();
      const id = await waitFor(() => nodeIdOf(first), 'the node to connect');
      first.child.kill('SIGTERM');
      await first.exited;
      announced.child.kill('SIGTERM');
      await announced.exited;
      // Back, same key and address, but silent; and the LAN's elected gateway is gone too.
      for (const d of capable) d.child.kill('SIGKILL');
      await Promise.all(capable.map((d) => d.exited));
      const silent = onHost(7, gatewayArgs(false));
      await waitFor(
        () => (/listening on/.test(silent.out().toString()) ? true : undefined),
        'the gateway back',
      );
      expect(silent.out().toString()).not.toMatch(/announced/);
      const again = node();
      await waitFor(() => nodeIdOf(again), 'the restarted node to reach the kept gateway');
      expect(connectedTo(again)).toBe(`http://${ip}:8080`);
      expect(nodeIdOf(again)).toBe(id);
    },
    TEST_MS,
  );
});

describe('an IPv6-only LAN', () => {
  let lan6: TestLan;
  const started: Device[] = [];
  beforeAll(() => {
    lan6 = buildLan(`${TAG}6`, 2, { ipv4: false });
  });
  afterAll(() => {
    for (const d of started) d.child.kill('SIGKILL');
    lan6?.destroy();
  });

  it(
    'discovery and the elected gateway work over IPv6 alone',
    async () => {
      const on = (host: number, args: string[]) => {
        const ns = lan6.hosts[host - 1]?.ns ?? '';
        const data = mkdtempSync(join(scratch, `v6h${host}-`));
        const d = spawnDevice(ns, [process.execPath, RTCMESH_BIN, ...args, '--data', data]);
        started.push(d);
        return d;
      };
      const capable = on(1, ['node', '--may-serve']);
      const plain = on(2, ['node']);
      const serving = await waitFor(() => SERVING.exec(capable.err()) ?? undefined, 'a gateway');
      expect(serving[2]).toMatch(/^http:\/\/\[fd77::/);
      await waitFor(() => connectedTo(plain), 'the plain node to connect');
      expect(connectedTo(plain)).toBe(serving[2]);
    },
    TEST_MS,
  );
});
