// `npm run bench`: bundles bench/ and runs it in a loopback-only network namespace.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = fileURLToPath(new URL('..', import.meta.url));
const out = `${root}dist/bench/run.mjs`;
await build({
  entryPoints: [`${root}bench/run.ts`],
  outfile: out,
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  packages: 'external',
  logLevel: 'warning',
});
const run = spawnSync(process.execPath, [`${root}scripts/isolated.mjs`, process.execPath, out], {
  stdio: 'inherit',
});
process.exit(run.status ?? 1);
