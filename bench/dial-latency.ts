/**
 * Dial latency: from dial() until the data channel is open, between two Chromium pages
 * (two browser contexts) — through the rtcmesh gateway, next to raw WebRTC with a trivial
 * WebSocket relay (the floor) and PeerJS with its PeerServer. The three are set up side by
 * side and dial in turn (one of each, then again), so a busy moment on the shared machine
 * falls on all three alike and the ratios hold even when the times do not.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Browser, Page } from 'playwright-core';
import { WebSocketServer } from 'ws';
import { startGateway } from '../e2e/support/gateway-process.ts';
import { repoPath } from '../e2e/support/paths.ts';
import { newPage, type Summary, summarize } from './browser.ts';

type RtcmeshWindow = Window & {
  rtcmesh?: {
    node: { connect(to: string): Promise<{ close(): void }>; gateway: { status: string } };
  };
};

/** One way of dialing, set up and ready: each `dial()` measures one dial in milliseconds. */
export interface Dialer {
  name: string;
  dial(): Promise<number>;
  close(): Promise<void>;
}

/** Dials `dials` times with each dialer in turn (after two warm-up rounds), and summarizes. */
export async function interleavedDials(dialers: Dialer[], dials: number): Promise<Summary[]> {
  const samples = dialers.map(() => [] as number[]);
  for (let i = 0; i < dials + 2; i++) {
    for (const [k, dialer] of dialers.entries()) {
      const ms = await dialer.dial();
      if (i >= 2) samples[k]?.push(ms); // the first dials warm up the pages
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return dialers.map((d, k) => summarize(d.name, samples[k] ?? []));
}

export async function rtcmeshDialer(browser: Browser): Promise<Dialer> {
  // A benchmark dials far faster than a person: lift the per-node dial rate limit.
  const gateway = await startGateway({
    args: ['--limit', 'dialPerId.burst=10000', '--limit', 'dialPerId.perSecond=1000'],
  });
  try {
    const a = await newPage(browser, gateway.url);
    const b = await newPage(browser, gateway.url, () =>
      localStorage.setItem('rtcmesh:accept-policy', 'everyone'),
    );
    const ready = (page: Page) =>
      page.waitForFunction(
        () => (window as RtcmeshWindow).rtcmesh?.node.gateway.status === 'connected',
        undefined,
        { timeout: 20_000 },
      );
    await Promise.all([ready(a.page), ready(b.page)]);
    const bId = (await b.page.getByTestId('node-id').textContent()) ?? '';
    // Dial from a second tab of A's device: the same node, but not the RTC host (DESIGN §6),
    // so every step crosses from that tab to the node worker and on to the host tab.
    await a.page.waitForFunction(() => document.body.dataset.rtcHost === 'true');
    const from = await a.context.newPage();
    await from.goto(gateway.url);
    await ready(from);
    if (await from.evaluate(() => document.body.dataset.rtcHost === 'true'))
      throw new Error('the second tab became the RTC host');
    return {
      name: 'rtcmesh through its gateway (from a tab that is not the RTC host)',
      dial: () =>
        from.evaluate(async (to) => {
          const node = (window as RtcmeshWindow).rtcmesh?.node;
          if (!node) throw new Error('no node');
          const start = performance.now();
          const link = await node.connect(to);
          const elapsed = performance.now() - start;
          link.close();
          return elapsed;
        }, bId),
      close: async () => {
        await a.context.close();
        await b.context.close();
        await gateway.stop();
      },
    };
  } catch (err) {
    await gateway.stop();
    throw err;
  }
}

export async function rawDialer(browser: Browser): Promise<Dialer> {
  const http = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end('<!doctype html><title>floor</title>');
  });
  const wss = new WebSocketServer({ server: http });
  const peers = new Map<string, import('ws').WebSocket>();
  wss.on('connection', (ws, req) => {
    const name = new URL(req.url ?? '/', 'http://x').searchParams.get('name') ?? '';
    peers.set(name, ws);
    ws.on('message', (data) => peers.get(name === 'a' ? 'b' : 'a')?.send(data.toString()));
  });
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(http.address() as AddressInfo).port}/`;
  try {
    const a = await newPage(browser, url);
    const b = await newPage(browser, url);
    const setup = async (page: Page, name: string) =>
      page.evaluate(
        async ({ name, ws }) => {
          const w = window as unknown as { sock: WebSocket; dial: () => Promise<number> };
          w.sock = new WebSocket(`${ws}?name=${name}`);
          await new Promise((r) => w.sock.addEventListener('open', r, { once: true }));
          let pc: RTCPeerConnection | undefined;
          const fresh = () => {
            pc?.close();
            pc = new RTCPeerConnection();
            const current = pc;
            current.onicecandidate = (e) =>
              w.sock.send(JSON.stringify({ candidate: e.candidate?.toJSON() ?? null }));
            current.ondatachannel = () => {};
            return current;
          };
          w.sock.addEventListener('message', async (ev) => {
            const msg = JSON.parse(ev.data as string);
            if (msg.offer) {
              const p = fresh();
              await p.setRemoteDescription(msg.offer);
              await p.setLocalDescription();
              w.sock.send(JSON.stringify({ answer: p.localDescription?.toJSON() }));
            } else if (msg.answer) await pc?.setRemoteDescription(msg.answer);
            else if (msg.candidate) await pc?.addIceCandidate(msg.candidate).catch(() => {});
          });
          w.dial = async () => {
            const start = performance.now();
            const p = fresh();
            const dc = p.createDataChannel('chat');
            await p.setLocalDescription();
            w.sock.send(JSON.stringify({ offer: p.localDescription?.toJSON() }));
            await new Promise((r) => dc.addEventListener('open', r, { once: true }));
            return performance.now() - start;
          };
        },
        { name, ws: url.replace('http', 'ws') },
      );
    await setup(a.page, 'a');
    await setup(b.page, 'b');
    return {
      name: 'raw WebRTC, WebSocket relay (floor)',
      dial: () =>
        a.page.evaluate(() => (window as unknown as { dial: () => Promise<number> }).dial()),
      close: async () => {
        await a.context.close();
        await b.context.close();
        wss.close();
        http.close();
      },
    };
  } catch (err) {
    wss.close();
    http.close();
    throw err;
  }
}

/** PeerJS 1.5 with its own PeerServer. */
export async function peerjsDialer(browser: Browser): Promise<Dialer> {
  const { PeerServer } = await import('peer');
  const server = await new Promise<{ port: number; close: () => void }>((resolve) => {
    const s = PeerServer({ port: 0, host: '127.0.0.1', path: '/peerjs' }, (httpServer) => {
      resolve({
        port: (httpServer.address() as AddressInfo).port,
        close: () => httpServer.close(),
      });
    });
    void s;
  });
  const page = `http://127.0.0.1:${server.port}/peerjs`;
  const peerjs = repoPath('node_modules/peerjs/dist/peerjs.min.js');
  try {
    const open = async (id: string) => {
      const made = await newPage(browser, page);
      await made.page.addScriptTag({ path: peerjs });
      await made.page.evaluate(
        async ({ id, port }) => {
          const w = window as unknown as {
            Peer: new (id: string, o: object) => EventTarget & Record<string, unknown>;
            peer: unknown;
          };
          const PeerCtor = w.Peer;
          const peer = new PeerCtor(id, {
            host: '127.0.0.1',
            port,
            path: '/peerjs',
            config: { iceServers: [] },
          }) as unknown as {
            on(ev: string, cb: (x: unknown) => void): void;
          };
          w.peer = peer;
          await new Promise((r) => peer.on('open', r));
          peer.on('connection', () => {});
        },
        { id, port: server.port },
      );
      return made;
    };
    const a = await open(`a${Date.now()}`);
    const bId = `b${Date.now()}`;
    const b = await open(bId);
    return {
      name: 'PeerJS 1.5 + PeerServer',
      dial: () =>
        a.page.evaluate(async (to) => {
          const peer = (
            window as unknown as {
              peer: {
                connect(
                  id: string,
                  o: object,
                ): { on(e: string, cb: () => void): void; close(): void };
              };
            }
          ).peer;
          const start = performance.now();
          const conn = peer.connect(to, { reliable: true });
          await new Promise<void>((r) => conn.on('open', r));
          const elapsed = performance.now() - start;
          conn.close();
          return elapsed;
        }, bId),
      close: async () => {
        await a.context.close();
        await b.context.close();
        server.close();
      },
    };
  } catch (err) {
    server.close();
    throw err;
  }
}
