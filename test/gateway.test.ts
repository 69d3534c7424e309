/** The built `rtcmesh` command, run as a real process: gateway endpoints, `id`, bad input, shutdown. */
import { execFile } from 'node:child_process';
import { createPublicKey } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type GatewayProcess, RTCMESH_BIN, startGateway } from '../e2e/support/gateway-process.ts';
import { expectedIdentity } from '../e2e/support/independent-identity.ts';

const run = promisify(execFile);
const rtcmesh = (...args: string[]) =>
  run(process.execPath, [RTCMESH_BIN, ...args]).then(
    (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({
      code: e.code,
      stdout: e.stdout,
      stderr: e.stderr,
    }),
  );

const tmp = () => mkdtempSync(join(tmpdir(), 'rtcmesh-test-'));

describe('rtcmesh id', () => {
  it('makes a node key with mode 0600 once, and prints the ID its public key derives', async () => {
    const dir = join(tmp(), 'data');
    const first = await rtcmesh('id', '--data', dir);
    expect(first.code).toBe(0);
    expect(first.stderr).toMatch(/made a new node key/);
    const keyFile = join(dir, 'node-key.pem');
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    const raw = createPublicKey(readFileSync(keyFile))
      .export({ format: 'der', type: 'spki' })
      .subarray(-65);
    const expected = expectedIdentity(raw);
    expect(first.stdout).toBe(`id   ${expected.id}\nip6  ${expected.ip6}\n`);
    const second = await rtcmesh('id', '--data', dir);
    expect(second.stdout).toBe(first.stdout);
    expect(second.stderr).toBe('');
  });

  it('refuses a key file that is not a key, and unknown flags, with a clear error', async () => {
    const dir = tmp();
    const keyFile = join(dir, 'node-key.pem');
    await import('node:fs/promises').then((fs) =>
      fs.writeFile(keyFile, 'not a key', { mode: 0o600 }),
    );
    const bad = await rtcmesh('id', '--data', dir);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/node-key\.pem is not a PEM private key/);
    expect(readFileSync(keyFile, 'utf8')).toBe('not a key'); // nothing overwritten
    const flag = await rtcmesh('id', '--nope');
    expect(flag.code).toBe(2);
    expect(flag.stderr).toMatch(/Unknown option '--nope'/);
    const cmd = await rtcmesh('frobnicate');
    expect(cmd.code).toBe(2);
    expect(cmd.stderr).toMatch(/unknown command "frobnicate"/);
  });
});

describe('rtcmesh gateway', () => {
  let gateway: GatewayProcess;
  beforeAll(async () => {
    gateway = await startGateway();
  });
  afterAll(async () => {
    await gateway.stop();
  });

  it('answers /v1/info with its own identity and version', async () => {
    const res = await fetch(`${gateway.url}/v1/info`);
    expect(res.status).toBe(200);
    const info = (await res.json()) as { id: string; ip6: string; version: string };
    const pkg = JSON.parse(readFileSync('package.json', 'utf8')) as { version: string };
    expect(info).toEqual({
      id: gateway.id,
      ip6: expect.stringMatching(/^fd/),
      version: pkg.version,
      // The applicationServerKey nodes subscribe to push with: a raw P-256 point, base64url.
      vapidPublicKey: expect.stringMatching(/^B[A-Za-z0-9_-]{86}$/),
    });
    const id = await rtcmesh('id', '--data', gateway.dataDir);
    expect(id.stdout).toContain(info.id);
    expect(id.stdout).toContain(info.ip6);
  });

  it('answers /healthz and /metrics in Prometheus text', async () => {
    expect(await (await fetch(`${gateway.url}/healthz`)).text()).toBe('ok\n');
    const res = await fetch(`${gateway.url}/metrics`);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    expect(text).toMatch(/^# TYPE rtcmesh_build_info gauge$/m);
    expect(text).toMatch(/^rtcmesh_http_requests_total\{route="\/healthz",status="200"\} 1$/m);
    expect(text).toMatch(/^rtcmesh_sessions 0$/m);
  });

  it('serves the PWA shell with cache headers that let updates through', async () => {
    const index = await fetch(`${gateway.url}/`);
    expect(index.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(index.headers.get('cache-control')).toBe('no-cache');
    const html = await index.text();
    expect(html).toContain('<title>rtcmesh</title>');
    const sw = await fetch(`${gateway.url}/sw.js`);
    expect(sw.headers.get('cache-control')).toBe('no-cache');
    const asset = /src="(\/assets\/[^"]+\.js)"/.exec(html)?.[1];
    expect(asset).toBeDefined();
    const js = await fetch(`${gateway.url}${asset}`);
    expect(js.headers.get('cache-control')).toContain('immutable');
    const route = await fetch(`${gateway.url}/some/app/route`, {
      headers: { accept: 'text/html' },
    });
    expect(await route.text()).toBe(html);
  });

  it('refuses what it does not serve with JSON errors, and keeps serving', async () => {
    const cases: [string, RequestInit, number, string][] = [
      ['/v1/nope', {}, 404, 'not-found'],
      ['/v1/info', { method: 'POST', body: '{' }, 405, 'method-not-allowed'],
      ['/missing.js', {}, 404, 'not-found'],
      ['/%2e%2e/%2e%2e/etc/passwd', {}, 404, 'not-found'],
      ['/%E0%A4%A', {}, 404, 'not-found'],
    ];
    for (const [path, init, status, code] of cases) {
      const res = await fetch(`${gateway.url}${path}`, init);
      expect(res.status, path).toBe(status);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe(code);
    }
    expect((await fetch(`${gateway.url}/healthz`)).status).toBe(200);
  });
});

describe('gateway lifecycle', () => {
  it('keeps its identity across restarts and exits 0 on SIGTERM and SIGINT', async () => {
    const dir = tmp();
    const first = await startGateway({ dataDir: dir });
    expect(await first.stop()).toBe(0);
    expect(first.output()).toMatch(/stopping \(SIGTERM\)/);
    const second = await startGateway({ dataDir: dir });
    expect(second.id).toBe(first.id);
    const exited = new Promise((resolve) => second.process.once('exit', resolve));
    second.process.kill('SIGINT');
    expect(await exited).toBe(0);
    rmSync(dir, { recursive: true, force: true });
  });

  it('refuses a bad --listen or --public-url before doing anything', async () => {
    const dir = join(tmp(), 'never-made');
    const listen = await rtcmesh('gateway', '--listen', 'nonsense:99999', '--data', dir);
    expect(listen.code).toBe(2);
    expect(listen.stderr).toMatch(/--listen must be HOST:PORT/);
    const url = await rtcmesh('gateway', '--public-url', 'ftp://x', '--data', dir);
    expect(url.code).toBe(2);
    expect(url.stderr).toMatch(/--public-url must be http or https/);
    expect(() => statSync(dir)).toThrow();
  });
});
