// Builds rtcmesh. Usage: node scripts/build.mjs node|native|pwa|all|if-needed
//   node       the gateway and CLI bundle: dist/node/rtcmesh.mjs, and native
//   native     the TURN server's batched UDP I/O (native/batch-udp, Linux): where it cannot be
//              compiled, a warning, and the TURN server uses Node's dgram
//   pwa        the PWA with Vite into dist/pwa, then the service worker with its precache list
//   all        both
//   if-needed  whichever is older than its sources (what `npm start` runs)
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
process.chdir(root);
const { version } = JSON.parse(readFileSync('package.json', 'utf8'));
const define = { RTCMESH_VERSION: JSON.stringify(version) };

const NODE_OUT = 'dist/node/rtcmesh.mjs';
const PWA_OUT = 'dist/pwa';
const PWA_STAMP = 'dist/pwa/.built';
const NODE_INPUTS = ['src/node', 'src/core', 'package.json'];
const NATIVE_DIR = 'native/batch-udp';
const NATIVE_OUT = 'native/batch-udp/build/Release/batch_udp.node';
const NATIVE_INPUTS = ['native/batch-udp/src', 'native/batch-udp/binding.gyp'];
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

/**
 * node-gyp as npm runs it for install scripts: npm's own copy. Headers come from this Node's
 * installation where it has them (Debian's nodejs, the official tarballs), so nothing is
 * downloaded.
 */
function buildNative() {
  if (process.platform !== 'linux') return;
  const npmDir = process.env.npm_execpath ? dirname(dirname(process.env.npm_execpath)) : undefined;
  const gyp = [
    process.env.npm_config_node_gyp,
    npmDir && join(npmDir, 'node_modules/node-gyp/bin/node-gyp.js'),
    join(
      dirname(process.execPath),
      '../lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js',
    ),
  ].find((path) => path && existsSync(path));
  const prefix = join(dirname(process.execPath), '..');
  const nodedir =
    process.env.npm_config_nodedir ??
    (existsSync(join(prefix, 'include/node/node_api.h')) ? prefix : undefined);
  const args = [gyp, 'rebuild', '--release', ...(nodedir ? [`--nodedir=${nodedir}`] : [])];
  const result = gyp
    ? spawnSync(process.execPath, args, { cwd: NATIVE_DIR, encoding: 'utf8' })
    : undefined;
  if (result?.status === 0) {
    console.log(`built ${NATIVE_OUT}`);
    return;
  }
  const why = !gyp
    ? 'node-gyp (part of npm) was not found'
    : (result?.stderr || result?.error?.message || '').trim().split('\n').slice(-5).join('\n');
  console.warn(
    `warning: ${NATIVE_OUT} could not be built, so the TURN server will use Node's dgram ` +
      `(nearly twice the CPU per relayed datagram). It needs make and a C compiler ` +
      `(sudo apt-get install -y python3 make gcc).\n${why}`,
  );
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
    buildNative();
    break;
  case 'native':
    buildNative();
    break;
  case 'pwa':
    await buildPwa();
    break;
  case 'all':
    await buildNode();
    buildNative();
    await buildPwa();
    break;
  case 'if-needed':
    if (stale(NODE_OUT, NODE_INPUTS)) await buildNode();
    if (stale(NATIVE_OUT, NATIVE_INPUTS)) buildNative();
    if (stale(PWA_STAMP, PWA_INPUTS)) await buildPwa();
    break;
  default:
    console.error(`usage: node scripts/build.mjs node|native|pwa|all|if-needed (not "${what}")`);
    process.exit(2);
}
