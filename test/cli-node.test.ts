/** The CLI node as a user runs it: `rtcmesh listen` and `rtcmesh dial` over a real gateway. */
import type { ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../e2e/support/cli-process.ts';
import { type GatewayProcess, startGateway } from '../e2e/support/gateway-process.ts';
import { freeTcpPort } from '../e2e/support/ports.ts';
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

  it('a PEER that is neither a node ID nor an IPv6 address is refused before any gateway is asked', async () => {
    for (const command of [
      ['dial', 'not-a-peer', 'echo'],
      ['forward', '0', 'not-a-peer', 'echo'],
    ]) {
      const run = rtcmesh(command, '');
      expect(await run.exited).toBe(2);
      expect(run.err()).toMatch(/"not-a-peer" is neither a node ID .* nor a mesh IPv6 address/);
      // It never connected (a connected node logs "node <id> (<ip6>) connected to …").
      expect(run.err()).not.toMatch(/connected to/);
    }
  });

  it('a gateway nobody answers at: why, at once and at the end, in one line each, exit 1', {
    timeout: 90_000,
  }, async () => {
    // A port nothing listens on: the default 20 s of trying, then the reason.
    const nowhere = `http://127.0.0.1:${await freeTcpPort()}`;
    const run = runCli(['dial', 'fd00::1', 'echo'], { gateway: nowhere, input: '' });
    children.push(run.child);
    // The first failure is said while it keeps trying, not only when it gives up.
    await waitFor(
      () => /cannot reach .*ECONNREFUSED.*trying for 20 s/.test(run.err()) || undefined,
      'the first reason',
    );
    expect(await run.exited).toBe(1);
    expect(run.err()).toMatch(
      /could not reach the gateway at http:\/\/127\.0\.0\.1:\d+ in 20 s \(last: cannot reach .*ECONNREFUSED/,
    );
    // A user's error, not a bug: no stack trace.
    expect(run.err()).not.toMatch(/^\s+at /m);
    await run.stop();
  });
});
