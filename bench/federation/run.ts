/**
 * `npm run bench:federation`: dial latency and relayed throughput over two relay hops (A on
 * LAN 1 → GW1's relay → GW2's relay → B on LAN 2, the gateways federated over a backbone)
 * against one relay hop (the same A and B, once GW2 routes LAN 2 onto the backbone so GW1's
 * relay reaches B itself), in the same run, in network namespaces with no route outside.
 * Records the table in the README. Figures, not tests: nothing passes or fails on them.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { RTCMESH_BIN, startGateway } from '../../e2e/support/gateway-process.ts';
import { repoPath } from '../../e2e/support/paths.ts';
import { buildFederatedLans } from '../../test/support/federated-lans.ts';

const DIALS = Number(process.env.BENCH_DIALS ?? 8);
const BYTES = Number(process.env.BENCH_BYTES ?? 32 * 1024 * 1024);
const PEER = repoPath('dist/bench/federation/peer.mjs');

interface Run {
  dialMs: number[];
  path: string;
  hops: number;
  received: number;
  mbPerS: number;
}

const inNs = (ns: string, ...cmd: string[]) =>
  execFileSync('ip', ['netns', 'exec', ns, ...cmd], { stdio: ['ignore', 'ignore', 'pipe'] });

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? Number.NaN;
}

function measure(ns: string, gateway: string, target: string): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      'ip',
      ['netns', 'exec', ns, process.execPath, PEER, gateway, target, String(DIALS), String(BYTES)],
      {
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.once('exit', (code) => {
      const line = out.trim().split('\n').pop() ?? '';
      if (code !== 0 || !line.startsWith('{'))
        reject(new Error(`bench peer exited ${code}: ${out}`));
      else resolve(JSON.parse(line) as Run);
    });
  });
}

const net = buildFederatedLans('fdz', 2, [[1, 2]]);
const stops: (() => Promise<unknown>)[] = [];
try {
  const [g1, g2] = net.gateways as [(typeof net.gateways)[0], (typeof net.gateways)[0]];
  const [h1, h2] = net.hosts as [(typeof net.hosts)[0], (typeof net.hosts)[0]];
  const start = (g: typeof g1, extra: string[]) =>
    startGateway({
      netns: g.ns,
      listen: '0.0.0.0:8080',
      udp: `${g.lanIp}:3478`,
      args: [
        '--public-url',
        `http://${g.lanIp}:8080`,
        '--registry',
        'memory',
        '--federate',
        '--turn-relay-ip',
        [...g.backboneIps.values()][0] as string,
        ...extra,
      ],
    });
  // GW1 may relay to the backbone, and to LAN 2 once it is routed (the one-hop phase).
  const gw1 = await start(g1, [
    '--turn-peer-net',
    '10.77.12.0/24',
    '--turn-peer-net',
    '10.77.2.0/24',
    '--peer',
    `http://${g2.backboneIps.get(1)}:8080`,
  ]);
  stops.push(() => gw1.stop());
  const gw2 = await start(g2, ['--turn-peer-net', '10.77.12.0/24']);
  stops.push(() => gw2.stop());
  const data = mkdtempSync(join(tmpdir(), 'rtcmesh-bench-sink-'));
  const sink = spawn(
    'ip',
    [
      'netns',
      'exec',
      h2.ns,
      process.execPath,
      RTCMESH_BIN,
      'listen',
      'sink',
      '--exec',
      'wc -c',
      '--gateway',
      `http://${g2.lanIp}:8080`,
      '--data',
      data,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  stops.push(async () => {
    sink.kill('SIGTERM');
    rmSync(data, { recursive: true, force: true });
  });
  let said = '';
  sink.stderr.on('data', (d: Buffer) => {
    said += d.toString();
  });
  const id = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the sink did not connect: ${said}`)), 60_000);
    const check = setInterval(() => {
      const m = /node (\S+) \(/.exec(said);
      if (m?.[1]) {
        clearTimeout(timer);
        clearInterval(check);
        resolve(m[1]);
      }
    }, 100);
  });
  // Presence crosses the federation a moment after the sink connects.
  await new Promise((r) => setTimeout(r, 3000));
  console.log(`two relay hops: ${DIALS} dials, ${BYTES / 1024 / 1024} MiB…`);
  const two = await measure(h1.ns, `http://${g1.lanIp}:8080`, id);
  console.log(JSON.stringify(two));
  // One relay hop: GW2 routes LAN 2 onto the backbone; GW1's relay then reaches B itself.
  inNs(g2.ns, 'sysctl', '-q', '-w', 'net.ipv4.ip_forward=1');
  inNs(g1.ns, 'ip', 'route', 'add', '10.77.2.0/24', 'via', g2.backboneIps.get(1) as string);
  inNs(h2.ns, 'ip', 'route', 'add', 'default', 'via', g2.lanIp);
  console.log(`one relay hop: ${DIALS} dials, ${BYTES / 1024 / 1024} MiB…`);
  const one = await measure(h1.ns, `http://${g1.lanIp}:8080`, id);
  console.log(JSON.stringify(one));
  const row = (name: string, r: Run) =>
    `| ${name} | ${r.hops} | ${median(r.dialMs).toFixed(0)} ms | ${(median(r.dialMs) / median(one.dialMs)).toFixed(2)}× | ${r.mbPerS.toFixed(1)} MB/s | ${(r.mbPerS / one.mbPerS).toFixed(2)}× |`;
  const table = [
    `Federation (\`npm run bench:federation\`, ${DIALS} dials each from a fresh node, ${BYTES / 1024 / 1024} MiB CLI stream, network namespaces, ${cpus().length} cores, ${new Date().toISOString().slice(0, 10)}):`,
    '',
    '| path | relay hops | dial p50 | vs one hop | throughput | vs one hop |',
    '|---|---|---|---|---|---|',
    row('A → GW1 relay → B (one hop, baseline)', one),
    row('A → GW1 relay → GW2 relay → B (two hops)', two),
    '',
    `Paths seen: two hops \`${two.path}\`; one hop \`${one.path}\`.`,
  ].join('\n');
  console.log(`\n${table}\n`);
  const readme = repoPath('README.md');
  const text = readFileSync(readme, 'utf8');
  const begin = '<!-- bench:federation -->';
  const end = '<!-- /bench:federation -->';
  if (text.includes(begin)) {
    writeFileSync(
      readme,
      text.replace(new RegExp(`${begin}[\\s\\S]*${end}`), `${begin}\n${table}\n${end}`),
    );
    console.log('recorded in README.md (federation)');
  }
} finally {
  for (const stop of stops.reverse()) await stop().catch(() => undefined);
  net.destroy();
}
