/**
 * Relayed throughput and allocation rate: the gateway's built-in TURN server next to coturn
 * (a reference relay), same machine, same run. Pages use raw RTCPeerConnections with
 * `iceTransportPolicy: 'relay'`, so every byte goes through the relay under test.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { startGateway } from '../e2e/support/gateway-process.ts';
import { freeUdpPort } from '../e2e/support/ports.ts';
import { newPage } from './browser.ts';
import { BYTES } from './throughput.ts';

export interface RelayFigures {
  name: string;
  /** Best and median of the rounds. */
  mbPerS: number;
  medianMbPerS: number;
  /** Every round's MB/s, in order: round i of each relay ran back to back. */
  rounds: number[];
  /** CPU seconds the relay's process spent per 64 MiB run (median): what it takes from the browsers. */
  cpuS: number;
  allocationsPerS: number;
}

/** Rounds of each relay, interleaved (coturn, gateway, coturn, …) so load changes hit both. */
export const RELAY_ROUNDS = Number(process.env.BENCH_RELAY_ROUNDS ?? 3);

export const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? (sorted[mid] ?? 0) : ((sorted[mid - 1] ?? 0) + (sorted[mid] ?? 0)) / 2;
};

/** CPU seconds (user + system) a process has used so far. */
export function cpuSeconds(pid: number | undefined): number {
  if (pid === undefined) return Number.NaN;
  const fields = (readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1] ?? '').split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks
}

export interface Relay {
  port: number;
  secret: string;
}

function udpRcvbufErrors(): number {
  const lines = readFileSync('/proc/net/snmp', 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('Udp:'));
  const names = (lines[0] ?? '').split(/\s+/);
  const values = (lines[1] ?? '').split(/\s+/);
  return Number(values[names.indexOf('RcvbufErrors')] ?? 0);
}

/**
 * Receive-buffer drops so far by the process that owns each UDP socket in this namespace
 * (`ss -uanmp`: the skmem `d` field), keyed by socket so that counts of sockets made and
 * closed between two readings can be told apart.
 */
function udpDropsBySocket(): Map<string, { owner: string; drops: number }> {
  const out = spawnSync('ss', ['-uanmpH'], { encoding: 'utf8' }).stdout ?? '';
  const sockets = new Map<string, { owner: string; drops: number }>();
  let local = '';
  let owner = '';
  for (const line of out.split('\n')) {
    const skmem = /skmem:\(.*\bd(\d+)\)/.exec(line);
    if (skmem) {
      if (local) sockets.set(local, { owner, drops: Number(skmem[1]) });
      continue;
    }
    const fields = line.trim().split(/\s+/);
    if (fields.length < 4) continue;
    local = `${fields[3]} ${/pid=(\d+)/.exec(line)?.[1] ?? ''}`;
    owner = /users:\(\("([^"]+)"/.exec(line)?.[1] ?? 'unknown';
  }
  return sockets;
}

/** Drops between two readings, summed by owning process name. */
function dropsByOwner(
  before: Map<string, { owner: string; drops: number }>,
  after: Map<string, { owner: string; drops: number }>,
): Record<string, number> {
  const sums: Record<string, number> = {};
  for (const [key, now] of after) {
    const delta = now.drops - (before.get(key)?.drops ?? 0);
    if (delta > 0) sums[now.owner] = (sums[now.owner] ?? 0) + delta;
  }
  return sums;
}

export function credentials(relay: Relay, user: string) {
  const username = `${Math.floor(Date.now() / 1000) + 3600}:${user}`;
  return {
    username,
    credential: createHmac('sha1', relay.secret).update(username).digest('base64'),
  };
}

type RelayWindow = Window & { pc?: RTCPeerConnection; received?: Promise<number> };

async function relayedThroughput(a: Page, b: Page, relay: Relay): Promise<number> {
  const iceServers = [
    { urls: `turn:127.0.0.1:${relay.port}?transport=udp`, ...credentials(relay, 'bench') },
  ];
  return (await relayedTransfer(a, b, iceServers)).mbPerS;
}

/**
 * 64 MiB from page a to page b over relay-only ICE with these servers: throughput, and the
 * time from the first offer to the bulk channel open (gathering, allocations, checks, DTLS).
 */
