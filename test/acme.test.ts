/**
 * ACME against a real CA: Debian's pebble (with pebble-challtestsrv as its DNS, answering the
 * test domain with 127.0.0.1) issues the gateway its certificate over http-01 on the
 * gateway's plain HTTP port. The PWA and the API are then served over HTTPS, checked against
 * pebble's root; with certificates that live 45 s, the gateway renews at two thirds of that
 * while a node stays connected, and new handshakes get the new certificate, no restart.
 */
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type GatewayProcess, startGateway } from '../e2e/support/gateway-process.ts';
import { freeTcpPort } from '../e2e/support/ports.ts';
import { connectNode, type MeshNodeHandle } from '../src/node/index.ts';
import { missingPebble, type Pebble, startPebble } from './support/pebble.ts';

const missing = missingPebble();
if (missing.length > 0)
  throw new Error(
    `${missing.join(', ')} not found: apt-get install pebble openssl, as .ci/run does`,
  );

const DOMAIN = 'gw.rtcmesh.test';
const VALIDITY_S = 45;

let pebble: Pebble;
let gateway: GatewayProcess;
let httpPort: number;
let tlsPort: number;
let root: string;

interface Answer {
  status: number;
  body: string;
  headers: Record<string, string | string[] | undefined>;
  /** The serial number of the certificate the gateway presented. */
  serial: string;
}

/** An HTTPS request to the gateway by its domain name, verified against pebble's root only. */
function https(
  path: string,
  init: { method?: string; body?: string; headers?: Record<string, string> } = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port: tlsPort,
        servername: DOMAIN,
        ca: root,
        path,
        method: init.method ?? 'GET',
        headers: { host: `${DOMAIN}:${tlsPort}`, ...init.headers },
        agent: false,
      },
      (res) => {
        const serial = (res.socket as import('node:tls').TLSSocket).getPeerCertificate()
          .serialNumber;
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => {
          body += d;
        });
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, body, headers: res.headers, serial }),
        );
      },
    );
    req.on('error', reject);
    req.end(init.body);
  });
}

/**
 * The fetch a node in this process uses: the gateway's name resolves to 127.0.0.1 (as
 * challtestsrv says) and its certificate is checked against pebble's root. Real TLS, real
 * gateway; only the name lookup is the test's.
 */
async function fetchByDomain(input: RequestInfo | URL, init?: RequestInit): Promise<Response> {
  const url = new URL(input instanceof Request ? input.url : String(input));
  if (url.hostname !== DOMAIN) throw new Error(`unexpected fetch of ${url.href}`);
  const headers: Record<string, string> = {};
  new Headers(init?.headers).forEach((v, k) => {
    headers[k] = v;
  });
  const answer = await https(url.pathname + url.search, {
    method: init?.method ?? 'GET',
    headers,
    ...(typeof init?.body === 'string' ? { body: init.body } : {}),
  });
  return new Response(answer.status === 204 ? null : answer.body, {
    status: answer.status,
    headers: Object.entries(answer.headers).flatMap(([k, v]) =>
      v === undefined ? [] : [[k, Array.isArray(v) ? v.join(', ') : v] as [string, string]],
    ),
  });
}

beforeAll(async () => {
  httpPort = await freeTcpPort();
  pebble = await startPebble({ httpPort, validitySeconds: VALIDITY_S });
  gateway = await startGateway({
    listen: `127.0.0.1:${httpPort}`,
    args: [
      '--tls-listen',
      '127.0.0.1:0',
      '--domain',
      DOMAIN,
      '--acme-email',
      'ops@rtcmesh.test',
      '--acme-directory',
      pebble.directoryUrl,
      '--registry',
      'memory',
    ],
    // The ACME client talks to pebble's own HTTPS listener, self-signed for the test.
    env: { NODE_EXTRA_CA_CERTS: pebble.listenerCaFile },
  });
  tlsPort = Number(new URL(gateway.url).port);
  root = await pebble.root();
}, 120_000);

afterAll(async () => {
  await gateway?.stop();
  pebble?.stop();
});

describe('a certificate from an ACME CA (pebble)', () => {
  it('is obtained at first start, kept in the data directory, and serves the PWA and the API', async () => {
    expect(gateway.url).toBe(`https://${DOMAIN}:${tlsPort}`);
    expect(existsSync(join(gateway.dataDir, 'acme', `${DOMAIN}.cert.pem`))).toBe(true);
    const page = await https('/');
    expect(page.status).toBe(200);
    expect(page.body).toMatch(/<html/i);
    const info = await https('/v1/info');
    expect(info.status).toBe(200);
    expect(JSON.parse(info.body).id).toBe(gateway.id);
  });

  it('the plain HTTP port redirects to https', async () => {
    const answer = await new Promise<{ status: number; location?: string }>((resolve, reject) => {
      httpRequest(
        { host: '127.0.0.1', port: httpPort, path: '/app?x=1', headers: { host: 'evil.example' } },
        (res) => {
          res.resume();
          resolve({ status: res.statusCode ?? 0, location: res.headers.location });
        },
      )
        .on('error', reject)
        .end();
    });
    expect(answer).toEqual({ status: 308, location: `https://${DOMAIN}:${tlsPort}/app?x=1` });
  });

  it('is renewed while a node stays connected, and served without a restart', async () => {
    const first = (await https('/healthz')).serial;
    const saved = globalThis.fetch;
    globalThis.fetch = fetchByDomain as typeof fetch;
    let node: MeshNodeHandle | undefined;
    try {
      node = await connectNode({
        gateway: gateway.url,
        dataDir: mkdtempSync(join(tmpdir(), 'rtcmesh-acme-node-')),
        bindAddress: '127.0.0.1',
      });
      expect(node.status).toBe('connected');
      // Renewal is due at two thirds of 45 s; wait for new handshakes to get a new certificate.
      let serial = first;
      const deadline = Date.now() + 150_000;
      while (serial === first && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 1000));
        serial = (await https('/healthz')).serial;
      }
      expect(serial).not.toBe(first);
      expect(gateway.output()).toMatch(/TLS certificate renewed/);
      // The same process, and the node's session never dropped.
      expect(gateway.process.exitCode).toBeNull();
      expect(node.status).toBe('connected');
      const metrics = await https('/metrics');
      expect(metrics.body).toMatch(/^rtcmesh_sessions 1$/m);
      const kept = readFileSync(join(gateway.dataDir, 'acme', `${DOMAIN}.cert.pem`), 'utf8');
      expect(kept).toContain('BEGIN CERTIFICATE');
    } finally {
      await node?.close();
      globalThis.fetch = saved;
    }
  }, 240_000);
});
