/**
 * Starts a real gateway process (the built `rtcmesh gateway`) on a free loopback port with
 * its own data directory, and stops it by its process id.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoPath } from './paths.ts';

export const RTCMESH_BIN = repoPath('bin/rtcmesh.mjs');

export interface GatewayProcess {
  url: string;
  id: string;
  udpPort: number;
  /** The built-in STUN/TURN server's UDP port (none when the gateway hands out --turn-url). */
  turnPort?: number;
  dataDir: string;
  process: ChildProcess;
  output(): string;
  /** SIGTERM, then SIGKILL after a grace period; resolves with the exit code. */
  stop(): Promise<number | null>;
}

export interface StartGatewayOptions {
  dataDir?: string;
  args?: string[];
  /** Keep the data directory after stop (for a restart with the same identity). */
  keepData?: boolean;
  /** Fixed addresses (a restart on the same ones); default: free loopback ports. */
  listen?: string;
  udp?: string;
  /** Another entry point than the rtcmesh command (a test wrapper around the gateway). */
  script?: string;
  env?: Record<string, string>;
  /** Run inside this network namespace (a test host the test made). */
  netns?: string;
}

export async function startGateway(options: StartGatewayOptions = {}): Promise<GatewayProcess> {
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), 'rtcmesh-gw-'));
  const args = [
    options.script ?? RTCMESH_BIN,
    'gateway',
    '--listen',
    options.listen ?? '127.0.0.1:0',
    '--udp',
    options.udp ?? '127.0.0.1:0',
    '--data',
    dataDir,
    ...(options.args ?? []),
  ];
  // `ip netns exec` execs node itself, so the child's pid is still the gateway's.
  const [command, argv] = options.netns
    ? ['ip', ['netns', 'exec', options.netns, process.execPath, ...args]]
    : [process.execPath, args];
  const child = spawn(command, argv, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...options.env },
  });
  let output = '';
  child.stdout?.on('data', (d: Buffer) => {
    output += d.toString();
  });
  child.stderr?.on('data', (d: Buffer) => {
    output += d.toString();
  });
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => resolve(code)),
  );
  const started = await new Promise<{
    id: string;
    url: string;
    udpPort: number;
    turnPort?: number;
  }>((resolve, reject) => {
    // Generous: on a loaded 2-core machine a Node process can take many seconds to start.
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`gateway did not start in 60 s:\n${output}`));
    }, 60_000);
    const onData = () => {
      const m = /rtcmesh gateway (\S+) listening on (http[^,\s]+), WebRTC on udp \S+:(\d+)/.exec(
        output,
      );
      if (m?.[1] && m[2] && m[3]) {
        clearTimeout(timer);
        const turn = /, TURN on udp \S+:(\d+)/.exec(output);
        resolve({
          id: m[1],
          url: m[2],
          udpPort: Number(m[3]),
          ...(turn?.[1] ? { turnPort: Number(turn[1]) } : {}),
        });
      }
    };
    child.stdout?.on('data', onData);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`gateway exited with ${code} before it listened:\n${output}`));
    });
  });
  let stopping: Promise<number | null> | undefined;
  return {
    ...started,
    dataDir,
    process: child,
    output: () => output,
    stop() {
      stopping ??= (async () => {
        if (child.exitCode === null && child.signalCode === null) {
          child.kill('SIGTERM');
          const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
          await exited;
          clearTimeout(timer);
        }
        if (!options.keepData && !options.dataDir)
          rmSync(dataDir, { recursive: true, force: true });
        return child.exitCode;
      })();
      return stopping;
    },
  };
}

/**
 * One value of the gateway's /metrics (NaN when absent): `name`, or a series of it spelt as
 * the exposition does, labels in their order (`name{route="/v1/x",status="200"}`).
 */
export async function metric(gateway: GatewayProcess, name: string): Promise<number> {
  const text = await (await fetch(`${gateway.url}/metrics`)).text();
  const literal = name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return Number(new RegExp(`^${literal} (\\S+)$`, 'm').exec(text)?.[1]);
}