export async function relayedTransfer(
  a: Page,
  b: Page,
  iceServers: { urls: string; username: string; credential: string }[],
): Promise<{ mbPerS: number; connectMs: number }> {
  const began = Date.now();
  const gathered = async (page: Page, offer?: RTCSessionDescriptionInit) =>
    page.evaluate(
      async ({ iceServers, offer, total }) => {
        const w = window as RelayWindow;
        w.pc?.close();
        const pc = new RTCPeerConnection({ iceServers, iceTransportPolicy: 'relay' });
        w.pc = pc;
        if (offer) {
          w.received = new Promise<number>((resolve) => {
            pc.ondatachannel = (ev) => {
              let got = 0;
              ev.channel.binaryType = 'arraybuffer';
              ev.channel.onmessage = (m) => {
                got += (m.data as ArrayBuffer).byteLength;
                if (got >= total) resolve(Date.now());
              };
            };
          });
          await pc.setRemoteDescription(offer);
        } else pc.createDataChannel('warm');
        await pc.setLocalDescription();
        await new Promise<void>((r) => {
          const done = () => pc.iceGatheringState === 'complete' && r();
          pc.onicegatheringstatechange = done;
          done();
        });
        return pc.localDescription?.toJSON() as RTCSessionDescriptionInit;
      },
      { iceServers, offer, total: BYTES },
    );
  const offer = await gathered(a);
  const answer = await gathered(b, offer);
  const { start, open } = await a.evaluate(
    async ({ answer, total }) => {
      const pc = (window as RelayWindow).pc as RTCPeerConnection;
      const dc = pc.createDataChannel('bulk');
      await pc.setRemoteDescription(answer);
      await new Promise((r) => dc.addEventListener('open', r, { once: true }));
      const open = Date.now();
      dc.bufferedAmountLowThreshold = 256 * 1024;
      const chunk = new Uint8Array(64 * 1024 - 1).fill(7);
      const t0 = Date.now();
      for (let sent = 0; sent < total; sent += chunk.length) {
        if (dc.bufferedAmount > 1024 * 1024)
          await new Promise((r) => dc.addEventListener('bufferedamountlow', r, { once: true }));
        dc.send(sent + chunk.length > total ? chunk.subarray(0, total - sent) : chunk);
      }
      return { start: t0, open };
    },
    { answer, total: BYTES },
  );
  const end = await b.evaluate(() => (window as RelayWindow).received as Promise<number>);
  return { mbPerS: BYTES / 1e6 / ((end - start) / 1000), connectMs: open - began };
}

/** Allocations per second: N turnutils_uclient clients, each allocating once (-c, -y pairs). */
async function allocationRate(relay: Relay, clients: number): Promise<number> {
  const start = Date.now();
  const child = spawn(
    'turnutils_uclient',
    [
      '-s',
      '-y',
      '-c',
      '-z',
      '1',
      '-m',
      String(clients),
      '-n',
      '1',
      '-l',
      '100',
      '-W',
      relay.secret,
      '-u',
      'alloc',
      '-p',
      String(relay.port),
      '-L',
      '127.0.0.1',
      '127.0.0.1',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  child.stdout.on('data', (d: Buffer) => {
    out += d.toString();
  });
  const code = await new Promise<number | null>((r) => child.once('exit', r));
  if (code !== 0) throw new Error(`turnutils_uclient exited ${code}: ${out.slice(-500)}`);
  return clients / ((Date.now() - start) / 1000);
}

export async function startCoturn(tls?: {
  port: number;
  cert: string;
  key: string;
}): Promise<{ relay: Relay; process: ChildProcess }> {
  const port = await freeUdpPort();
  const secret = randomBytes(16).toString('hex');
  const child = spawn(
    'turnserver',
    [
      '-n',
      '--listening-ip=127.0.0.1',
      `--listening-port=${port}`,
      '--relay-ip=127.0.0.1',
      '--use-auth-secret',
      `--static-auth-secret=${secret}`,
      '--realm=rtcmesh',
      '--no-tcp',
      ...(tls
        ? [`--tls-listening-port=${tls.port}`, `--cert=${tls.cert}`, `--pkey=${tls.key}`]
        : ['--no-tls']),
      '--no-dtls',
      '--no-cli',
      '--allow-loopback-peers',
      '--no-multicast-peers',
      '--min-port=40000',
      '--max-port=44999',
      '--log-file=stdout',
      '--simple-log',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  await new Promise<void>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`coturn did not start:\n${out}`)), 10_000);
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      if (/Total General servers|DB connection success/i.test(out)) {
        clearTimeout(timer);
        setTimeout(resolve, 700);
      }
    });
  });
  return { relay: { port, secret }, process: child };
}

