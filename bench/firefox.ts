/**
 * Chromium ↔ Firefox (issue 17): dial latency and stream throughput between a Chromium page
 * (Playwright) and a Firefox page (stock firefox-esr over WebDriver BiDi, e2e/support/
 * firefox.ts), each direction next to its raw baseline between the same two browsers in the
 * same run: raw WebRTC with a WebSocket relay for dials, a raw RTCDataChannel for bytes.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Browser } from 'playwright-core';
import { WebSocketServer } from 'ws';
import { FirefoxProcess } from '../e2e/support/firefox.ts';
import { startGateway } from '../e2e/support/gateway-process.ts';
import { newPage, type Summary, summarize } from './browser.ts';
import { BYTES, type Throughput } from './throughput.ts';

/** What both drivers' pages offer: evaluate a function with one argument. */
interface BenchPage {
  evaluate<R, A>(fn: (arg: A) => R | Promise<R>, arg: A): Promise<Awaited<R>>;
}

interface Side {
  name: 'Chromium' | 'Firefox';
  page: BenchPage;
}

type NodeWindow = Window & {
  rtcmesh?: {
    node: {
      gateway: { status: string };
      connect(to: string): Promise<{ close(): void }>;
      dial(to: string, service: string): Promise<{ send(m: Uint8Array): Promise<void> }>;
      listen(
        service: string,
        h: (s: { readable: ReadableStream<Uint8Array | string> }) => void,
      ): void;
    };
  };
  received?: Promise<number>;
  pc?: RTCPeerConnection;
  sock?: WebSocket;
  dialRaw?: () => Promise<number>;
};

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const mb = (bytes: number, ms: number) => bytes / 1e6 / (ms / 1000);

