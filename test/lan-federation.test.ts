/**
 * Two gateways that meet on one LAN federate by themselves (docs/design.md §10, "Two gateways
 * that meet on one LAN"): `rtcmesh gateway --announce --federate` on two hosts of a LAN made
 * of network namespaces with no route anywhere else, no Redis, no --peer. Each hears the
 * other's announcement and links to it, pinned to the ID the announcement proved; a node held
 * by one dials a node held by the other and 1 MiB echoes back byte-identical.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { build } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CliRun } from '../e2e/support/cli-process.ts';
import { type GatewayProcess, startGateway } from '../e2e/support/gateway-process.ts';
import { repoPath } from '../e2e/support/paths.ts';
import { captureOutput } from '../e2e/support/process-output.ts';
import { waitFor } from '../e2e/support/wait.ts';
import { buildLan, cliOnHost, type TestLan } from './support/lan.ts';

const TAG = `lf${process.pid % 1000}`;
/** Bounds for waits on a loaded machine, not timings. */
const TEST_MS = 300_000;
let lan: TestLan;
let scratch: string;
const children: ChildProcess[] = [];
const gateways: GatewayProcess[] = [];

beforeAll(async () => {
  scratch = mkdtempSync(join(tmpdir(), 'rtcmesh-lanfed-'));
  lan = buildLan(TAG, 6);
  await build({
    entryPoints: [repoPath('test/support/lan-rogues.ts')],
    outfile: join(scratch, 'rogues.mjs'),
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    logLevel: 'warning',
  });
});
afterAll(async () => {
  for (const c of children) c.kill('SIGKILL');
  await Promise.all(gateways.map((g) => g.stop()));
  lan?.destroy();
  rmSync(scratch, { recursive: true, force: true });
});

type Cli = CliRun;

/** `rtcmesh …` on a LAN host, as a user runs it, with a data directory of its own. */
function rtcmesh(host: number, args: string[], input?: Buffer): Cli {
  const run = cliOnHost(lan, host, scratch, args, { input });
  children.push(run.child);
  return run;
}

/** A gateway on a LAN host, announced and accepting federation. */
function lanGateway(host: number): Promise<GatewayProcess> {
  const ip = lan.hosts[host - 1]?.ip ?? '';
  return startGateway({
    netns: lan.hosts[host - 1]?.ns ?? '',
    listen: `${ip}:8080`,
    udp: `${ip}:3478`,
    args: ['--registry', 'memory', '--announce', '--federate'],
  }).then((g) => {
    gateways.push(g);
    return g;
  });
}

/** Waits until the gateway `self` (asked from `host`) lists `other` as a linked peer. */
async function linked(host: number, self: GatewayProcess, other: GatewayProcess): Promise<void> {
  const deadline = Date.now() + 120_000;
  let peers: string[] = [];
  while (Date.now() < deadline) {
    peers = (await infoFrom(host, self.url)).federation?.peers ?? [];
    if (peers.includes(other.id)) return;
    await new Promise((r) => setTimeout(r, 1000));
  }
  expect(peers, self.output()).toContain(other.id);
}

/** GET a gateway's /v1/info from inside a LAN host (the test's namespace has no route there). */
async function infoFrom(host: number, url: string): Promise<{ federation?: { peers: string[] } }> {
  const probe = spawn(
    'ip',
    [
      'netns',
      'exec',
      lan.hosts[host - 1]?.ns ?? '',
      process.execPath,
      '-e',
      `fetch(${JSON.stringify(`${url}/v1/info`)}).then((r) => r.text()).then((t) => process.stdout.write(t))`,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const output = captureOutput(probe);
  await output.exited;
  return JSON.parse(output.out().toString()) as { federation?: { peers: string[] } };
}

describe('two gateways on one LAN (--announce --federate, no --peer, no Redis)', () => {
  it(
    'federate by themselves: a node held by one dials a node held by the other, 1 MiB echoed',
    async () => {
      const [gw1, gw2] = await Promise.all([lanGateway(1), lanGateway(2)]);
      expect(gw1.output()).toMatch(/announced on the LAN/);
      // Each lists the other as a linked peer once it has heard it and the link proved its ID.
      await linked(1, gw1, gw2);
      await linked(2, gw2, gw1);

      const listener = rtcmesh(3, ['listen', 'echo', '--exec', 'cat', '--gateway', gw1.url]);
      const listenerId = await waitFor(
        () => /node (\S+) \(\S+\) connected to/.exec(listener.err())?.[1],
        'the listener to connect to GW1',
      );
      const payload = randomBytes(1 << 20);
      // Presence crosses the federation a moment after the listener connects: a dial that
      // finds the callee not yet known is tried again (bounded); anything else is the outcome.
      for (let attempt = 0; ; attempt++) {
        const dialer = rtcmesh(4, ['dial', listenerId, 'echo', '--gateway', gw2.url], payload);
        const code = await dialer.exited;
        if (code === 1 && /not-found|offline/.test(dialer.err()) && attempt < 30) {
          await new Promise((r) => setTimeout(r, 1000));
          continue;
        }
        expect(code, dialer.err()).toBe(0);
        expect(dialer.err()).toMatch(new RegExp(`connected to ${gw2.url.replace(/\./g, '\\.')}`));
        expect(
          dialer.out().equals(payload),
          `${dialer.out().length} of ${payload.length} bytes came back\n${dialer.err()}`,
        ).toBe(true);
        break;
      }
    },
    TEST_MS,
  );

  it(
    'strangers announcing many signed gateways cannot fill the federation: a new gateway still links',
    async () => {
      const [gw1] = gateways as [GatewayProcess];
      // 100 validly signed gateways (more than a gateway may link to), none of which works.
      const rogues = spawn(
        'ip',
        [
          'netns',
          'exec',
          lan.hosts[4]?.ns ?? '',
          process.execPath,
          join(scratch, 'rogues.mjs'),
          '--ip',
          lan.hosts[4]?.ip ?? '',
          '--count',
          '100',
          '--ms',
          '15000',
        ],
        { stdio: ['ignore', 'pipe', 'inherit'] },
      );
      children.push(rogues);
      const report = captureOutput(rogues);
      await report.exited;
      expect(JSON.parse(report.out().toString()).sent).toBeGreaterThan(100);
      // After the flood, an honest gateway joins the LAN: GW1 links to it.
      const gw3 = await lanGateway(6);
      await linked(1, gw1, gw3);
      await linked(6, gw3, gw1);
      expect(gw1.output()).not.toMatch(/cannot federate/);
    },
    TEST_MS,
  );
});