export async function relayBench(browser: Browser): Promise<RelayFigures[]> {
  // Lift the per-user quotas (10 MB/s, 50 allocations by default): coturn has none here.
  const gateway = await startGateway({
    args: [
      '--turn-allow-private',
      '--limit',
      'turn.allocationsPerUser=1000',
      '--limit',
      'turn.bytesPerSecondPerUser=1000000000',
      // Every bench client comes from 127.0.0.1: lift the per-source shares coturn lacks.
      '--limit',
      'turn.unauthenticatedBurstPerSource=100000',
      '--limit',
      'turn.unauthenticatedPerSecondPerSource=100000',
      '--limit',
      'turn.allocationsPerSource=100000',
    ],
  });
  const coturn = await startCoturn();
  try {
    const ours: Relay = {
      port: gateway.turnPort ?? 0,
      secret: readFileSync(join(gateway.dataDir, 'turn-secret'), 'utf8').trim(),
    };
    const a = await newPage(browser, gateway.url);
    const b = await newPage(browser, gateway.url);
    const mesh: number[] = [];
    const ref: number[] = [];
    const cpu = { ref: [] as number[], mesh: [] as number[] };
    // Datagrams the kernel dropped for a full socket receive buffer, during each relay's runs
    // (this namespace's counter: only the relays and Chromium send UDP here).
    const drops = { ref: 0, mesh: 0 };
    // …and by the process whose socket dropped them (read before the run's sockets close).
    const owners = { ref: {} as Record<string, number>, mesh: {} as Record<string, number> };
    const run = async (relay: Relay, pid: number | undefined, k: 'ref' | 'mesh') => {
      const before = udpRcvbufErrors();
      const sockets = udpDropsBySocket();
      const cpuBefore = cpuSeconds(pid);
      const mbPerS = await relayedThroughput(a.page, b.page, relay);
      cpu[k].push(cpuSeconds(pid) - cpuBefore);
      drops[k] += udpRcvbufErrors() - before;
      for (const [owner, n] of Object.entries(dropsByOwner(sockets, udpDropsBySocket())))
        owners[k][owner] = (owners[k][owner] ?? 0) + n;
      return mbPerS;
    };
    for (let i = 0; i < RELAY_ROUNDS; i++) {
      ref.push(await run(coturn.relay, coturn.process.pid, 'ref'));
      mesh.push(await run(ours, gateway.process.pid, 'mesh'));
      console.log(
        `  round ${i + 1}: coturn ${ref[i]?.toFixed(2)} MB/s (${cpu.ref[i]?.toFixed(1)} CPU s), gateway ${mesh[i]?.toFixed(2)} MB/s (${cpu.mesh[i]?.toFixed(1)} CPU s), ratio ${((mesh[i] ?? 0) / (ref[i] ?? 1)).toFixed(2)}`,
      );
    }
    console.log(
      `  UDP receive-buffer drops during the runs: coturn ${drops.ref}, gateway ${drops.mesh}`,
    );
    const byOwner = (o: Record<string, number>) =>
      Object.entries(o)
        .map(([owner, n]) => `${owner} ${n}`)
        .join(', ') || 'none';
    console.log(
      `  …by the socket's process: with coturn ${byOwner(owners.ref)}; with the gateway ${byOwner(owners.mesh)}`,
    );
    await a.context.close();
    await b.context.close();
    const clients = 200;
    return [
      {
        name: 'coturn (reference)',
        mbPerS: Math.max(...ref),
        medianMbPerS: median(ref),
        rounds: ref,
        cpuS: median(cpu.ref),
        allocationsPerS: await allocationRate(coturn.relay, clients),
      },
      {
        name: 'rtcmesh gateway TURN',
        mbPerS: Math.max(...mesh),
        medianMbPerS: median(mesh),
        rounds: mesh,
        cpuS: median(cpu.mesh),
        allocationsPerS: await allocationRate(ours, clients),
      },
    ];
  } finally {
    coturn.process.kill('SIGTERM');
    await gateway.stop();
  }
}