async function until(page: BenchPage, check: () => boolean, what: string): Promise<void> {
  for (let waited = 0; waited < 60_000; waited += 200) {
    if (await page.evaluate(check, undefined)) return;
    await sleep(200);
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** Both browsers' pages open `url`: a Chromium context and a Firefox tab. */
async function openPair(
  chromium: Browser,
  firefox: FirefoxProcess,
  url: string,
  acceptAll: boolean,
) {
  const init = acceptAll
    ? () => localStorage.setItem('rtcmesh:accept-policy', 'everyone')
    : undefined;
  const cr = await newPage(chromium, url, init);
  const fxPage = await firefox.newPage();
  if (init) await fxPage.evaluateOnNewDocument(init);
  await fxPage.goto(url);
  const sides: [Side, Side] = [
    { name: 'Chromium', page: cr.page as unknown as BenchPage },
    { name: 'Firefox', page: fxPage as unknown as BenchPage },
  ];
  return {
    sides,
    close: async () => {
      await cr.context.close();
      await fxPage.close();
    },
  };
}

const nodeId = (page: BenchPage) =>
  page.evaluate(
    () => document.querySelector('[data-testid="node-id"]')?.textContent ?? '',
    undefined,
  );

/** rtcmesh dials through its gateway, each way; the first dials of a pair warm up. */
export async function crossDials(
  chromium: Browser,
  firefox: FirefoxProcess,
  dials: number,
): Promise<Summary[]> {
  const gateway = await startGateway({
    args: ['--limit', 'dialPerId.burst=10000', '--limit', 'dialPerId.perSecond=1000'],
  });
  try {
    const pair = await openPair(chromium, firefox, gateway.url, true);
    const results: Summary[] = [];
    for (const s of pair.sides)
      await until(
        s.page,
        () => (window as NodeWindow).rtcmesh?.node.gateway.status === 'connected',
        `${s.name} connected`,
      );
    for (const [from, to] of [pair.sides, [...pair.sides].reverse() as [Side, Side]]) {
      const toId = await nodeId(to.page);
      const samples: number[] = [];
      for (let i = 0; i < dials + 2; i++) {
        const ms = await from.page.evaluate(async (id) => {
          const node = (window as NodeWindow).rtcmesh?.node;
          if (!node) throw new Error('no node');
          const start = performance.now();
          const link = await node.connect(id);
          const elapsed = performance.now() - start;
          link.close();
          return elapsed;
        }, toId);
        if (i >= 2) samples.push(ms);
        await sleep(50);
      }
      results.push(summarize(`rtcmesh, ${from.name} dials ${to.name}`, samples));
    }
    await pair.close();
    return results;
  } finally {
    await gateway.stop();
  }
}

/** The floor each way: raw RTCPeerConnection, trickle ICE over a WebSocket relay. */
export async function crossRawDials(
  chromium: Browser,
  firefox: FirefoxProcess,
  dials: number,
): Promise<Summary[]> {
  const http = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end('<!doctype html><title>floor</title>');
  });
  const wss = new WebSocketServer({ server: http });
  const peers = new Map<string, import('ws').WebSocket>();
  wss.on('connection', (ws, req) => {
    const name = new URL(req.url ?? '/', 'http://x').searchParams.get('name') ?? '';
    peers.set(name, ws);
    ws.on('message', (data) =>
      peers.get(name === 'Chromium' ? 'Firefox' : 'Chromium')?.send(data.toString()),
    );
  });
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(http.address() as AddressInfo).port}/`;
  try {
    const pair = await openPair(chromium, firefox, url, false);
    for (const side of pair.sides)
      await side.page.evaluate(
        async ({ name, ws }) => {
          const w = window as NodeWindow;
          const sock = new WebSocket(`${ws}?name=${name}`);
          w.sock = sock;
          await new Promise((r) => sock.addEventListener('open', r, { once: true }));
          let pc: RTCPeerConnection | undefined;
          const fresh = () => {
            pc?.close();
            pc = new RTCPeerConnection();
            const current = pc;
            current.onicecandidate = (e) =>
              sock.send(JSON.stringify({ candidate: e.candidate?.toJSON() ?? null }));
            return current;
          };
          sock.addEventListener('message', async (ev) => {
            const msg = JSON.parse(ev.data as string);
            if (msg.offer) {
              const p = fresh();
              await p.setRemoteDescription(msg.offer);
              await p.setLocalDescription();
              sock.send(JSON.stringify({ answer: p.localDescription?.toJSON() }));
            } else if (msg.answer) await pc?.setRemoteDescription(msg.answer);
            else if (msg.candidate) await pc?.addIceCandidate(msg.candidate).catch(() => {});
          });
          w.dialRaw = async () => {
            const start = performance.now();
            const p = fresh();
            const dc = p.createDataChannel('chat');
            await p.setLocalDescription();
            sock.send(JSON.stringify({ offer: p.localDescription?.toJSON() }));
            await new Promise((r) => dc.addEventListener('open', r, { once: true }));
            return performance.now() - start;
          };
        },
        { name: side.name, ws: url.replace('http', 'ws') },
      );
    const results: Summary[] = [];
    for (const [from, to] of [pair.sides, [...pair.sides].reverse() as [Side, Side]]) {
      const samples: number[] = [];
      for (let i = 0; i < dials + 2; i++) {
        const ms = await from.page.evaluate(
          () => (window as NodeWindow).dialRaw?.() ?? Number.NaN,
          undefined,
        );
        if (i >= 2) samples.push(ms);
        await sleep(50);
      }
      results.push(summarize(`raw WebRTC, ${from.name} dials ${to.name} (floor)`, samples));
    }
    await pair.close();
    return results;
  } finally {
    wss.close();
    http.close();
  }
}

/**
 * BYTES over an rtcmesh stream and over a raw RTCDataChannel between the same Chromium and
 * Firefox pages, each way, alternating, best of `runs`.
 */
export async function crossThroughput(
  chromium: Browser,
  firefox: FirefoxProcess,
  runs = 2,
): Promise<Throughput[]> {
  const gateway = await startGateway();
  try {
    const pair = await openPair(chromium, firefox, gateway.url, true);
    for (const s of pair.sides)
      await until(
        s.page,
        () => (window as NodeWindow).rtcmesh?.node.gateway.status === 'connected',
        `${s.name} connected`,
      );
    const ids = await Promise.all(pair.sides.map((s) => nodeId(s.page)));

    const meshRun = async (from: Side, to: Side, toId: string) => {
      await to.page.evaluate((total) => {
        const w = window as NodeWindow;
        w.received = new Promise<number>((resolve) => {
          w.rtcmesh?.node.listen('bulk', async (stream) => {
            const reader = stream.readable.getReader();
            let got = 0;
            while (got < total) {
              const { value, done } = await reader.read();
              if (done) break;
              got += typeof value === 'string' ? value.length : value.byteLength;
            }
            resolve(Date.now());
          });
        });
      }, BYTES);
      const start = await from.page.evaluate(
        async ({ id, total }) => {
          const stream = await (window as NodeWindow).rtcmesh?.node.dial(id, 'bulk');
          if (!stream) throw new Error('no node');
          const chunk = new Uint8Array(64 * 1024 - 1).fill(7);
          const t0 = Date.now();
          for (let sent = 0; sent < total; sent += chunk.length)
            await stream.send(
              sent + chunk.length > total ? chunk.subarray(0, total - sent) : chunk,
            );
          return t0;
        },
        { id: toId, total: BYTES },
      );
      const end = await to.page.evaluate(
        () => (window as NodeWindow).received as Promise<number>,
        undefined,
      );
      return mb(BYTES, end - start);
    };

    // One raw peer connection between the two pages for every raw run (a warm association).
    const [cr, fx] = pair.sides;
    const offer = await cr.page.evaluate(async () => {
      const pc = new RTCPeerConnection();
      (window as NodeWindow).pc = pc;
      pc.createDataChannel('raw');
      await pc.setLocalDescription();
      await new Promise<void>((r) => {
        const done = () => pc.iceGatheringState === 'complete' && r();
        pc.onicegatheringstatechange = done;
        done();
      });
      return pc.localDescription?.toJSON();
    }, undefined);
    const answer = await fx.page.evaluate(async (offer) => {
      const pc = new RTCPeerConnection();
      (window as NodeWindow).pc = pc;
      await pc.setRemoteDescription(offer as RTCSessionDescriptionInit);
      await pc.setLocalDescription();
      await new Promise<void>((r) => {
        const done = () => pc.iceGatheringState === 'complete' && r();
        pc.onicegatheringstatechange = done;
        done();
      });
      return pc.localDescription?.toJSON();
    }, offer);
    await cr.page.evaluate(async (answer) => {
      await (window as NodeWindow).pc?.setRemoteDescription(answer as RTCSessionDescriptionInit);
    }, answer);
    let label = 0;
    const rawRun = async (from: Side, to: Side) => {
      const name = `bulk${label++}`;
      await to.page.evaluate(
        ({ total, name }) => {
          const w = window as NodeWindow;
          w.received = new Promise<number>((resolve) => {
            (w.pc as RTCPeerConnection).ondatachannel = (ev) => {
              if (ev.channel.label !== name) return;
              let got = 0;
              ev.channel.binaryType = 'arraybuffer';
              ev.channel.onmessage = (m) => {
                got += (m.data as ArrayBuffer).byteLength;
                if (got >= total) resolve(Date.now());
              };
            };
          });
        },
        { total: BYTES, name },
      );
      const start = await from.page.evaluate(
        async ({ total, name }) => {
          const pc = (window as NodeWindow).pc as RTCPeerConnection;
          const dc = pc.createDataChannel(name);
          await new Promise((r) => dc.addEventListener('open', r, { once: true }));
          dc.bufferedAmountLowThreshold = 256 * 1024;
          const chunk = new Uint8Array(64 * 1024 - 1).fill(7);
          const t0 = Date.now();
          for (let sent = 0; sent < total; sent += chunk.length) {
            if (dc.bufferedAmount > 1024 * 1024)
              await new Promise((r) => dc.addEventListener('bufferedamountlow', r, { once: true }));
            dc.send(sent + chunk.length > total ? chunk.subarray(0, total - sent) : chunk);
          }
          return t0;
        },
        { total: BYTES, name },
      );
      const end = await to.page.evaluate(
        () => (window as NodeWindow).received as Promise<number>,
        undefined,
      );
      return mb(BYTES, end - start);
    };

    const results: Throughput[] = [];
    for (const [from, to, toId] of [
      [cr, fx, ids[1] ?? ''],
      [fx, cr, ids[0] ?? ''],
    ] as const) {
      const raw: number[] = [];
      const mesh: number[] = [];
      for (let i = 0; i < runs; i++) {
        raw.push(await rawRun(from, to));
        mesh.push(await meshRun(from, to, toId));
      }
      results.push(
        {
          name: `raw RTCDataChannel, ${from.name} → ${to.name} (baseline)`,
          mbPerS: Math.max(...raw),
        },
        { name: `rtcmesh stream, ${from.name} → ${to.name}`, mbPerS: Math.max(...mesh) },
      );
    }
    for (const s of pair.sides)
      await s.page.evaluate(() => (window as NodeWindow).pc?.close(), undefined);
    await pair.close();
    return results;
  } finally {
    await gateway.stop();
  }
}

export { FirefoxProcess };
