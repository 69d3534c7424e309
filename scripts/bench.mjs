// `npm run bench`, `npm run bench:capacity`, `npm run bench:abuse` and `npm run
// bench:federation`: bundles bench/ (or bench/capacity/, bench/abuse/, bench/federation/) and runs it in a loopback-only network namespace.
//
//   node scripts/bench.mjs [capacity|abuse] [args…]     (args, such as --quick, pass through)
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = fileURLToPath(new URL('..', import.meta.url));
const mode = ['capacity', 'abuse', 'federation'].includes(process.argv[2])
  ? process.argv[2]
  : undefined;
const dir = mode ? `bench/${mode}` : 'bench';
// The capacity and abuse runs start worker (attacker) processes from their own bundle.
const entries = {
  capacity: ['run', 'worker'],
  abuse: ['run', 'attacker'],
  federation: ['run', 'peer'],
}[mode] ?? ['run'];
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
// Its temporary files (gateway data directories, browser profiles) go to one directory, removed
// at the end; Ctrl-C stops the bench, not this cleanup.
const scratch = mkdtempSync(join(tmpdir(), 'rtcmesh-run-'));
process.on('SIGINT', () => {});
process.on('SIGTERM', () => {});
const run = spawnSync(
  process.execPath,
  [
    `${root}scripts/isolated.mjs`,
    process.execPath,
    `${root}dist/${dir}/run.mjs`,
    ...process.argv.slice(mode ? 3 : 2),
  ],
  { stdio: 'inherit', env: { ...process.env, TMPDIR: scratch } },
);
rmSync(scratch, { recursive: true, force: true });
process.exit(run.status ?? 1);
