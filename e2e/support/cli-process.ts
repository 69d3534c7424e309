/** Runs the built `rtcmesh` CLI as a terminal node with its own data directory. */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RTCMESH_BIN } from './gateway-process.ts';

/** Runs the CLI; libdatachannel's warnings go to its stderr, which a failure prints. */
export function cli(args: string[], gatewayUrl: string, input?: string) {
  const data = mkdtempSync(join(tmpdir(), 'rtcmesh-cli-'));
  const child = spawn(
    process.execPath,
    [RTCMESH_BIN, ...args, '--gateway', gatewayUrl, '--data', data],
    { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, RTCMESH_RTC_LOG: 'warning' } },
  );
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => {
    out += d.toString();
  });
  child.stderr.on('data', (d: Buffer) => {
    err += d.toString();
  });
  if (input !== undefined) child.stdin.end(input);
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  return {
    child,
    exited,
    out: () => out,
    err: () => err,
    stop: async () => {
      child.kill('SIGTERM');
      await exited;
      rmSync(data, { recursive: true, force: true });
    },
  };
}
