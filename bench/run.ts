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

const DIALS = Number(process.env.BENCH_DIALS ?? 30);
const fmt = (ms: number) => `${ms.toFixed(1)} ms`;

const browser = await launch();
try {
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
  const readme = repoPath('README.md');
  const text = readFileSync(readme, 'utf8');
  const begin = '<!-- bench:dial -->';
  const end = '<!-- /bench:dial -->';
  if (text.includes(begin) && text.includes(end)) {
    writeFileSync(
      readme,
      text.replace(new RegExp(`${begin}[\\s\\S]*${end}`), `${begin}\n${table}\n${end}`),
    );
    console.log('recorded in README.md');
  }
} finally {
  await browser.close();
}
