/**
 * Running coturn's test clients (turnutils_stunclient, turnutils_uclient, turnutils_peer) from
 * tests, and proving they talked to 127.0.0.1 only: as root, each runs under a user ID of its
 * own, and an nftables table of this process's own counts (and drops) that user's packets to
 * anything but 127.0.0.1.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';

export const COTURN_CLIENTS = ['turnutils_stunclient', 'turnutils_uclient', 'turnutils_peer'];

export function missingCoturn(): string[] {
  return COTURN_CLIENTS.filter((c) => spawnSync('sh', ['-c', `command -v ${c}`]).status !== 0);
}

export interface LoopbackGuard {
  /** The command and arguments to spawn instead, so that the guard sees its packets. */
  wrap(command: string, args: string[]): [string, string[]];
  /** Packets the guarded programs sent to 127.0.0.1, and to anything else (dropped). */
  counts(): { loopback: number; other: number };
  close(): void;
}

/** The guard, or a reason there is none (not root, no nft or setpriv). */
export function loopbackGuard(): LoopbackGuard | string {
  if (process.getuid?.() !== 0) return 'not root';
  for (const tool of ['nft', 'setpriv'])
    if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) return `no ${tool}`;
  const uid = 60_000 + (process.pid % 5000);
  const table = `rtcmesh_loopback_${process.pid}`;
  const rules = `table inet ${table} {
  chain out {
    type filter hook output priority 0; policy accept;
    meta skuid ${uid} ip daddr 127.0.0.1 counter accept
    meta skuid ${uid} counter drop
  }
}`;
  const made = spawnSync('nft', ['-f', '-'], { input: rules, encoding: 'utf8' });
  if (made.status !== 0) return `nft refused the table: ${made.stderr}`;
  return {
    wrap: (command, args) => [
      'setpriv',
      [`--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', command, ...args],
    ],
    counts() {
      const listed = spawnSync('nft', ['list', 'table', 'inet', table], {
        encoding: 'utf8',
      }).stdout;
      const count = (verdict: string) =>
        Number(new RegExp(`counter packets (\\d+) bytes \\d+ ${verdict}`).exec(listed)?.[1] ?? NaN);
      return { loopback: count('accept'), other: count('drop') };
    },
    close: () => void spawnSync('nft', ['delete', 'table', 'inet', table]),
  };
}

export interface Finished {
  code: number | null;
  output: string;
}

/** Runs a program to its end (or kills it after `timeoutMs`), with its output. */
export function run(
  command: string,
  args: string[],
  guard: LoopbackGuard | undefined,
  timeoutMs = 60_000,
): Promise<Finished> {
  const [cmd, argv] = guard ? guard.wrap(command, args) : [command, args];
  const child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d: Buffer) => {
    output += d.toString();
  });
  child.stderr.on('data', (d: Buffer) => {
    output += d.toString();
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  return new Promise((resolve) =>
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    }),
  );
}

/** Starts a long-running program (turnutils_peer); stop it with `child.kill()`. */
export function start(
  command: string,
  args: string[],
  guard: LoopbackGuard | undefined,
): ChildProcess {
  const [cmd, argv] = guard ? guard.wrap(command, args) : [command, args];
  return spawn(cmd, argv, { stdio: 'ignore' });
}
