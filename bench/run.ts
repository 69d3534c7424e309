/**
 * `npm run bench`: prints figures, each next to a baseline measured in the same run, and
 * records them in the README's performance section. Benchmarks are not tests: nothing here
 * passes or fails on a number, but for the app-size budget (bench/app-size.ts), which fails
 * the run (exit 1) and the unit suite (test/app-size.test.ts) alike.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { repoPath } from '../e2e/support/paths.ts';
import { appSizeTable, measureAppSize } from './app-size.ts';
import { launch } from './browser.ts';
import { interleavedDials, peerjsDialer, rawDialer, rtcmeshDialer } from './dial-latency.ts';
import { crossDials, crossRawDials, crossThroughput, FirefoxProcess } from './firefox.ts';
import { lanBench } from './lan.ts';
import { pushWakeDials } from './push-wake.ts';
import { median, RELAY_ROUNDS, relayBench } from './relay.ts';
import { relayTlsBench } from './relay-tls.ts';
import { nodeReliability, pageReliability } from './reliability.ts';
import { servicesBench } from './services.ts';
import { cliToCli, pageToPage } from './throughput.ts';

const DIALS = Number(process.env.BENCH_DIALS ?? 30);
/** Run only some sections: BENCH_ONLY=dial,throughput */
const ONLY = new Set(
  (
    process.env.BENCH_ONLY ??
    'size,dial,reliability,throughput,firefox,relay,relay-tls,push,services,lan'
  ).split(','),
);
/** Dials in a row for the reliability section (each side: pages, Node nodes). */
const RELIABILITY_DIALS = Number(process.env.BENCH_RELIABILITY_DIALS ?? 1000);
/** Push-woken dials each open B's app again: fewer of them. */
const PUSH_DIALS = Number(process.env.BENCH_PUSH_DIALS ?? 10);

function record(section: string, table: string): void {
  const readme = repoPath('README.md');
  const text = readFileSync(readme, 'utf8');
  const begin = `<!-- bench:${section} -->`;
  const end = `<!-- /bench:${section} -->`;
  if (text.includes(begin) && text.includes(end)) {
    writeFileSync(
      readme,
      text.replace(new RegExp(`${begin}[\\s\\S]*${end}`), `${begin}\n${table}\n${end}`),
    );
    console.log(`recorded in README.md (${section})`);
  }
}
const fmt = (ms: number) => `${ms.toFixed(1)} ms`;

/**
 * Each round's ratio of two relays run back to back, median and range: a pair shares the
 * machine's state of the moment, which the ratio of medians does not cancel.
 */
const pairedRatios = (ours: number[], reference: number[]): string => {
  const ratios = ours.map((v, i) => v / (reference[i] ?? Number.NaN));
  return `round by round ${median(ratios).toFixed(2)} median (${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)})`;
};

// The app-size budget is the one figure the bench enforces: above it the run exits 1.
let overBudget = false;
if (ONLY.has('size')) {
  const size = measureAppSize();
  const table = appSizeTable(size);
  console.log(`\n${table}\n`);
  record('size', table);
  overBudget = size.overBudget;
  if (overBudget)
    console.error(
      `APP SIZE OVER BUDGET: ${size.totalGzipBytes} bytes gzip > ${size.budgetBytes} (see the table above)`,
    );
}

if (ONLY.has('lan')) {
  const rounds = Number(process.env.BENCH_LAN_ROUNDS ?? 5);
  console.log(`LAN discovery and election: ${rounds} rounds, CLI devices in network namespaces`);
  const f = await lanBench(rounds);
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
  const found = median(f.foundMs);
  const configured = median(f.configuredMs);
  const table = [
    `LAN discovery and election (\`npm run bench\`, ${rounds} rounds, ${cpus().length} cores, ${new Date().toISOString().slice(0, 10)}; medians):`,
    '',
    '| what | median | vs baseline |',
    '|---|---|---|',
    `| node start → session, \`--gateway URL\` given (baseline) | ${fmt(configured)} | 1.00× |`,
    `| node start → session, gateway found on the LAN | ${fmt(found)} | ${(found / configured).toFixed(2)}× |`,
    `| gateway device killed → other capable device serves | ${fmt(median(f.electedMs))} | ${(median(f.electedMs) / configured).toFixed(2)}× |`,
    `| gateway device killed → a plain node's session again | ${fmt(median(f.reconnectedMs))} | ${(median(f.reconnectedMs) / configured).toFixed(2)}× |`,
    '',
    'A takeover waits for the dead gateway to go unheard (6 s: three missed announcements), then 1.5–3 s of candidacy, a last query and the start.',
  ].join('\n');
  console.log(`\n${table}\n`);
  record('lan', table);
  if ([...ONLY].every((s) => s === 'lan' || s === 'size')) process.exit(overBudget ? 1 : 0);
}

