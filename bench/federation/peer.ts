/**
 * The dialing side of `npm run bench:federation`, run inside a LAN's namespace: dials the
 * `sink` service of a node on another LAN (`rtcmesh listen sink --exec 'wc -c'`), each dial
 * from a fresh node (a fresh ICE negotiation through the relays), then pushes BYTES through
 * one stream. Prints one JSON line: dial times, the path, MB/s.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connectNode, describePath, relayHops } from '../../src/node/index.ts';

const [gateway = '', target = '', dialsText = '5', bytesText = '16777216'] = process.argv.slice(2);
const dials = Number(dialsText);
const bytes = Number(bytesText);
const CHUNK = 64 * 1024;

async function freshNode() {
  const dataDir = mkdtempSync(join(tmpdir(), 'rtcmesh-bench-fed-'));
  const node = await connectNode({ gateway, dataDir });
  return {
    node,
    close: async () => {
      await node.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

const dialMs: number[] = [];
let path = '';
let hops = -1;
for (let i = 0; i < dials; i++) {
  const { node, close } = await freshNode();
  const started = performance.now();
  const stream = await node.dial(target, 'sink');
  dialMs.push(performance.now() - started);
  const info = await stream.path();
  path = describePath(info);
  hops = relayHops(info);
  stream.close();
  await close();
}

const { node, close } = await freshNode();
const stream = await node.dial(target, 'sink');
const reader = stream.readable.getReader();
const chunk = new Uint8Array(CHUNK).fill(7);
const started = performance.now();
for (let sent = 0; sent < bytes; sent += CHUNK) await stream.send(chunk);
await stream.send(new Uint8Array(0)); // end of input: `wc -c` answers with the count
let reply = '';
for (;;) {
  const { value, done } = await reader.read();
  if (done || value === undefined) break;
  if (typeof value !== 'string' && value.byteLength === 0) break;
  reply += typeof value === 'string' ? value : Buffer.from(value).toString();
  if (reply.includes('\n')) break;
}
const ms = performance.now() - started;
stream.close();
await close();
console.log(
  JSON.stringify({
    dialMs,
    path,
    hops,
    received: Number(reply.trim()),
    mbPerS: bytes / 1e6 / (ms / 1000),
  }),
);
process.exit(0);
