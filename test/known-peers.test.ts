/**
 * A node keeps the records of the peers it has linked with (docs/design.md §10): real CLI
 * nodes link through a real gateway; with the gateway gone, `rtcmesh peers` and a restarted
 * `rtcmesh node` still list who they know. A tampered file is refused with a clear message
 * and its lying record ignored.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli } from '../e2e/support/cli-process.ts';
import { startGateway } from '../e2e/support/gateway-process.ts';
import { waitFor } from '../e2e/support/wait.ts';

const scratch = mkdtempSync(join(tmpdir(), 'rtcmesh-known-peers-'));
const children: ChildProcess[] = [];
afterAll(() => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  rmSync(scratch, { recursive: true, force: true });
});

interface Cli {
  child: ChildProcess;
  exited: Promise<number | null>;
  out: () => string;
  err: () => string;
}

/** The data directory is in `args`. */
function rtcmesh(args: string[], input?: string): Cli {
  const run = runCli(args, { data: false, ...(input !== undefined ? { input } : {}) });
  children.push(run.child);
  return { ...run, out: () => run.out().toString() };
}

async function peers(dataDir: string): Promise<{ code: number | null; out: string; err: string }> {
  const cli = rtcmesh(['peers', '--data', dataDir]);
  const code = await cli.exited;
  return { code, out: cli.out(), err: cli.err() };
}

/** The same JWS with its payload's name changed and its signature left as it was. */
function renamed(jws: string, name: string): string {
  const [header, payload, signature] = jws.split('.');
  const claims = JSON.parse(Buffer.from(payload ?? '', 'base64url').toString()) as object;
  const forged = Buffer.from(JSON.stringify({ ...claims, name })).toString('base64url');
  return `${header}.${forged}.${signature}`;
}

describe('known peers, kept on disk', () => {
  it('a restarted node lists the peers it linked with, no gateway needed; tampering is refused', async () => {
    const gateway = await startGateway({ args: ['--registry', 'memory'] });
    const alpha = join(scratch, 'alpha');
    const beta = join(scratch, 'beta');
    const listener = rtcmesh([
      'listen',
      'echo',
      '--exec',
      'cat',
      '--name',
      'alpha',
      '--gateway',
      gateway.url,
      '--data',
      alpha,
    ]);
    const [alphaId, alphaIp6] = await waitFor(() => {
      const m = /node (\S+) \((\S+)\) connected to/.exec(listener.err());
      return m ? [m[1] ?? '', m[2] ?? ''] : undefined;
    }, 'the listener');
    const dialer = rtcmesh(
      ['dial', alphaId, 'echo', '--gateway', gateway.url, '--data', beta],
      'hello\n',
    );
    expect(await dialer.exited, dialer.err()).toBe(0);
    expect(dialer.out()).toBe('hello\n');
    const betaId = /node (\S+) \(/.exec(dialer.err())?.[1] ?? '';
    listener.child.kill('SIGTERM');
    await listener.exited;
    await gateway.stop();

    // No gateway anywhere now: each side still knows the other.
    const known = await peers(beta);
    expect(known.code, known.err).toBe(0);
    expect(known.out).toMatch(new RegExp(`^${alphaId}  ${alphaIp6}  linked \\S+  "alpha"$`, 'm'));
    expect((await peers(alpha)).out).toContain(betaId);

    // A node restarted with its gateway down lists them before any gateway answers.
    const restarted = rtcmesh(['node', '--gateway', gateway.url, '--data', beta]);
    await waitFor(
      () => (restarted.err().includes(`known peer ${alphaId}`) ? true : undefined),
      'the restarted node to list its known peers',
    );
    restarted.child.kill('SIGTERM');
    await restarted.exited;

    // Tampered: alpha's record now claims another name, its signature unchanged.
    const file = join(beta, 'known-peers.json');
    const kept = JSON.parse(readFileSync(file, 'utf8')) as {
      peers: { record: string; linkedAt: number }[];
    };
    expect(kept.peers).toHaveLength(1);
    writeFileSync(
      file,
      JSON.stringify({
        peers: kept.peers.map((p) => ({ ...p, record: renamed(p.record, 'mallory') })),
      }),
    );
    const tampered = await peers(beta);
    expect(tampered.code).toBe(0);
    expect(tampered.err).toMatch(/known-peers\.json: refused a peer's record that does not verify/);
    expect(tampered.out).not.toContain(alphaId);
    expect(tampered.out).not.toContain('mallory');
    // The node refuses it too, says so, and carries on.
    const again = rtcmesh(['node', '--gateway', gateway.url, '--data', beta]);
    await waitFor(
      () => (/refused a peer's record/.test(again.err()) ? true : undefined),
      'the node to refuse the record',
    );
    expect(again.err()).not.toContain('known peer');
    again.child.kill('SIGTERM');
    await again.exited;

    // Garbage: refused as a whole, with a clear message.
    writeFileSync(file, '{"peers": "not a list"');
    const garbage = await peers(beta);
    expect(garbage.code).toBe(0);
    expect(garbage.err).toMatch(/known-peers\.json is not a list of peers' records/);
  }, 180_000);
});
