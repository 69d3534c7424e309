/**
 * Stream throughput: 64 MiB from page A to page B over an rtcmesh stream, next to a raw
 * RTCDataChannel between the same two pages in the same run; and CLI to CLI.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { RTCMESH_BIN, startGateway } from '../e2e/support/gateway-process.ts';
import { newPage } from './browser.ts';

export const BYTES = 64 * 1024 * 1024;

export interface Throughput {
  name: string;
  mbPerS: number;
}

type BenchWindow = Window & {
  rtcmesh?: {
    node: {
      gateway: { status: string };
      dial(
        to: string,
        service: string,
      ): Promise<{ send(m: Uint8Array): Promise<void>; close(): void }>;
      listen(
        service: string,
        h: (s: { readable: ReadableStream<Uint8Array | string> }) => void,
      ): void;
    };
  };
  received?: Promise<number>;
  pc?: RTCPeerConnection;
};

const mb = (bytes: number, ms: number) => bytes / 1e6 / (ms / 1000);

/** Waits in `page` for BYTES on `service` and resolves with the time the last byte came. */
async function armReceiver(page: Page, service: string): Promise<void> {
  await page.evaluate(
    ({ service, total }) => {
      const w = window as BenchWindow;
      w.received = new Promise<number>((resolve) => {
        w.rtcmesh?.node.listen(service, async (stream) => {
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
    },
    { service, total: BYTES },
  );
}

export async function pageToPage(browser: Browser): Promise<Throughput[]> {
  const gateway = await startGateway();
  try {
    const a = await newPage(browser, gateway.url);
    const b = await newPage(browser, gateway.url, () =>
      localStorage.setItem('rtcmesh:accept-policy', 'everyone'),
    );
    const ready = (p: Page) =>
      p.waitForFunction(
        () => (window as BenchWindow).rtcmesh?.node.gateway.status === 'connected',
        undefined,
        { timeout: 20_000 },
      );
    await Promise.all([ready(a.page), ready(b.page)]);
    const bId = (await b.page.getByTestId('node-id').textContent()) ?? '';

    // A second tab of A's device: the same node, but not the RTC host (DESIGN §6), so its
    // stream's bytes cross a port from the host tab's channel worker.
    const other = await a.context.newPage();
    await other.goto(gateway.url);
    await ready(other);
    const isHost = (p: Page) => p.evaluate(() => document.body.dataset.rtcHost === 'true');
    await a.page.waitForFunction(() => document.body.dataset.rtcHost === 'true');
    if (await isHost(other)) throw new Error('the second tab became the RTC host');

    const rtcmeshRun = async (from: Page) => {
      await armReceiver(b.page, 'bulk');
      const start = await from.evaluate(
        async ({ to, total }) => {
          const stream = await (window as BenchWindow).rtcmesh?.node.dial(to, 'bulk');
          if (!stream) throw new Error('no node');
          const chunk = new Uint8Array(64 * 1024 - 1).fill(7);
          const t0 = Date.now();
          for (let sent = 0; sent < total; sent += chunk.length)
            await stream.send(
              sent + chunk.length > total ? chunk.subarray(0, total - sent) : chunk,
            );
          return t0;
        },
        { to: bId, total: BYTES },
      );
      const end = await b.page.evaluate(() => (window as BenchWindow).received as Promise<number>);
      return mb(BYTES, end - start);
    };

    // The baseline: a raw RTCDataChannel between the same two pages, same chunks and
    // thresholds. Like rtcmesh's link, one peer connection carries every run (a warm association).
    const rawConnect = async () => {
      const offer = await a.page.evaluate(async () => {
        const pc = new RTCPeerConnection();
        (window as BenchWindow).pc = pc;
        pc.createDataChannel('raw');
        await pc.setLocalDescription();
        await new Promise<void>((r) => {
          const done = () => pc.iceGatheringState === 'complete' && r();
          pc.onicegatheringstatechange = done;
          done();
        });
        return pc.localDescription?.toJSON();
      });
      const answer = await b.page.evaluate(async (offer) => {
        const pc = new RTCPeerConnection();
        (window as BenchWindow).pc = pc;
        await pc.setRemoteDescription(offer as RTCSessionDescriptionInit);
        await pc.setLocalDescription();
        await new Promise<void>((r) => {
          const done = () => pc.iceGatheringState === 'complete' && r();
          pc.onicegatheringstatechange = done;
          done();
        });
        return pc.localDescription?.toJSON();
      }, offer);
      await a.page.evaluate(async (answer) => {
        await (window as BenchWindow).pc?.setRemoteDescription(answer as RTCSessionDescriptionInit);
      }, answer);
    };
    const rawRun = async () => {
      await b.page.evaluate((total) => {
        const w = window as BenchWindow;
        w.received = new Promise<number>((resolve) => {
          (w.pc as RTCPeerConnection).ondatachannel = (ev) => {
            let got = 0;
            ev.channel.binaryType = 'arraybuffer';
            ev.channel.onmessage = (m) => {
              got += (m.data as ArrayBuffer).byteLength;
              if (got >= total) resolve(Date.now());
            };
          };
        });
      }, BYTES);
      const start = await a.page.evaluate(async (total) => {
        const pc = (window as BenchWindow).pc as RTCPeerConnection;
        const dc = pc.createDataChannel('bulk');
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
      }, BYTES);
      const end = await b.page.evaluate(() => (window as BenchWindow).received as Promise<number>);
      return mb(BYTES, end - start);
    };
    await rawConnect();

    // Alternate, best of three each, so both see the same machine state.
    const raw: number[] = [];
    const mesh: number[] = [];
    const fromOther: number[] = [];
    for (let i = 0; i < 3; i++) {
      raw.push(await rawRun());
      mesh.push(await rtcmeshRun(a.page));
      fromOther.push(await rtcmeshRun(other));
    }
    for (const p of [a.page, b.page]) await p.evaluate(() => (window as BenchWindow).pc?.close());
    await a.context.close();
    await b.context.close();
    return [
      { name: 'raw RTCDataChannel, page to page (baseline)', mbPerS: Math.max(...raw) },
      { name: 'rtcmesh stream, page to page (from the RTC host tab)', mbPerS: Math.max(...mesh) },
      {
        name: 'rtcmesh stream from a tab that is not the RTC host',
        mbPerS: Math.max(...fromOther),
      },
    ];
  } finally {
    await gateway.stop();
  }
}

export async function cliToCli(): Promise<Throughput> {
  const gateway = await startGateway();
  const dirs = [
    mkdtempSync(join(tmpdir(), 'rtcmesh-b-')),
    mkdtempSync(join(tmpdir(), 'rtcmesh-b-')),
  ];
  const listener = spawn(
    process.execPath,
    [
      RTCMESH_BIN,
      'listen',
      'bulk',
      '--exec',
      'cat > /dev/null',
      '--gateway',
      gateway.url,
      '--data',
      dirs[0] ?? '',
    ],
    {
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  try {
    let err = '';
    const id = await new Promise<string>((resolve) => {
      listener.stderr.on('data', (d: Buffer) => {
        err += d.toString();
        const m = /node (\S+) \(/.exec(err);
        if (m?.[1]) resolve(m[1]);
      });
    });
    const dialer = spawn(
      process.execPath,
      [RTCMESH_BIN, 'dial', id, 'bulk', '--gateway', gateway.url, '--data', dirs[1] ?? ''],
      {
        stdio: ['pipe', 'ignore', 'pipe'],
      },
    );
    let started = 0;
    dialer.stderr.on('data', (d: Buffer) => {
      if (!started && d.toString().includes('connected to')) started = Date.now();
    });
    const block = Buffer.alloc(1024 * 1024, 7);
    for (let i = 0; i < BYTES / block.length; i++) {
      if (!dialer.stdin.write(block)) await new Promise((r) => dialer.stdin.once('drain', r));
    }
    dialer.stdin.end();
    await new Promise((r) => dialer.once('exit', r));
    return {
      name: 'rtcmesh dial → rtcmesh listen (CLI to CLI)',
      mbPerS: mb(BYTES, Date.now() - (started || Date.now())),
    };
  } finally {
    listener.kill('SIGTERM');
    await gateway.stop();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  }
}
