/**
 * Receive backpressure (src/core/node/stream.ts, flow control): between two CLI-style nodes
 * (libdatachannel), a listener that reads 1 KB/s makes a sender of 64 MiB wait, holding only
 * about a window of it, and once it reads at full speed every byte arrives as sent.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { RECEIVE_WINDOW, type StreamMessage } from '../src/core/node/stream.ts';
import { connectNode, type MeshNodeHandle } from '../src/node/index.ts';
import { startGatewayInProcess } from './support/gateway-in-process.ts';

const TOTAL = 64 * 1024 * 1024;
const MESSAGE = 64 * 1024;
/** What "a few MiB" means here: the window, and as much again for what is in flight. */
const BUFFER_BOUND = 2 * RECEIVE_WINDOW;
const SLOW_READS = 6;

/** Message `seq` of the transfer: bytes that depend on their position in the whole. */
function message(seq: number): Uint8Array {
  const m = new Uint8Array(MESSAGE);
  const base = seq * MESSAGE;
  for (let i = 0; i < MESSAGE; i++) m[i] = ((base + i) * 2654435761) >>> 24;
  return m;
}

let gateway: Awaited<ReturnType<typeof startGatewayInProcess>>;
const nodes: MeshNodeHandle[] = [];
beforeAll(async () => {
  gateway = await startGatewayInProcess();
});
afterAll(async () => {
  for (const n of nodes) await n.close();
  await gateway.stop(100);
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

it('a reader of 1 KB/s holds a sender of 64 MiB to a window; then all of it arrives, byte for byte', async () => {
  const start = async () => {
    const node = await connectNode({
      gateway: gateway.publicUrl,
      dataDir: mkdtempSync(join(tmpdir(), 'rtcmesh-bp-')),
      accept: 'everyone',
      bindAddress: '127.0.0.1',
    });
    nodes.push(node);
    return node;
  };
  const [sender, receiver] = [await start(), await start()];
  const incoming = new Promise<Parameters<Parameters<MeshNodeHandle['listen']>[1]>[0]>((resolve) =>
    receiver.listen('bulk', resolve),
  );
  const stream = await sender.dial(receiver.id, 'bulk');
  const expected = createHash('sha256');
  let written = 0;
  const writing = (async () => {
    for (let seq = 0; seq < TOTAL / MESSAGE; seq++) {
      const m = message(seq);
      expected.update(m);
      await stream.send(m);
      written += m.length;
    }
  })();
  const inbound = await incoming;
  const reader = inbound.readable.getReader();
  const got = createHash('sha256');
  let received = 0;
  let held: Uint8Array = new Uint8Array(0);
  const take = async () => {
    const { value, done } = await reader.read();
    if (done) throw new Error(`the stream ended after ${received} bytes`);
    const bytes = value as Exclude<StreamMessage, string>;
    got.update(bytes);
    received += bytes.length;
    return bytes;
  };

  // The slow reader: 1 KB a second, from a message it holds, taking the next when it is done.
  // It starts once the sender has filled the window: from then on the sender must wait.
  await expect
    .poll(() => inbound.bufferedBytes, { timeout: 60_000 })
    .toBeGreaterThanOrEqual(RECEIVE_WINDOW / 2);
  let maxBuffered = 0;
  for (let s = 0; s < SLOW_READS; s++) {
    if (held.length === 0) held = await take();
    held = held.subarray(1024);
    await sleep(1000);
    maxBuffered = Math.max(maxBuffered, inbound.bufferedBytes);
  }
  // Still waiting: far from all 64 MiB has been written, and the receiver holds a window.
  const writtenWhileSlow = written;
  console.log(
    `slow reader: receiver held at most ${maxBuffered} bytes; the sender had written ${writtenWhileSlow} of ${TOTAL}`,
  );
  expect(maxBuffered).toBeLessThanOrEqual(BUFFER_BOUND);
  expect(writtenWhileSlow).toBeLessThan(TOTAL / 4);

  // Full speed: everything arrives, and the buffer never held more than a window.
  while (received < TOTAL) {
    await take();
    maxBuffered = Math.max(maxBuffered, inbound.bufferedBytes);
  }
  await writing;
  expect(written).toBe(TOTAL);
  expect(received).toBe(TOTAL);
  expect(got.digest('hex')).toBe(expected.digest('hex'));
  expect(maxBuffered).toBeLessThanOrEqual(BUFFER_BOUND);
  stream.close();
}, 600_000);
