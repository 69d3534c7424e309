// `npm run bench` and `npm run bench:capacity`: bundles bench/ (or bench/capacity/) and runs
// it in a loopback-only network namespace.
//
//   node scripts/bench.mjs [capacity] [args…]     (args, such as --quick, pass through)
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = fileURLToPath(new URL('..', import.meta.url));
const capacity = process.argv[2] === 'capacity';
const dir = capacity ? 'bench/capacity' : 'bench';
// The capacity run starts worker processes from its own bundle.
const entries = capacity ? ['run', 'worker'] : ['run'];
await build({
  entryPoints: entries.map((name) => `${root}${dir}/${name}.ts`),
  outdir: `${root}dist/${dir}`,
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
    `${root}dist/${dir}/run.mjs`,
    ...process.argv.slice(capacity ? 3 : 2),
  ],
  { stdio: 'inherit' },
);
process.exit(run.status ?? 1);
