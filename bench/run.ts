/**
 * `npm run bench`: prints figures, each next to a baseline measured in the same run, and
 * records them in the README's performance section. Benchmarks are not tests: nothing here
 * passes or fails on a number.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { repoPath } from '../e2e/support/paths.ts';
import { launch } from './browser.ts';
import { interleavedDials, peerjsDialer, rawDialer, rtcmeshDialer } from './dial-latency.ts';
import { pushWakeDials } from './push-wake.ts';
import { relayBench } from './relay.ts';
import { nodeReliability, pageReliability } from './reliability.ts';
import { cliToCli, pageToPage } from './throughput.ts';

const DIALS = Number(process.env.BENCH_DIALS ?? 30);
/** Run only some sections: BENCH_ONLY=dial,throughput */
const ONLY = new Set(
  (process.env.BENCH_ONLY ?? 'dial,reliability,throughput,relay,push').split(','),
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
  if (ONLY.has('relay')) {
    console.log(
      'relay: 64 MiB between two relay-only pages, and turnutils_uclient allocations, gateway vs coturn',
    );
    const [coturn, ours] = await relayBench(browser);
    const rows = [coturn, ours]
      .filter((r) => r !== undefined)
      .map(
        (r) => `| ${r.name} | ${r.mbPerS.toFixed(1)} MB/s | ${r.allocationsPerS.toFixed(0)}/s |`,
      );
    const table = [
      `Relay (\`npm run bench\`, 64 MiB relay-only page to page, best of 2; 200 turnutils_uclient clients, ${new Date().toISOString().slice(0, 10)}):`,
      '',
      '| relay | relayed throughput | allocations |',
      '|---|---|---|',
      ...rows,
      '',
      coturn && ours
        ? `gateway / coturn: throughput ${(ours.mbPerS / coturn.mbPerS).toFixed(2)} (target ≥ 1.0), allocations ${(ours.allocationsPerS / coturn.allocationsPerS).toFixed(2)}.`
        : '',
    ].join('\n');
    console.log(`\n${table}\n`);
    record('relay', table);
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
} finally {
  await browser.close();
}

// Servers the baselines started (PeerServer, the relay sockets) may hold the event loop.
process.exit(0);
