/** The CLI node as a user runs it: `rtcmesh listen` and `rtcmesh dial` over a real gateway. */
import type { ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../e2e/support/cli-process.ts';
import { type GatewayProcess, startGateway } from '../e2e/support/gateway-process.ts';
import { waitFor } from '../e2e/support/wait.ts';

let gateway: GatewayProcess;
const children: ChildProcess[] = [];
beforeAll(async () => {
  gateway = await startGateway();
});
afterAll(async () => {
  for (const c of children) c.kill('SIGTERM');
  await gateway.stop();
});

function rtcmesh(args: string[], input?: Buffer | string) {
  const run = runCli(args, { gateway: gateway.url, ...(input !== undefined ? { input } : {}) });
  children.push(run.child);
  return run;
}

describe('rtcmesh listen / dial', () => {
  it('dial pipes stdin to a listener running a command, and prints what comes back', async () => {
    const listener = rtcmesh(['listen', 'echo', '--exec', 'cat']);
    const id = await waitFor(
      () => /node (\S+) \(/.exec(listener.err())?.[1],
      'the listener to connect',
    );
    const payload = Buffer.from(Array.from({ length: 300_000 }, (_, i) => i % 251));
    const dialer = rtcmesh(['dial', id, 'echo'], payload);
    expect(await dialer.exited).toBe(0);
    expect(dialer.out().equals(payload)).toBe(true);
    expect(dialer.err()).toMatch(/echo: connected to/);
  });

  it('a peer nobody serves, or that is unknown, gives a clear error and exit 1', async () => {
    const dialer = rtcmesh(['dial', 'a'.repeat(52), 'echo'], '');
    expect(await dialer.exited).toBe(1);
    expect(dialer.err()).toMatch(/not-found/);
    const bad = rtcmesh(['dial', 'x', 'echo', '--accept', 'sometimes'], '');
    expect(await bad.exited).toBe(2);
    expect(bad.err()).toMatch(/--accept must be everyone, known or ask/);
  });
});