const browser = await launch();
try {
  if (ONLY.has('dial')) {
    console.log(
      `dial latency: dial() to open data channel, ${DIALS} dials each, two Chromium contexts on loopback`,
    );
    const dialers = [
      await rawDialer(browser),
      await rtcmeshDialer(browser),
      await peerjsDialer(browser),
    ];
    const [floor, rtcmesh, peerjs] = await interleavedDials(dialers, DIALS);
    for (const d of dialers) await d.close();
    if (!floor || !rtcmesh || !peerjs) throw new Error('a dialer gave no figures');
    const rows = [floor, rtcmesh, peerjs].map(
      (s) => `| ${s.name} | ${fmt(s.p50)} | ${fmt(s.p95)} | ${(s.p50 / floor.p50).toFixed(2)}× |`,
    );
    const table = [
      `Dial latency (\`npm run bench\`, ${DIALS} dials each, ${cpus().length} cores, ${new Date().toISOString().slice(0, 10)}):`,
      '',
      '| path | p50 | p95 | p50 vs floor |',
      '|---|---|---|---|',
      ...rows,
      '',
      `rtcmesh, dialing from a tab that is not the RTC host: p50 ${(rtcmesh.p50 / floor.p50).toFixed(2)}× the floor (target ≤ 1.15×) and ${(rtcmesh.p50 / peerjs.p50).toFixed(2)}× PeerJS (target ≤ 1.0×); p95 ${(rtcmesh.p95 / peerjs.p95).toFixed(2)}× PeerJS's (target ≤ 1.0×).`,
      'The three dial in turn (one of each, then again) on a 2-core machine shared with other work: times move a lot between runs, the ratios less, but still by tens of percent (repeat before reading much into one).',
    ].join('\n');
    console.log(`\n${table}\n`);
    record('dial', table);
  }
  if (ONLY.has('reliability')) {
    console.log(
      `reliability: ${RELIABILITY_DIALS} dials in a row, each a new connection, pages and Node nodes`,
    );
    const results = [
      await pageReliability(browser, RELIABILITY_DIALS),
      await nodeReliability(RELIABILITY_DIALS),
    ];
    const rows = results.map((r) => `| ${r.name} | ${r.connected} | ${r.failed} | ${r.hung} |`);
    const errors = results.flatMap((r) =>
      Object.entries(r.errors).map(([e, n]) => `- ${r.name}: ${n}× ${e}`),
    );
    const table = [
      `Dial reliability (\`npm run bench\`, ${RELIABILITY_DIALS} dials in a row each, ${cpus().length} cores, ${new Date().toISOString().slice(0, 10)}):`,
      '',
      '| between | connected | failed | hung |',
      '|---|---|---|---|',
      ...rows,
      '',
      errors.length > 0
        ? `Failures:\n${errors.join('\n')}`
        : 'No failures (target: every dial connects).',
    ].join('\n');
    console.log(`\n${table}\n`);
    record('reliability', table);
  }
  if (ONLY.has('throughput')) {
    console.log('throughput: 64 MiB, one reliable stream, best of 3');
    const [raw, mesh, otherTab] = await pageToPage(browser);
    const cli = await cliToCli();
    const rows = [raw, mesh, otherTab, cli]
      .filter((r) => r !== undefined)
      .map((r) => `| ${r.name} | ${r.mbPerS.toFixed(1)} MB/s |`);
    const table = [
      `Stream throughput (\`npm run bench\`, 64 MiB, ${cpus().length} cores, ${new Date().toISOString().slice(0, 10)}):`,
      '',
      '| path | throughput |',
      '|---|---|',
      ...rows,
      '',
      raw && mesh
        ? `rtcmesh stream / raw RTCDataChannel between the same pages: ${(mesh.mbPerS / raw.mbPerS).toFixed(2)} (target ≥ 0.95).`
        : '',
      mesh && otherTab
        ? `Tab that is not the RTC host / the host tab itself, same node and run: ${(otherTab.mbPerS / mesh.mbPerS).toFixed(2)}.`
        : '',
      raw && otherTab
        ? `Tab that is not the RTC host / raw RTCDataChannel: ${(otherTab.mbPerS / raw.mbPerS).toFixed(2)} (target ≥ 0.9).`
        : '',
    ].join('\n');
    console.log(`\n${table}\n`);
    record('throughput', table);
  }
  if (ONLY.has('firefox')) {
    console.log(
      `Chromium ↔ Firefox: ${DIALS} dials each way, 64 MiB each way best of 2, stock firefox-esr over WebDriver BiDi`,
    );
    const firefox = await FirefoxProcess.launch();
    try {
      const floors = await crossRawDials(browser, firefox, DIALS);
      const dials = await crossDials(browser, firefox, DIALS);
      const bytes = await crossThroughput(browser, firefox);
      const dialRows = floors.flatMap((floor, i) => {
        const mesh = dials[i];
        return [floor, mesh]
          .filter((s) => s !== undefined)
          .map(
            (s) =>
              `| ${s.name} | ${fmt(s.p50)} | ${fmt(s.p95)} | ${(s.p50 / floor.p50).toFixed(2)}× |`,
          );
      });
      const byteRows = bytes.map((r, i) => {
        const base = bytes[i - (i % 2)];
        return `| ${r.name} | ${r.mbPerS.toFixed(1)} MB/s | ${base ? (r.mbPerS / base.mbPerS).toFixed(2) : ''} |`;
      });
      const table = [
        `Chromium ↔ Firefox (\`npm run bench\`, ${DIALS} dials each way; 64 MiB one reliable stream each way, best of 2; ${cpus().length} cores, ${new Date().toISOString().slice(0, 10)}):`,
        '',
        '| dial path | p50 | p95 | p50 vs its floor |',
        '|---|---|---|---|',
        ...dialRows,
        '',
        '| stream | throughput | vs its raw baseline |',
        '|---|---|---|',
        ...byteRows,
      ].join('\n');
      console.log(`\n${table}\n`);
      record('firefox', table);
    } finally {
      await firefox.close();
    }
  }
  if (ONLY.has('relay')) {
    console.log(
      'relay: 64 MiB between two relay-only pages, and turnutils_uclient allocations, gateway vs coturn',
    );
    const [coturn, ours] = await relayBench(browser);
    const rows = [coturn, ours]
      .filter((r) => r !== undefined)
      .map(
        (r) =>
          `| ${r.name} | ${r.mbPerS.toFixed(1)} MB/s | ${r.medianMbPerS.toFixed(1)} MB/s | ${r.cpuS.toFixed(1)} s | ${r.allocationsPerS.toFixed(0)}/s |`,
      );
    const table = [
      `Relay (\`npm run bench\`, 64 MiB relay-only page to page, ${RELAY_ROUNDS} rounds interleaved; relay CPU: the relay process's CPU seconds per run, median; 200 turnutils_uclient clients, ${new Date().toISOString().slice(0, 10)}):`,
      '',
      '| relay | throughput, best | median | relay CPU | allocations |',
      '|---|---|---|---|---|',
      ...rows,
      '',
      coturn && ours
        ? `gateway / coturn: throughput ${(ours.mbPerS / coturn.mbPerS).toFixed(2)} best, ${(ours.medianMbPerS / coturn.medianMbPerS).toFixed(2)} median; ${pairedRatios(ours.rounds, coturn.rounds)} (target ≥ 1.0); CPU ${(ours.cpuS / coturn.cpuS).toFixed(2)}; allocations ${(ours.allocationsPerS / coturn.allocationsPerS).toFixed(2)}.`
        : '',
    ].join('\n');
    console.log(`\n${table}\n`);
    record('relay', table);
  }
  if (ONLY.has('relay-tls')) {
    console.log(
      'relay-tls: 64 MiB between two relay-only pages over TURN/TLS, gateway vs coturn, and vs UDP',
    );
    const [coturnTls, oursTls, oursUdp] = await relayTlsBench();
    const rows = [coturnTls, oursTls, oursUdp]
      .filter((r) => r !== undefined)
      .map(
        (r) =>
          `| ${r.name} | ${r.mbPerS.toFixed(1)} MB/s | ${r.medianMbPerS.toFixed(1)} MB/s | ${r.cpuS.toFixed(1)} s | ${fmt(r.connectMs)} |`,
      );
    const table = [
      `TURN over TLS (\`npm run bench\`, 64 MiB relay-only page to page, ${RELAY_ROUNDS} rounds interleaved; relay CPU per run, median; offer to open channel, best; ${new Date().toISOString().slice(0, 10)}):`,
      '',
      '| relay | throughput, best | median | relay CPU | offer → open |',
      '|---|---|---|---|---|',
      ...rows,
      '',
      coturnTls && oursTls && oursUdp
        ? `gateway TLS / coturn TLS: ${(oursTls.mbPerS / coturnTls.mbPerS).toFixed(2)} best, ${(oursTls.medianMbPerS / coturnTls.medianMbPerS).toFixed(2)} median (target ≥ 1.0); CPU ${(oursTls.cpuS / coturnTls.cpuS).toFixed(2)}; gateway TLS / gateway UDP: ${(oursTls.mbPerS / oursUdp.mbPerS).toFixed(2)}; time to open, TLS / UDP: ${(oursTls.connectMs / oursUdp.connectMs).toFixed(2)}.`
        : '',
    ].join('\n');
    console.log(`\n${table}\n`);
    record('relay-tls', table);
  }
  if (ONLY.has('push')) {
    console.log(
      `push: A dials B, B's app open vs closed and woken by push (local push service), ${PUSH_DIALS} dials each`,
    );
    const { open, toPush, toConnected } = await pushWakeDials(browser, PUSH_DIALS);
    const table = [
      `Push-woken dials (\`npm run bench\`, ${PUSH_DIALS} dials each, ${cpus().length} cores, ${new Date().toISOString().slice(0, 10)}):`,
      '',
      "| dial to B | to B's push event p50 | p95 | to connected p50 | p95 |",
      '|---|---|---|---|---|',
      `| ${open.name} (baseline) | — | — | ${fmt(open.p50)} | ${fmt(open.p95)} |`,
      `| ${toConnected.name} | ${fmt(toPush.p50)} | ${fmt(toPush.p95)} | ${fmt(toConnected.p50)} | ${fmt(toConnected.p95)} |`,
      '',
      `Waking adds ${fmt(toConnected.p50 - open.p50)} at p50, ${fmt(toPush.p50)} of it until the push reaches B's service worker (gateway → local push service → CDP delivery; a real push service adds its own network time), the rest opening the app, connecting it to the gateway and answering. Accepted at once from the notification's handler; a person takes longer.`,
    ].join('\n');
    console.log(`\n${table}\n`);
    record('push', table);
  }
  if (ONLY.has('services')) {
    console.log('services: 64 MiB over TCP through forward → mesh → expose, best of 3; page TTFB');
    const cli = await cliToCli();
    const s = await servicesBench();
    const table = [
      `Services (\`npm run bench\`, 64 MiB, best of 3; TTFB over ${s.ttfb.length ? 30 : 0} requests, ${cpus().length} cores, ${new Date().toISOString().slice(0, 10)}):`,
      '',
      '| path | throughput |',
      '|---|---|',
      `| plain loopback TCP copy | ${s.loopbackMbPerS.toFixed(1)} MB/s |`,
      `| ${cli.name} | ${cli.mbPerS.toFixed(1)} MB/s |`,
      `| TCP through rtcmesh forward → expose | ${s.forwardMbPerS.toFixed(1)} MB/s |`,
      '',
      `forward/expose vs the CLI stream: ${(s.forwardMbPerS / cli.mbPerS).toFixed(2)}; vs loopback: ${(s.forwardMbPerS / s.loopbackMbPerS).toFixed(3)}.`,
      '',
      '| time to first byte of a page | p50 | p95 |',
      '|---|---|---|',
      ...s.ttfb.map((t) => `| ${t.name} | ${fmt(t.p50)} | ${fmt(t.p95)} |`),
      '',
      `Through the mesh / direct, p50: ${((s.ttfb[1]?.p50 ?? 0) / (s.ttfb[0]?.p50 ?? 1)).toFixed(1)}× (a difference of ${fmt((s.ttfb[1]?.p50 ?? 0) - (s.ttfb[0]?.p50 ?? 0))}).`,
    ].join('\n');
    console.log(`\n${table}\n`);
    record('services', table);
  }
} finally {
  await browser.close();
}

if (overBudget) console.error('npm run bench: FAILED, the app is over its size budget');
// Servers the baselines started (PeerServer, the relay sockets) may hold the event loop.
process.exit(overBudget ? 1 : 0);
