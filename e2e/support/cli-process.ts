/** Runs the built `rtcmesh` CLI as a terminal node with its own data directory. */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RTCMESH_BIN } from './gateway-process.ts';
import { captureOutput } from './process-output.ts';

/** Runs the CLI; libdatachannel's warnings go to its stderr, which a failure prints. */
export function cli(args: string[], gatewayUrl: string, input?: string) {
  const data = mkdtempSync(join(tmpdir(), 'rtcmesh-cli-'));
  const child = spawn(
    process.execPath,
    [RTCMESH_BIN, ...args, '--gateway', gatewayUrl, '--data', data],
    { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, RTCMESH_RTC_LOG: 'warning' } },
  );
  const { out, err, exited } = captureOutput(child);
  if (input !== undefined) child.stdin.end(input);
  return {
    child,
    exited,
    out: () => out().toString(),
    err,
    stop: async () => {
      child.kill('SIGTERM');
      await exited;
      rmSync(data, { recursive: true, force: true });
    },
  };
}
