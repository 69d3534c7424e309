// `npm test`: everything, on a fresh machine too.
//
//   npm test                          prerequisites, build, then every suite
//   npm test -- unit e2e              only these suites (typecheck lint unit e2e e2e-nat)
//   npm test -- e2e -- e2e/streams.spec.ts --repeat-each 3
//                                     arguments after a second `--` go to the suites' runners
//
// 1. Prerequisites (scripts/prerequisites.mjs, the one list): as root with apt-get, what is
//    missing is installed; otherwise each missing one is named with the command that installs
//    it, and this stops within seconds, before anything runs.
// 2. The build, if its sources changed (scripts/build.mjs if-needed).
// 3. The suites, each run even when an earlier one failed, their output streaming live; the
//    browsers and servers they start run in a loopback-only network namespace
//    (scripts/isolated.mjs). At the end a table of each suite's counts, then one line
//    `N passed, N failed` (CI reads it); the exit status is 1 if anything failed.
// 4. Every suite's temporary files (data directories with node keys, browser profiles) go to
//    one directory for the run (TMPDIR), removed at the end, failed or not.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensurePrerequisites } from './prerequisites.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
process.chdir(root);
const bin = (name) => join(root, 'node_modules', '.bin', name);
const isolated = (command) => [process.execPath, join(root, 'scripts/isolated.mjs'), ...command];

/** What each suite runs; `report` is where its JSON reporter writes, `count` reads it. */
const SUITES = {
  typecheck: {
    what: 'TypeScript, every project',
    command: () => ['npm', 'run', '--silent', 'typecheck'],
  },
  lint: {
    what: 'Biome',
    command: (extra) => [bin('biome'), 'check', ...(extra.length ? extra : ['.'])],
  },
  unit: {
    what: 'Vitest: unit and process tests',
    needs: ['build', 'prerequisites'],
    command: (extra, report) =>
      isolated([
        bin('vitest'),
        'run',
        '--reporter=default',
        '--reporter=json',
        `--outputFile.json=${report}`,
        ...extra,
      ]),
    count: countVitest,
  },
  e2e: {
    what: 'Playwright: end to end, all but @nat',
    needs: ['build', 'prerequisites'],
    command: (extra) => isolated([bin('playwright'), 'test', '--grep-invert', '@nat', ...extra]),
    env: (report) => ({ RTCMESH_REPORT_JSON: report }),
    count: countPlaywright,
  },
  'e2e-nat': {
    what: 'Playwright: the @nat tests, one worker',
    needs: ['build', 'prerequisites'],
    command: (extra) =>
      isolated([bin('playwright'), 'test', '--grep', '@nat', '--workers', '1', ...extra]),
    env: (report) => ({ RTCMESH_REPORT_JSON: report }),
    count: countPlaywright,
  },
};

function countVitest(report) {
  const r = JSON.parse(readFileSync(report, 'utf8'));
  return {
    passed: r.numPassedTests ?? 0,
    failed: r.numFailedTests ?? 0,
    skipped: (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0),
    // A file that failed to load or whose hooks failed counts too, though it ran no test.
    errors: (r.testResults ?? []).filter(
      (f) =>
        f.status === 'failed' && !(f.assertionResults ?? []).some((t) => t.status === 'failed'),
    ).length,
  };
}

function countPlaywright(report) {
  const r = JSON.parse(readFileSync(report, 'utf8'));
  const s = r.stats ?? {};
  return {
    passed: (s.expected ?? 0) + (s.flaky ?? 0),
    failed: s.unexpected ?? 0,
    skipped: s.skipped ?? 0,
    errors: (r.errors ?? []).length,
  };
}

// --- arguments ---
const argv = process.argv.slice(2);
const dashes = argv.indexOf('--');
const names = dashes < 0 ? argv : argv.slice(0, dashes);
const extra = dashes < 0 ? [] : argv.slice(dashes + 1);
for (const name of names) {
  if (!(name in SUITES)) {
    console.error(`unknown suite "${name}"; the suites: ${Object.keys(SUITES).join(' ')}`);
    process.exit(2);
  }
}
// In their usual order, whatever the order asked for.
const selected = Object.keys(SUITES).filter((name) => !names.length || names.includes(name));
const needs = new Set(selected.flatMap((name) => SUITES[name].needs ?? []));

