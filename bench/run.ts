/**
 * `npm run bench`: prints figures, each next to a baseline measured in the same run, and
 * records them in the README's performance section. Benchmarks are not tests: nothing here
 * passes or fails on a number.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { repoPath } from '../e2e/support/paths.ts';
import { launch } from './browser.ts';
import { peerjsDials, rawDials, rtcmeshDials } from './dial-latency.ts';
import { pushWakeDials } from './push-wake.ts';
import { relayBench } from './relay.ts';
import { relayTlsBench } from './relay-tls.ts';
import { cliToCli, pageToPage } from './throughput.ts';

const DIALS = Number(process.env.BENCH_DIALS ?? 30);
/** Run only some sections: BENCH_ONLY=dial,throughput */
const ONLY = new Set((process.env.BENCH_ONLY ?? 'dial,throughput,relay,relay-tls,push').split(','));
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
    const floor = await rawDials(browser, DIALS);
    const rtcmesh = await rtcmeshDials(browser, DIALS);
    const peerjs = await peerjsDials(browser, DIALS);
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
      `rtcmesh p50 is ${(rtcmesh.p50 / floor.p50).toFixed(2)}× the floor (target ≤ 1.5×) and ${(rtcmesh.p50 / peerjs.p50).toFixed(2)}× PeerJS (target < 1).`,
    ].join('\n');
    console.log(`\n${table}\n`);
    record('dial', table);
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
        ? `rtcmesh stream / raw RTCDataChannel between the same pages: ${(mesh.mbPerS / raw.mbPerS).toFixed(2)} (target ≥ 0.9).`
        : '',
      mesh && otherTab
        ? `Tab that is not the RTC host / the host tab itself, same node and run: ${(otherTab.mbPerS / mesh.mbPerS).toFixed(2)}.`
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
        ? `gateway / coturn: throughput ${(ours.mbPerS / coturn.mbPerS).toFixed(2)} (target ≥ 0.9), allocations ${(ours.allocationsPerS / coturn.allocationsPerS).toFixed(2)}.`
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
      .map((r) => `| ${r.name} | ${r.mbPerS.toFixed(1)} MB/s | ${fmt(r.connectMs)} |`);
    const table = [
      `TURN over TLS (\`npm run bench\`, 64 MiB relay-only page to page, best of 2; offer to open channel, best of 2; ${new Date().toISOString().slice(0, 10)}):`,
      '',
      '| relay | relayed throughput | offer → open |',
      '|---|---|---|',
      ...rows,
      '',
      coturnTls && oursTls && oursUdp
        ? `gateway TLS / coturn TLS: ${(oursTls.mbPerS / coturnTls.mbPerS).toFixed(2)} (target ≥ 1.0); gateway TLS / gateway UDP: ${(oursTls.mbPerS / oursUdp.mbPerS).toFixed(2)}; time to open, TLS / UDP: ${(oursTls.connectMs / oursUdp.connectMs).toFixed(2)}.`
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
} finally {
  await browser.close();
}

// Servers the baselines started (PeerServer, the relay sockets) may hold the event loop.
process.exit(0);
