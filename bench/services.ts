/**
 * `rtcmesh expose` / `rtcmesh forward` (README "Services over the mesh"): TCP throughput
 * through forward → mesh → expose against a plain loopback TCP copy, and time to first byte of
 * a page through the mesh against the same server asked directly. Real processes on loopback.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer as createHttpServer, get } from 'node:http';
import { connect, createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RTCMESH_BIN, startGateway } from '../e2e/support/gateway-process.ts';
import { END_OF_BODY, encodeHead } from '../src/core/services/http-over-stream.ts';
import { connectNode } from '../src/node/index.ts';

const BYTES = 64 * 1024 * 1024;
const TTFB_SAMPLES = 30;
const mbPerS = (bytes: number, ms: number) => bytes / 1e6 / (ms / 1000);

export interface ServicesFigures {
  loopbackMbPerS: number;
  forwardMbPerS: number;
  ttfb: { name: string; p50: number; p95: number }[];
}

const listen = async (server: Server | ReturnType<typeof createHttpServer>) => {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as { port: number }).port;
};

/** Sends BYTES to `port`, half-closes, and times until the sink says it has them all. */
function copyTo(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    const block = Buffer.alloc(1024 * 1024, 7);
    const started = Date.now();
    socket.on('error', reject);
    socket.once('data', () => {
      resolve(mbPerS(BYTES, Date.now() - started));
      socket.destroy();
    });
    void (async () => {
      for (let sent = 0; sent < BYTES; sent += block.length)
        if (!socket.write(block)) await new Promise((r) => socket.once('drain', r));
      socket.end();
    })();
  });
}

/** Collects a child's stderr; `line(re)` waits until it matches. */
function watch(child: ChildProcess) {
  let err = '';
  child.stderr?.on('data', (d: Buffer) => {
    err += d.toString();
  });
  return async (pattern: RegExp): Promise<RegExpExecArray> => {
    for (;;) {
      const m = pattern.exec(err);
      if (m) return m;
      await new Promise((r) => setTimeout(r, 50));
    }
  };
}

const percentile = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? Number.NaN;
};

/** Time to first body byte of `GET /` from `port` (plain HTTP). */
function ttfbHttp(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    get({ port, host: '127.0.0.1', path: '/', agent: false }, (res) => {
      res.once('data', () => {
        resolve(performance.now() - started);
        res.resume();
      });
    }).on('error', reject);
  });
}

export async function servicesBench(): Promise<ServicesFigures> {
  const gateway = await startGateway();
  const dirs = [0, 1, 2].map(() => mkdtempSync(join(tmpdir(), 'rtcmesh-b-')));
  const children: ChildProcess[] = [];
  const sink = createServer({ allowHalfOpen: true }, (socket) => {
    socket.resume();
    socket.on('end', () => socket.end('k'));
    socket.on('error', () => {});
  });
  const page = createHttpServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end(`<!doctype html><h1>hello</h1>${'<p>filler</p>'.repeat(200)}`);
  });
  try {
    const sinkPort = await listen(sink);
    const pagePort = await listen(page);
    const run = (args: string[], dir: string) => {
      const child = spawn(
        process.execPath,
        [RTCMESH_BIN, ...args, '--gateway', gateway.url, '--data', dir],
        { stdio: ['ignore', 'ignore', 'pipe'] },
      );
      children.push(child);
      return child;
    };
    const sinkExpose = run(['expose', 'sink', `127.0.0.1:${sinkPort}`], dirs[0] ?? '');
    const sinkExposeLine = watch(sinkExpose);
    const webExposeLine = watch(
      run(['expose', 'web', `127.0.0.1:${pagePort}`, '--http'], dirs[1] ?? ''),
    );
    const id = (await sinkExposeLine(/node (\S+) \(/))[1] ?? '';
    await sinkExposeLine(/exposing/);
    const sinkForward = run(['forward', '127.0.0.1:0', id, 'sink'], dirs[2] ?? '');
    const forwardPort = Number((await watch(sinkForward)(/forwarding 127\.0\.0\.1:(\d+)/))[1]);

    await copyTo(forwardPort); // the link, made once
    const loopback = Math.max(
      await copyTo(sinkPort),
      await copyTo(sinkPort),
      await copyTo(sinkPort),
    );
    const forwarded = Math.max(
      await copyTo(forwardPort),
      await copyTo(forwardPort),
      await copyTo(forwardPort),
    );
    sinkExpose.kill('SIGTERM');
    sinkForward.kill('SIGTERM');

    // Time to first byte: the page's server directly, and through the mesh as the app's
    // service worker asks it (a new stream per request on an open link, HTTP-over-stream).
    const webId = (await webExposeLine(/node (\S+) \(/))[1] ?? '';
    await webExposeLine(/exposing/);
    const client = await connectNode({
      gateway: gateway.url,
      dataDir: mkdtempSync(join(tmpdir(), 'rtcmesh-b-')),
    });
    const meshTtfb = async () => {
      const started = performance.now();
      const stream = await client.dial(webId, 'web');
      const writer = stream.writable.getWriter();
      await writer.write(encodeHead({ method: 'GET', path: '/', headers: [] }));
      await writer.write(END_OF_BODY);
      const reader = stream.readable.getReader();
      await reader.read(); // the head
      await reader.read(); // the first body bytes
      stream.close();
      return performance.now() - started;
    };
    // Taken in turns, so both see the same load; the first of each (the link, the server's
    // first request) is left out.
    const direct: number[] = [];
    const viaMesh: number[] = [];
    try {
      await meshTtfb();
      await ttfbHttp(pagePort);
      for (let i = 0; i < TTFB_SAMPLES; i++) {
        direct.push(await ttfbHttp(pagePort));
        viaMesh.push(await meshTtfb());
      }
    } finally {
      await client.close();
    }
    return {
      loopbackMbPerS: loopback,
      forwardMbPerS: forwarded,
      ttfb: [
        { name: 'the page’s server, directly (new TCP connection)', samples: direct },
        { name: 'through the mesh: new stream, expose --http, node:http', samples: viaMesh },
      ].map(({ name, samples }) => ({
        name,
        p50: percentile(samples, 50),
        p95: percentile(samples, 95),
      })),
    };
  } finally {
    for (const c of children) c.kill('SIGTERM');
    sink.close();
    page.close();
    await gateway.stop();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  }
}