// --- 1. prerequisites ---
if (needs.has('prerequisites') && !ensurePrerequisites({ stages: ['test'] })) {
  console.error('npm test: stopped before running anything; see above.');
  process.exit(1);
}
if (!existsSync(bin('vitest'))) {
  console.error('npm test: node_modules is missing or incomplete: run `npm install` first.');
  process.exit(1);
}

// --- 2 and 3: the build, the suites ---
let interrupted = false;
let current;
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    interrupted = true;
    current?.kill(signal);
  });
}

// The run's scratch: tests make their data directories with `mkdtemp(tmpdir())`, and a test
// that fails or is killed leaves its own behind; here they all go when the run ends.
const scratch = mkdtempSync(join(tmpdir(), 'rtcmesh-run-'));
const reports = mkdtempSync(join(scratch, 'reports-'));

function run(command, env = {}) {
  return new Promise((resolve) => {
    current = spawn(command[0], command.slice(1), {
      stdio: 'inherit',
      env: { ...process.env, TMPDIR: scratch, ...env },
    });
    current.on('error', (err) => {
      console.error(`npm test: cannot run ${command[0]}: ${err.message}`);
      resolve(127);
    });
    current.on('exit', (code, signal) => resolve(code ?? (signal ? 128 : 1)));
  });
}

const banner = (text) => console.log(`\n\x1b[1m=== ${text} ===\x1b[0m`);
const results = [];
try {
  if (needs.has('build')) {
    banner('build (if needed)');
    const started = Date.now();
    const code = await run([process.execPath, 'scripts/build.mjs', 'if-needed']);
    if (code !== 0)
      results.push({ name: 'build', code, passed: 0, failed: 1, skipped: 0, started });
  }
  for (const name of selected) {
    if (interrupted) break;
    const suite = SUITES[name];
    banner(`${name}: ${suite.what}`);
    const report = join(reports, `${name}.json`);
    const started = Date.now();
    const code = await run(suite.command(extra, report), suite.env?.(report));
    const result = { name, code, started, seconds: (Date.now() - started) / 1000 };
    let counts;
    if (suite.count && existsSync(report)) {
      try {
        counts = suite.count(report);
      } catch (err) {
        result.note = `its report could not be read: ${err.message}`;
      }
    }
    if (counts) {
      Object.assign(result, counts);
      // Failed without a failed test (a file that did not load, a global error): one failure.
      if (code !== 0 && result.failed === 0) {
        result.failed = Math.max(1, counts.errors);
        result.note = `exit status ${code}, ${counts.errors} error(s) outside tests`;
      } else if (code === 0 && counts.failed === 0 && counts.errors > 0) {
        result.note = `${counts.errors} error(s) outside tests`;
      }
    } else {
      // A check without counts (typecheck, lint), or a runner that died before reporting.
      Object.assign(result, { passed: code === 0 ? 1 : 0, failed: code === 0 ? 0 : 1, skipped: 0 });
      if (suite.count) result.note ??= `no report (exit status ${code})`;
    }
    results.push(result);
  }
} finally {
  rmSync(scratch, { recursive: true, force: true });
}

// --- summary ---
const total = { passed: 0, failed: 0, skipped: 0 };
const rows = results.map((r) => {
  total.passed += r.passed;
  total.failed += r.failed;
  total.skipped += r.skipped;
  const ok = r.code === 0 && r.failed === 0;
  return [
    r.name,
    String(r.passed),
    String(r.failed),
    String(r.skipped),
    r.seconds === undefined ? '' : `${Math.round(r.seconds)} s`,
    `${ok ? 'ok' : 'FAILED'}${r.note ? ` (${r.note})` : ''}`,
  ];
});
const header = ['suite', 'passed', 'failed', 'skipped', 'time', 'result'];
const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)));
const line = (cells) =>
  cells
    .map((c, i) => (i === 0 || i === 5 ? c.padEnd(widths[i]) : c.padStart(widths[i])))
    .join('  ')
    .trimEnd();
banner('summary');
console.log(line(header));
for (const row of rows) console.log(line(row));
if (interrupted) console.log('(interrupted: the suites after the last one above did not run)');
console.log(`${total.passed} passed, ${total.failed} failed`);
process.exit(total.failed > 0 || interrupted ? 1 : 0);
