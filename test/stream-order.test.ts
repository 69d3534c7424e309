/**
 * Messages on a reliable, ordered stream between two CLI-style nodes (libdatachannel) arrive
 * whole and in order. Before the READY handshake (src/core/node/stream.ts) libdatachannel
 * could hand frames that reached a channel before its Node wrapper existed to the stream out
 * of order: 1 to 4 of 15 transfers of 4 MiB under load, a message of one byte and, later, one
 * of two frames joined.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { connectNode, type MeshNodeHandle } from '../src/node/index.ts';
import { startGatewayInProcess } from './support/gateway-in-process.ts';

const MESSAGE = 64 * 1024; // two frames each: the shape that showed the reordering
const COUNT = 64; // 4 MiB a transfer
const TRANSFERS = 8;

/** Message `seq`: its number, then bytes that depend on it and on their position. */
function message(seq: number): Uint8Array {
  const m = new Uint8Array(MESSAGE);
  new DataView(m.buffer).setUint32(0, seq);
  for (let i = 4; i < MESSAGE; i++) m[i] = (seq * 31 + i * 7 + (i >> 8)) & 255;
  return m;
}

function problem(seq: number, m: Uint8Array): string | undefined {
  if (m.byteLength !== MESSAGE) return `message ${seq} has ${m.byteLength} bytes`;
  const got = new DataView(m.buffer, m.byteOffset, m.byteLength).getUint32(0);
  if (got !== seq) return `message ${seq} came as ${got}`;
  for (let i = 4; i < MESSAGE; i++)
    if (m[i] !== ((seq * 31 + i * 7 + (i >> 8)) & 255)) return `message ${seq}: byte ${i} differs`;
  return undefined;
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

it('every transfer of 4 MiB arrives whole and in order, stream after stream', async () => {
  const start = async () => {
    const node = await connectNode({
      gateway: gateway.publicUrl,
      dataDir: mkdtempSync(join(tmpdir(), 'rtcmesh-order-')),
      accept: 'everyone',
      bindAddress: '127.0.0.1',
    });
    nodes.push(node);
    return node;
  };
  const [sender, receiver] = [await start(), await start()];
  const problems: string[] = [];
  for (let t = 0; t < TRANSFERS; t++) {
    // A new stream (a new channel the receiver is offered) each time: the moment it races.
    const received = new Promise<void>((resolve, reject) => {
      receiver.listen(`bulk${t}`, (stream) => {
        void (async () => {
          const reader = stream.readable.getReader();
          for (let seq = 0; seq < COUNT; seq++) {
            const { value } = await reader.read();
            const p = problem(seq, value as Uint8Array);
            if (p) problems.push(`transfer ${t}: ${p}`);
          }
          resolve();
        })().catch(reject);
      });
    });
    const stream = await sender.dial(receiver.id, `bulk${t}`);
    for (let seq = 0; seq < COUNT; seq++) await stream.send(message(seq));
    await received;
    stream.close();
  }
  expect(problems).toEqual([]);
}, 300_000);
