/**
 * A real ACME CA for tests: Debian's `pebble` with `pebble-challtestsrv` as its DNS, both on
 * loopback ports of their own. challtestsrv answers every name with 127.0.0.1, so pebble's
 * http-01 validation reaches the gateway's plain HTTP port (`httpPort`). Stopped by PID.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { get } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freeTcpPort } from '../../e2e/support/ports.ts';

export function missingPebble(): string[] {
  return ['pebble', 'pebble-challtestsrv', 'openssl'].filter(
    (c) => spawnSync('sh', ['-c', `command -v ${c}`]).status !== 0,
  );
}

/** A self-signed certificate and key for `names` (IP:… or DNS:…), in `dir`. */
export function selfSigned(
  dir: string,
  name: string,
  altNames: string,
): { cert: string; key: string } {
  const cert = join(dir, `${name}.cert.pem`);
  const key = join(dir, `${name}.key.pem`);
  const made = spawnSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      key,
      '-out',
      cert,
      '-days',
      '2',
      '-subj',
      `/CN=${name}`,
      '-addext',
      `subjectAltName=${altNames}`,
    ],
    { encoding: 'utf8' },
  );
  if (made.status !== 0) throw new Error(`openssl failed: ${made.stderr}`);
  return { cert, key };
}

export interface Pebble {
  directoryUrl: string;
  /** PEM of pebble's own HTTPS listener certificate (the ACME client must trust it). */
  listenerCaFile: string;
  /** PEM of the root that issues the certificates (from the management endpoint /roots/0). */
  root(): Promise<string>;
  output(): string;
  stop(): void;
}

export async function startPebble(options: {
  /** Where pebble validates http-01: the gateway's plain HTTP port. */
  httpPort: number;
  /** Lifetime of the certificates it issues, in seconds. */
  validitySeconds: number;
}): Promise<Pebble> {
  const dir = mkdtempSync(join(tmpdir(), 'rtcmesh-pebble-'));
  const listener = selfSigned(dir, 'pebble', 'IP:127.0.0.1,DNS:localhost');
  const [acmePort, managementPort, dnsPort, challManagementPort] = await Promise.all([
    freeTcpPort(),
    freeTcpPort(),
    freeTcpPort(),
    freeTcpPort(),
  ]);
  const config = join(dir, 'pebble-config.json');
  writeFileSync(
    config,
    JSON.stringify({
      pebble: {
        listenAddress: `127.0.0.1:${acmePort}`,
        managementListenAddress: `127.0.0.1:${managementPort}`,
        certificate: listener.cert,
        privateKey: listener.key,
        httpPort: options.httpPort,
        tlsPort: 5001,
        ocspResponderURL: '',
        externalAccountBindingRequired: false,
        certificateValidityPeriod: options.validitySeconds,
      },
    }),
  );
  let output = '';
  const collect = (child: ChildProcess) => {
    child.stdout?.on('data', (d: Buffer) => {
      output += d.toString();
    });
    child.stderr?.on('data', (d: Buffer) => {
      output += d.toString();
    });
  };
  const dns = spawn(
    'pebble-challtestsrv',
    [
      '-defaultIPv4',
      '127.0.0.1',
      '-defaultIPv6',
      '',
      '-dns01',
      `127.0.0.1:${dnsPort}`,
      '-http01',
      '',
      '-https01',
      '',
      '-tlsalpn01',
      '',
      '-management',
      `127.0.0.1:${challManagementPort}`,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  collect(dns);
  const pebble = spawn('pebble', ['-config', config, '-dnsserver', `127.0.0.1:${dnsPort}`], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, PEBBLE_VA_NOSLEEP: '1', PEBBLE_WFE_NONCEREJECT: '0' },
  });
  collect(pebble);
  const ca = readFileSync(listener.cert, 'utf8');
  const fetchText = (url: string) =>
    new Promise<string>((resolve, reject) => {
      get(url, { ca }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => {
          body += d;
        });
        res.on('end', () =>
          res.statusCode === 200 ? resolve(body) : reject(new Error(`${url}: ${res.statusCode}`)),
        );
      }).on('error', reject);
    });
  const directoryUrl = `https://127.0.0.1:${acmePort}/dir`;
  // Up when its directory answers (generous: a loaded machine).
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      await fetchText(directoryUrl);
      break;
    } catch (err) {
      if (Date.now() > deadline || pebble.exitCode !== null)
        throw new Error(`pebble did not start: ${String(err)}\n${output}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  return {
    directoryUrl,
    listenerCaFile: listener.cert,
    root: () => fetchText(`https://127.0.0.1:${managementPort}/roots/0`),
    output: () => output,
    stop() {
      pebble.kill();
      dns.kill();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
