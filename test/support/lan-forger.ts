/**
 * A hostile device on a test LAN (bundled and run inside a namespace by lan-discovery.test.ts):
 * it waits for a real gateway's announcement, then for `--ms` sends forgeries of it pointing at
 * its own HTTP server (`forged` port: the real gateway's ID with a swapped URL, key or
 * signature), a validly signed announcement of its own rogue "gateway" that never works
 * (`rogue` port), truncated and random datagrams, as fast as it can. Its servers count the
 * requests they get; at the end it prints them, with how many datagrams it sent, as JSON.
 */
import { createSocket } from 'node:dgram';
import { createServer, type Server } from 'node:http';
import { parseArgs } from 'node:util';
import {
  encodeBase64url,
  generateNodeKeyPair,
  identityOf,
  nodeKeyFromCryptoKeys,
} from '../../src/core/identity/index.ts';
import {
  LAN_GROUP_V4,
  LAN_PORT,
  parseLanDatagram,
  signLanMessage,
} from '../../src/node/discovery/announcement.ts';

const { values } = parseArgs({
  options: {
    ip: { type: 'string' },
    forged: { type: 'string' },
    rogue: { type: 'string' },
    ms: { type: 'string' },
  },
});
const ip = values.ip ?? '';
const forgedUrl = `http://${ip}:${values.forged}`;
const rogueUrl = `http://${ip}:${values.rogue}`;
const counts = { forged: 0, rogue: 0, sent: 0 };

function serve(port: number, count: () => void, realId: () => string): Promise<Server> {
  const server = createServer((_req, res) => {
    count();
    // Whatever a gateway would say, claiming the real gateway's ID.
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ id: realId(), ip6: 'fd00::1', version: '0', answer: 'x' }));
  });
  return new Promise((resolve) => server.listen(Number(port), ip, () => resolve(server)));
}

const b64 = (text: string) => encodeBase64url(new TextEncoder().encode(text));
const fromB64 = (part: string) => Buffer.from(part, 'base64url').toString('utf8');

let real: { token: string; id: string } | undefined;
const socket = createSocket({ type: 'udp4', reuseAddr: true });
await new Promise<void>((resolve) => socket.bind(LAN_PORT, '0.0.0.0', () => resolve()));
socket.addMembership(LAN_GROUP_V4, ip);
socket.setMulticastInterface(ip);
socket.on('message', (data) => {
  const decoded = parseLanDatagram(data);
  if (decoded.ok && decoded.message.kind === 'gateway' && !real)
    real = { token: decoded.message.token, id: decoded.message.id };
});
const servers = [
  await serve(
    Number(values.forged),
    () => counts.forged++,
    () => real?.id ?? '',
  ),
  await serve(
    Number(values.rogue),
    () => counts.rogue++,
    () => real?.id ?? '',
  ),
];
while (!real) await new Promise((r) => setTimeout(r, 100));
const { token, id: realId } = real;
const [header = '', payload = '', signature = ''] = token.split('.');
const realPayload = JSON.parse(fromB64(payload)) as Record<string, unknown>;
const attacker = await identityOf(
  await (async () => {
    const pair = await generateNodeKeyPair();
    return nodeKeyFromCryptoKeys(pair.privateKey, pair.publicKey);
  })(),
);
const withPayload = (p: object, sig = signature) => `${header}.${b64(JSON.stringify(p))}.${sig}`;
const signedByAttacker = async (p: object) => {
  const input = `${header}.${b64(JSON.stringify(p))}`;
  const sig = await attacker.key.sign(new TextEncoder().encode(input));
  return `${input}.${encodeBase64url(sig)}`;
};
const forgeries = [
  // The real ID, its key and signature, another URL: the signature no longer matches.
  withPayload({ ...realPayload, url: forgedUrl }),
  // The real ID and URL swapped, signed by the attacker with its own key: ID ≠ key.
  await signedByAttacker({
    ...realPayload,
    url: forgedUrl,
    key: encodeBase64url(attacker.key.publicKey),
  }),
  // The real key and ID, signed by the attacker: a bad signature.
  await signedByAttacker({ ...realPayload, url: forgedUrl }),
  // A bye for the real gateway, forged.
  withPayload({ ...realPayload, kind: 'bye' }),
  // An attacker's own gateway, validly signed, that never works.
  await signLanMessage(attacker, 'gateway', rogueUrl),
  ...[1, 10, 100, token.length - 1].map((n) => token.slice(0, n)),
  'rtcmesh-lan-query/1',
  '',
];

const deadline = Date.now() + Number(values.ms ?? 5000);
const send = (data: Buffer | string) =>
  new Promise<void>((resolve) =>
    socket.send(data, LAN_PORT, LAN_GROUP_V4, () => {
      counts.sent++;
      resolve();
    }),
  );
while (Date.now() < deadline) {
  for (const f of forgeries) await send(f);
  await send(randomJunk());
  // A distinct forgery each round: each costs a signature check unless rate-limited.
  await send(withPayload({ ...realPayload, url: forgedUrl, iat: counts.sent }));
  // A flood, not a CPU hog: the machine runs the honest devices too.
  await new Promise((r) => setTimeout(r, 5));
}
process.stdout.write(`${JSON.stringify({ ...counts, realId })}\n`);
socket.close();
for (const s of servers) s.close();

function randomJunk(): Buffer {
  const length = Math.floor(Math.random() * 1500);
  return Buffer.from(crypto.getRandomValues(new Uint8Array(length)));
}
