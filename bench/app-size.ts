/**
 * The app's size as a phone downloads it: every HTML, CSS and script file of the built PWA
 * (the window, the node's SharedWorker, the channel worker, the service worker), each
 * compressed with `gzip -9`. The budget is for all of them together. `npm run bench` prints
 * and records it; test/app-size.test.ts fails the suite above the budget.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { gzipSync } from 'node:zlib';
import { repoPath } from '../e2e/support/paths.ts';

/** 100 KB gzip for the whole app (KB = 1,000 bytes, as the issue measured it). */
export const APP_SIZE_BUDGET_BYTES = 100_000;

export interface BundleFile {
  /** Path under dist/pwa, such as `assets/node-worker-XYZ.js`. */
  file: string;
  /** What it is: window, node worker, channel worker, service worker. */
  bundle: string;
  bytes: number;
  gzipBytes: number;
}

export interface AppSize {
  files: BundleFile[];
  totalGzipBytes: number;
  budgetBytes: number;
  overBudget: boolean;
}

const SHIPPED = /\.(js|mjs|css|html)$/;

function bundleOf(file: string): string {
  const name = file.split('/').pop() ?? file;
  if (name === 'sw.js') return 'service worker';
  if (name.startsWith('node-worker-')) return 'node worker';
  if (name.startsWith('channel-worker-')) return 'channel worker';
  if (name.startsWith('index') || name.endsWith('.html')) return 'window';
  return 'shared chunk';
}

function* shipped(dir: string): Generator<string> {
  for (const entry of readdirSync(dir)) {
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) yield* shipped(path);
    else if (SHIPPED.test(entry)) yield path;
  }
}

/** Measures the built app in `dir` (dist/pwa by default; build it first). */
export function measureAppSize(dir = repoPath('dist/pwa')): AppSize {
  const files = [...shipped(dir)]
    .map((path) => {
      const content = readFileSync(path);
      const file = relative(dir, path).split('\\').join('/');
      return {
        file,
        bundle: bundleOf(file),
        bytes: content.length,
        gzipBytes: gzipSync(content, { level: 9 }).length,
      };
    })
    .sort((a, b) => b.gzipBytes - a.gzipBytes);
  if (!files.some((f) => f.file === 'sw.js') || !files.some((f) => f.file === 'index.html'))
    throw new Error(`${dir} holds no built app: run \`npm run build\` first`);
  const totalGzipBytes = files.reduce((sum, f) => sum + f.gzipBytes, 0);
  return {
    files,
    totalGzipBytes,
    budgetBytes: APP_SIZE_BUDGET_BYTES,
    overBudget: totalGzipBytes > APP_SIZE_BUDGET_BYTES,
  };
}

const kb = (bytes: number) => `${(bytes / 1000).toFixed(1)} KB`;

/** A Markdown table: each file, its bundle, its gzip size, and the total against the budget. */
export function appSizeTable(size: AppSize, date = new Date()): string {
  return [
    `App size (\`npm run bench\`, \`gzip -9\` per file of dist/pwa, ${date.toISOString().slice(0, 10)}):`,
    '',
    '| bundle | file | raw | gzip |',
    '|---|---|---|---|',
    ...size.files.map(
      (f) =>
        `| ${f.bundle} | ${f.file.replace(/-[A-Za-z0-9_-]{8}\./, '.')} | ${kb(f.bytes)} | ${kb(f.gzipBytes)} |`,
    ),
    `| **total** | | | **${kb(size.totalGzipBytes)}** |`,
    '',
    `Total ${kb(size.totalGzipBytes)} gzip of a ${kb(size.budgetBytes)} budget: ${size.overBudget ? 'OVER BUDGET' : 'within budget'}.`,
  ].join('\n');
}
