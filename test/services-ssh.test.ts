/**
 * SSH without a port: a real sshd on loopback in a network namespace this test makes, served
 * by `rtcmesh expose ssh 127.0.0.1:PORT`, reached by a real ssh whose ProxyCommand is
 * `rtcmesh dial %h ssh`, by node ID and by mesh IPv6.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type GatewayProcess, RTCMESH_BIN, startGateway } from '../e2e/support/gateway-process.ts';
import { captureOutput } from '../e2e/support/process-output.ts';

const NS = `rmsvssh${process.pid % 100000}`;
const SSHD_PORT = 2222;
const dir = mkdtempSync(join(tmpdir(), 'rtcmesh-sv-ssh-'));
const inNs = (...cmd: string[]) => ['ip', ['netns', 'exec', NS, ...cmd]] as const;
const children: ChildProcess[] = [];
let gateway: GatewayProcess;
let exposeErr = '';
let deviceId = '';
let deviceIp6 = '';

function run(cmd: readonly [string, readonly string[]], timeoutMs = 120_000) {
  return new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
    const child = spawn(cmd[0], cmd[1], { stdio: ['ignore', 'pipe', 'pipe'] });
    const output = captureOutput(child);
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    void output.exited.then((code) => {
      clearTimeout(timer);
      resolve({ code, out: output.out().toString(), err: output.err() });
    });
  });
}

beforeAll(async () => {
  execFileSync('ip', ['netns', 'add', NS]);
  execFileSync('ip', ['netns', 'exec', NS, 'ip', 'link', 'set', 'lo', 'up']);
  // Host key, the user's key, and an sshd that trusts only it.
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'host_key')]);
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'user_key')]);
  execFileSync('cp', [join(dir, 'user_key.pub'), join(dir, 'authorized_keys')]);
  chmodSync(join(dir, 'authorized_keys'), 0o600);
  mkdirSync('/run/sshd', { recursive: true }); // sshd's privilege separation directory
  writeFileSync(
    join(dir, 'sshd_config'),
    [
      `Port ${SSHD_PORT}`,
      'ListenAddress 127.0.0.1',
      `HostKey ${join(dir, 'host_key')}`,
      `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
      `PidFile ${join(dir, 'sshd.pid')}`,
      'StrictModes no',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'UsePAM no',
      'PermitRootLogin prohibit-password',
      '',
    ].join('\n'),
  );
  const sshd = spawn(...inNs('/usr/sbin/sshd', '-D', '-e', '-f', join(dir, 'sshd_config')), {
    stdio: 'ignore',
  });
  children.push(sshd);
  gateway = await startGateway({ netns: NS });
  const expose = spawn(
    ...inNs(
      process.execPath,
      RTCMESH_BIN,
      'expose',
      'ssh',
      `127.0.0.1:${SSHD_PORT}`,
      '--gateway',
      gateway.url,
      '--data',
      join(dir, 'device'),
    ),
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  children.push(expose);
  expose.stderr?.on('data', (d: Buffer) => {
    exposeErr += d.toString();
  });
  for (let i = 0; i < 600 && !exposeErr.includes('exposing'); i++)
    await new Promise((r) => setTimeout(r, 100));
  const m = /node (\S+) \((\S+)\)/.exec(exposeErr);
  if (!m || !exposeErr.includes('exposing')) throw new Error(`expose did not start: ${exposeErr}`);
  [, deviceId = '', deviceIp6 = ''] = m;
}, 180_000);

afterAll(async () => {
  for (const c of children) c.kill('SIGTERM');
  await gateway?.stop();
  try {
    execFileSync('ip', ['netns', 'del', NS]);
  } catch {
    // already gone
  }
});

function ssh(host: string, command: string) {
  const proxy = `${process.execPath} ${RTCMESH_BIN} dial %h ssh --gateway ${gateway.url} --data ${join(dir, 'laptop')}`;
  return run(
    inNs(
      'ssh',
      '-i',
      join(dir, 'user_key'),
      '-o',
      'StrictHostKeyChecking=no',
      '-o',
      'UserKnownHostsFile=/dev/null',
      '-o',
      'BatchMode=yes',
      '-o',
      `ProxyCommand=${proxy}`,
      `root@${host}`,
      command,
    ),
  );
}

describe('ssh through rtcmesh expose + ProxyCommand', { timeout: 240_000 }, () => {
  it('runs a command on the device by node ID and returns its output', async () => {
    const result = await ssh(
      deviceId,
      'echo "hello from $(cat /proc/sys/kernel/hostname)"; echo $((6*7))',
    );
    expect(result.err).not.toMatch(/Connection closed|kex_exchange/);
    expect(result.code).toBe(0);
    expect(result.out).toMatch(/^hello from .+\n42\n$/);
  });

  it('and by mesh IPv6 (a command reading 3 MB, its checksum intact)', async () => {
    const result = await ssh(deviceIp6, 'head -c 3000000 /dev/zero | tr "\\0" x | sha256sum');
    expect(result.code).toBe(0);
    const expected = execFileSync('sh', [
      '-c',
      'head -c 3000000 /dev/zero | tr "\\0" x | sha256sum',
    ]).toString();
    expect(result.out).toBe(expected);
  });
});
