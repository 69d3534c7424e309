// `npm run bench:capacity`: bundles bench/capacity/ and runs it in a loopback-only network
// namespace. Arguments (--quick) pass through.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = fileURLToPath(new URL('..', import.meta.url));
await build({
  entryPoints: [`${root}bench/capacity/run.ts`, `${root}bench/capacity/worker.ts`],
  outdir: `${root}dist/bench/capacity`,
  outExtension: { '.js': '.mjs' },
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  packages: 'external',
  logLevel: 'warning',
});
const run = spawnSync(
  process.execPath,
  [
    `${root}scripts/isolated.mjs`,
    process.execPath,
    `${root}dist/bench/capacity/run.mjs`,
    ...process.argv.slice(2),
  ],
  { stdio: 'inherit' },
);
process.exit(run.status ?? 1);
