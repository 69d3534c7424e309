/** Runs the built `rtcmesh` CLI as a user does, with a data directory of its own. */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RTCMESH_BIN } from './gateway-process.ts';
import { captureOutput, type ProcessOutput } from './process-output.ts';

export interface CliOptions {
  /** Run inside this network namespace (`ip netns exec`), as a device on a test LAN. */
  netns?: string;
  /** Written to stdin, which is then closed. */
  input?: Buffer | string;
  /** The data directory; by default a new one, removed by `stop()`; false: `args` name it. */
  data?: string | false;
  /** Passed as `--gateway` (before `--data`). */
  gateway?: string;
  env?: NodeJS.ProcessEnv;
}

export interface CliRun extends ProcessOutput {
  child: ChildProcess;
  /** Ends the CLI (SIGTERM) if it still runs; resolves with its exit code. */
  stop(): Promise<number | null>;
}

export function runCli(args: string[], options: CliOptions = {}): CliRun {
  const madeData = options.data === undefined;
  const data = options.data ?? mkdtempSync(join(tmpdir(), 'rtcmesh-cli-'));
  const argv = [
    RTCMESH_BIN,
    ...args,
    ...(options.gateway !== undefined ? ['--gateway', options.gateway] : []),
    ...(data !== false ? ['--data', data] : []),
  ];
  const [command, commandArgs] = options.netns
    ? ['ip', ['netns', 'exec', options.netns, process.execPath, ...argv]]
    : [process.execPath, argv];
  const child = spawn(command, commandArgs, {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: options.env ?? process.env,
  });
  const output = captureOutput(child);
  if (options.input !== undefined) child.stdin?.end(options.input);
  return {
    child,
    ...output,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const code = await output.exited;
      if (madeData && data) rmSync(data, { recursive: true, force: true });
      return code;
    },
  };
}

/**
 * The CLI against a gateway, its stdout as text; libdatachannel's warnings go to stderr
 * (RTCMESH_RTC_LOG in the test's environment asks for more).
 */
export function cli(args: string[], gatewayUrl: string, input?: string) {
  const run = runCli(args, {
    gateway: gatewayUrl,
    ...(input !== undefined ? { input } : {}),
    env: { ...process.env, RTCMESH_RTC_LOG: process.env.RTCMESH_RTC_LOG ?? 'warning' },
  });
  return { ...run, out: () => run.out().toString() };
}
