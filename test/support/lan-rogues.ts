/**
 * Strangers on a test LAN (bundled and run inside a namespace by lan-federation.test.ts): for
 * `--ms` it multicasts validly signed announcements of `--count` gateways, each with a fresh
 * key (IDs are free) and a URL on `--ip` where nothing listens. Prints how many it sent.
 */
import { createSocket } from 'node:dgram';
import { parseArgs } from 'node:util';
import {
  generateNodeKeyPair,
  identityOf,
  nodeKeyFromCryptoKeys,
} from '../../src/core/identity/index.ts';
import { LAN_GROUP_V4, LAN_PORT, signLanMessage } from '../../src/node/discovery/announcement.ts';

const { values } = parseArgs({
  options: { ip: { type: 'string' }, count: { type: 'string' }, ms: { type: 'string' } },
});
const ip = values.ip ?? '';
const tokens: string[] = [];
for (let i = 0; i < Number(values.count ?? 80); i++) {
  const pair = await generateNodeKeyPair();
  const identity = await identityOf(await nodeKeyFromCryptoKeys(pair.privateKey, pair.publicKey));
  tokens.push(await signLanMessage(identity, 'gateway', `http://${ip}:${9000 + i}`));
}
const socket = createSocket({ type: 'udp4', reuseAddr: true });
await new Promise<void>((resolve) => socket.bind(0, ip, () => resolve()));
socket.setMulticastInterface(ip);
let sent = 0;
const deadline = Date.now() + Number(values.ms ?? 8000);
while (Date.now() < deadline) {
  for (const token of tokens) {
    await new Promise<void>((resolve) =>
      socket.send(token, LAN_PORT, LAN_GROUP_V4, () => resolve()),
    );
    sent++;
  }
  await new Promise((r) => setTimeout(r, 200));
}
process.stdout.write(`${JSON.stringify({ sent, gateways: tokens.length })}\n`);
socket.close();
