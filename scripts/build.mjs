// Builds rtcmesh. Usage: node scripts/build.mjs node|pwa|all|if-needed
//   node       the gateway and CLI bundle: dist/node/rtcmesh.mjs
//   pwa        the PWA with Vite into dist/pwa, then the service worker with its precache list
//   all        both
//   if-needed  whichever is older than its sources (what `npm start` runs)
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
process.chdir(root);
const { version } = JSON.parse(readFileSync('package.json', 'utf8'));
const define = { RTCMESH_VERSION: JSON.stringify(version) };

const NODE_OUT = 'dist/node/rtcmesh.mjs';
const PWA_OUT = 'dist/pwa';
const PWA_STAMP = 'dist/pwa/.built';
const NODE_INPUTS = ['src/node', 'src/core', 'package.json'];
const PWA_INPUTS = [
  'src/client',
  'src/worker',
  'src/browser',
  'src/channel-worker',
  'src/sw',
  'src/core',
  'public',
  'index.html',
  'manifest.webmanifest',
  'vite.config.ts',
  'package.json',
];

function* files(path) {
  if (!existsSync(path)) return;
  if (statSync(path).isDirectory()) {
    for (const entry of readdirSync(path)) yield* files(join(path, entry));
  } else yield path;
}
const newest = (paths) =>
  Math.max(0, ...paths.flatMap((p) => [...files(p)].map((f) => statSync(f).mtimeMs)));
const stale = (out, inputs) => !existsSync(out) || statSync(out).mtimeMs < newest(inputs);

async function buildNode() {
  const esbuild = await import('esbuild');
  const bundle = (entry, outfile) =>
    esbuild.build({
      entryPoints: [entry],
      outfile,
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: 'node20',
      packages: 'external',
      sourcemap: true,
      define,
      logLevel: 'warning',
    });
  // The library entry (import 'rtcmesh', no side effects on import) next to the CLI.
  await bundle('src/node/index.ts', 'dist/node/index.mjs');
  await bundle('src/node/cli.ts', NODE_OUT);
  console.log(`built ${NODE_OUT}`);
}

async function buildPwa() {
  const vite = await import('vite');
  await vite.build({ logLevel: 'warn', define });
  const esbuild = await import('esbuild');
  const swFile = join(PWA_OUT, 'sw.js');
  await esbuild.build({
    entryPoints: ['src/sw/sw.ts'],
    outfile: swFile,
    bundle: true,
    format: 'iife',
    target: 'es2022',
    minify: true,
    define: { ...define, 'process.env.NODE_ENV': '"production"' },
    logLevel: 'warning',
  });
  // The precache list: every file of the shell. Hashed assets need no revision; the rest get
  // a content hash, so a deploy that changes them makes a new service worker.
  const entries = [...files(PWA_OUT)]
    .map((f) => relative(PWA_OUT, f).split('\\').join('/'))
    .filter((f) => !f.endsWith('.map') && f !== 'sw.js' && !f.startsWith('.'))
    .sort()
    .map((url) => ({
      url: `/${url}`,
      revision: url.startsWith('assets/')
        ? null
        : createHash('sha256')
            .update(readFileSync(join(PWA_OUT, url)))
            .digest('hex')
            .slice(0, 16),
    }));
  const sw = readFileSync(swFile, 'utf8');
  if (!sw.includes('self.__WB_MANIFEST'))
    throw new Error('src/sw/sw.ts must use self.__WB_MANIFEST');
  writeFileSync(swFile, sw.replace('self.__WB_MANIFEST', JSON.stringify(entries)));
  writeFileSync(PWA_STAMP, `${new Date().toISOString()}\n`);
  console.log(`built ${PWA_OUT} (${entries.length} files precached)`);
}

const what = process.argv[2] ?? 'all';
switch (what) {
  case 'node':
    await buildNode();
    break;
  case 'pwa':
    await buildPwa();
    break;
  case 'all':
    await buildNode();
    await buildPwa();
    break;
  case 'if-needed':
    if (stale(NODE_OUT, NODE_INPUTS)) await buildNode();
    if (stale(PWA_STAMP, PWA_INPUTS)) await buildPwa();
    break;
  default:
    console.error(`usage: node scripts/build.mjs node|pwa|all|if-needed (not "${what}")`);
    process.exit(2);
}
