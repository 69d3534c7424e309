// What the test suite needs beyond npm's packages, in one place: `npm test` (scripts/test.mjs)
// checks it first, and as root installs what is missing; `.ci/run` calls it too, before
// `npm ci`, for the build tools. Plain node:* modules only, so that it runs before `npm ci`.
//
//   node scripts/prerequisites.mjs [--install] [--build]
//     checks the test prerequisites (with --build also the build tools `npm ci` may need),
//     installs the missing ones with apt-get when run as root with --install, otherwise
//     names each missing one and the command that installs it, and exits 1.
import { spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Each entry: a command whose presence says the prerequisite is there, the Debian package that
 * provides it, and why the suite needs it. `stage: 'build'` ones are for `npm install`
 * (native/batch-udp on Linux, and better-sqlite3 where no prebuilt binary fits); the rest for
 * `npm test`. To add one (firefox-esr, pebble, sshd for the tests that will use them), add a
 * line here.
 */
export const PREREQUISITES = [
  {
    command: 'chromium',
    debianPackage: 'chromium',
    why: 'the browser of the end-to-end tests (or Playwright’s own Chromium, if installed)',
    found: () => chromiumFound(),
  },
  {
    command: 'firefox-esr',
    debianPackage: 'firefox-esr',
    why: 'the Firefox lane of the end-to-end tests (e2e/firefox.spec.ts), driven over WebDriver BiDi',
  },
  {
    command: 'redis-server',
    debianPackage: 'redis-server',
    why: 'the Redis registry and cluster tests start their own',
  },
  {
    command: 'turnutils_uclient',
    debianPackage: 'coturn',
    why: 'coturn’s STUN/TURN clients are the independent ones of the conformance tests',
  },
  {
    command: 'pebble',
    debianPackage: 'pebble',
    why: 'the ACME tests’ certificate authority (pebble, and pebble-challtestsrv as its DNS)',
  },
  {
    command: 'nft',
    debianPackage: 'nftables',
    why: 'the NAT tests’ routers, and the conformance tests’ packet counters',
  },
  {
    command: 'ip',
    debianPackage: 'iproute2',
    why: 'network namespaces: the loopback-only one every browser runs in, NAT topologies',
  },
  {
    command: 'unshare',
    debianPackage: 'util-linux',
    why: 'makes the loopback-only network namespace',
  },
  {
    command: 'sshd',
    debianPackage: 'openssh-server',
    why: 'the SSH-over-the-mesh test runs a real sshd and ssh (rtcmesh expose, ProxyCommand)',
  },
  {
    command: 'python3',
    debianPackage: 'python3',
    why: 'node-gyp, to compile native/batch-udp, and better-sqlite3 where no prebuilt binary fits',
    stage: 'build',
  },
  {
    command: 'make',
    debianPackage: 'make',
    why: 'node-gyp, to compile better-sqlite3 and native/batch-udp (the TURN server’s batched UDP I/O)',
    stage: 'build',
  },
  {
    command: 'g++',
    debianPackage: 'g++',
    why: 'node-gyp, to compile better-sqlite3 (C++) and native/batch-udp (C; g++ brings gcc)',
    stage: 'build',
  },
];

// Non-root users often lack /usr/sbin on their PATH, where Debian puts nft and ip.
const SEARCH = [
  ...(process.env.PATH ?? '').split(delimiter),
  '/usr/local/sbin',
  '/usr/local/bin',
  '/usr/sbin',
  '/usr/bin',
  '/sbin',
  '/bin',
].filter(Boolean);

function executable(path) {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

export function which(command) {
  for (const dir of SEARCH) if (executable(join(dir, command))) return join(dir, command);
  return undefined;
}

/** As e2e/support/browser.ts picks it: RTCMESH_CHROMIUM, Playwright's build, Debian's. */
function chromiumFound() {
  if (process.env.RTCMESH_CHROMIUM && executable(process.env.RTCMESH_CHROMIUM)) return true;
  if (which('chromium') || which('chromium-browser')) return true;
  const cache = process.env.PLAYWRIGHT_BROWSERS_PATH || join(homedir(), '.cache', 'ms-playwright');
  try {
    return readdirSync(cache).some(
      (d) =>
        d.startsWith('chromium-') &&
        ['chrome-linux/chrome', 'chrome-linux64/chrome'].some((exe) =>
          executable(join(cache, d, exe)),
        ),
    );
  } catch {
    return false;
  }
}

const isPresent = (p) => (p.found ? p.found() : which(p.command) !== undefined);

/** The prerequisites of these stages that are missing. */
export function missing(stages = ['test']) {
  return PREREQUISITES.filter((p) => stages.includes(p.stage ?? 'test') && !isPresent(p));
}

const packagesOf = (list) => [...new Set(list.map((p) => p.debianPackage))];

function canInstall() {
  return process.getuid?.() === 0 && which('apt-get') !== undefined;
}

// The services Debian's packages start, the user each runs as, and their process name.
const SERVICES = [
  { debianPackage: 'coturn', service: 'coturn', user: 'turnserver', process: 'turnserver' },
  {
    debianPackage: 'redis-server',
    service: 'redis-server',
    user: 'redis',
    process: 'redis-server',
  },
];

/** Process IDs of `name` running as `user` (none if there is no such user). */
function pids(name, user) {
  const run = spawnSync('pgrep', ['-x', '-u', user, name], { encoding: 'utf8' });
  return run.status === 0 ? run.stdout.split(/\s+/).filter(Boolean) : [];
}

/** Installs packages with apt-get, non-interactively, starting none of their services. */
function install(packages) {
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const services = SERVICES.filter((s) => packages.includes(s.debianPackage));
  const before = new Set(services.flatMap((s) => pids(s.process, s.user)));
  // coturn and redis-server would start packaged services: tell invoke-rc.d not to start any.
  const policy = '/usr/sbin/policy-rc.d';
  const madePolicy = !existsSync(policy);
  if (madePolicy) writeFileSync(policy, '#!/bin/sh\nexit 101\n', { mode: 0o755 });
  try {
    for (const args of [
      ['update', '-q'],
      ['install', '-y', '-q', ...packages],
    ]) {
      console.log(`[prerequisites] apt-get ${args.join(' ')}`);
      const run = spawnSync('apt-get', args, { stdio: 'inherit', env });
      if (run.status !== 0) throw new Error(`apt-get ${args[0]} failed (${run.status})`);
    }
  } finally {
    if (madePolicy) rmSync(policy, { force: true });
  }
  // Should a packaged service have started anyway (an init that ignores policy-rc.d), stop it
  // through its init system: the tests start their own, on ports they pick. Only one that
  // this install started, running as the package's own user, never a test's.
  for (const s of services) {
    if (!pids(s.process, s.user).some((pid) => !before.has(pid))) continue;
    console.log(`[prerequisites] stopping the ${s.service} service the package started`);
    if (spawnSync('systemctl', ['stop', s.service]).status !== 0)
      spawnSync('service', [s.service, 'stop'], { stdio: 'inherit' });
  }
}

/**
 * Checks, and installs what is missing when allowed (root with apt-get). Returns true when
 * everything is there; otherwise prints each missing one, why, and the command, and returns
 * false. Takes well under a second when nothing needs installing.
 */
export function ensurePrerequisites({ stages = ['test'], allowInstall = true } = {}) {
  let absent = missing(stages);
  if (absent.length === 0) return true;
  const packages = packagesOf(absent);
  if (allowInstall && canInstall()) {
    console.log(
      `[prerequisites] installing ${packages.join(' ')} (${absent.map((p) => p.command).join(', ')} missing)`,
    );
    try {
      install(packages);
    } catch (err) {
      console.error(`[prerequisites] ${err.message}`);
    }
    absent = missing(stages);
    if (absent.length === 0) return true;
  }
  console.error('[prerequisites] missing:');
  for (const p of absent) {
    console.error(`  ${p.command.padEnd(18)} (Debian package ${p.debianPackage}): ${p.why}`);
  }
  const sudo = process.getuid?.() === 0 ? '' : 'sudo ';
  console.error(`Install them with:\n  ${sudo}apt-get install -y ${packagesOf(absent).join(' ')}`);
  if (process.getuid?.() !== 0) console.error('(or run this command as root: it installs them)');
  return false;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const args = process.argv.slice(2);
  const stages = args.includes('--build') ? ['build', 'test'] : ['test'];
  const ok = ensurePrerequisites({ stages, allowInstall: args.includes('--install') });
  if (ok)
    console.log(
      `[prerequisites] all there: ${PREREQUISITES.filter((p) => stages.includes(p.stage ?? 'test'))
        .map((p) => p.command)
        .join(', ')}`,
    );
  process.exit(ok ? 0 : 1);
}
