/**
 * The attackers of `npm run bench:abuse` (issue #12), in a process of their own (forked by
 * run.ts): every attack of the issue at once, each a bounded loop that stops at its deadline,
 * from many fresh identities and many loopback addresses (127.0.0.2–127.0.0.250). Reports
 * what it sent and what came back over IPC. Loopback only.
 */
import { createSocket, type Socket } from 'node:dgram';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  createAuthorization,
  createNodeRecord,
  type NodeIdentity,
} from '../../src/core/identity/index.ts';
import { channelOpen, type DataChannelLike } from '../../src/core/node/rtc.ts';
import type { ConnectResponse, GatewayToNode } from '../../src/core/protocol/messages.ts';
import { loadOrCreateCertificate } from '../../src/node/certificate-store.ts';
import { loadOrCreateIdentity } from '../../src/node/identity-store.ts';
import { nodeRtcPlatform } from '../../src/node/rtc-platform.ts';
import { MessageBuilder, Method } from '../../src/node/stun/index.ts';
import { RequestedTransport } from '../../src/node/turn/codec/attributes.ts';
import {
  httpRequest,
  loopbackSource,
  rawHttp,
  refusedOffers,
} from '../../test/support/fuzz-gateway.ts';
import { codeOf, TestTurnClient } from '../../test/support/turn-client.ts';
import {
  PLACEHOLDER_FINGERPRINT,
  syntheticIdentity,
  syntheticRecord,
} from '../capacity/synthetic.ts';

export interface AttackConfig {
  gatewayUrl: string;
  udpPort: number;
  turnPort: number;
  /** The honest node whose ID the busy-victim attack dials. */
  victimId: string;
  /** The honest nodes' own address: the unsigned flood shares it (one NAT, many users). */
  honestAddress: string;
  /** A push service on loopback that answers every push with an error and a nasty text. */
  pushUrl: string;
  seconds: number;
  /** Scale of the concurrent loops (1 full, smaller for --quick). */
  scale: number;
}

export interface AttackReport {
  /** Per attack: requests (or datagrams, messages) sent, and outcomes by status or code. */
  attacks: Record<string, { sent: number; outcomes: Record<string, number> }>;
  notes: string[];
}

const report: AttackReport = { attacks: {}, notes: [] };
function count(attack: string, outcome: string): void {
  const a = report.attacks[attack] ?? { sent: 0, outcomes: {} };
  report.attacks[attack] = a;
  a.sent++;
  a.outcomes[outcome] = (a.outcomes[outcome] ?? 0) + 1;
}
function outcomeOf(r: Awaited<ReturnType<typeof httpRequest>>): string {
  if ('error' in r) return r.error.startsWith('timeout') ? 'timeout' : 'error';
  try {
    const code = (JSON.parse(r.text) as { error?: { code?: string } }).error?.code;
    return code ? `${r.status} ${code}` : String(r.status);
  } catch {
    return String(r.status);
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A Chromium-like offer with the placeholder fingerprint synthetic records list. */
function templateOffer(port: number): string {
  return [
    'v=0',
    'o=- 4611731400430051336 2 IN IP4 127.0.0.1',
    's=-',
    't=0 0',
    'a=group:BUNDLE 0',
    'a=extmap-allow-mixed',
    'a=msid-semantic: WMS',
    'm=application 9 UDP/DTLS/SCTP webrtc-datachannel',
    'c=IN IP4 0.0.0.0',
    `a=candidate:1 1 udp 2113937151 127.0.0.2 ${port} typ host generation 0`,
    `a=ice-ufrag:${Math.random().toString(36).slice(2, 6)}`,
    `a=ice-pwd:${Math.random().toString(36).slice(2)}${Math.random().toString(36).slice(2)}`,
    'a=ice-options:trickle',
    `a=fingerprint:${PLACEHOLDER_FINGERPRINT}`,
    'a=setup:actpass',
    'a=mid:0',
    'a=sctp-port:5000',
    'a=max-message-size:262144',
    '',
  ].join('\r\n');
}

interface Sybil {
  identity: NodeIdentity;
  record: string;
  address: string;
}
let sybilCount = 0;
async function sybil(): Promise<Sybil> {
  const identity = await syntheticIdentity();
  return {
    identity,
    record: await syntheticRecord(identity),
    address: loopbackSource(sybilCount++, 2, 250),
  };
}

function signedPost(c: AttackConfig, s: Sybil, path: string, body: unknown, address = s.address) {
  return createAuthorization(s.identity.key, c.gatewayUrl).then((authorization) =>
    httpRequest(c.gatewayUrl, {
      method: 'POST',
      path,
      headers: { authorization, 'content-type': 'application/json' },
      body: JSON.stringify(body),
      localAddress: address,
      timeoutMs: 10_000,
    }),
  );
}

/** Runs `workers` copies of `step` until the deadline. */
async function loop(
  deadline: number,
  workers: number,
  step: (worker: number, i: number) => Promise<void>,
  pauseMs = 0,
): Promise<void> {
  await Promise.all(
    Array.from({ length: workers }, async (_, w) => {
      for (let i = 0; Date.now() < deadline; i++) {
        await step(w, i).catch(() => undefined);
        if (pauseMs) await sleep(pauseMs);
      }
    }),
  );
}

/** (1) The crash of #12: signed connects whose offer libdatachannel refuses. */
async function badOffers(c: AttackConfig, deadline: number): Promise<void> {
  await loop(deadline, 2 * c.scale, async () => {
    const s = await sybil();
    for (const offer of Object.values(refusedOffers(templateOffer(9), PLACEHOLDER_FINGERPRINT)))
      count(
        'bad offers (#12 crash)',
        outcomeOf(await signedPost(c, s, '/v1/connect', { offer, record: s.record })),
      );
  });
}

/** (2) GET /v1/<random>: metric label growth, memory. */
async function randomPaths(c: AttackConfig, deadline: number): Promise<void> {
  await loop(deadline, 4 * c.scale, async (w, i) => {
    const r = await httpRequest(c.gatewayUrl, {
      path: `/v1/${Math.random().toString(36).slice(2)}${i}`,
      localAddress: loopbackSource(w * 7 + i, 2, 250),
    });
    count('GET /v1/<random>', outcomeOf(r));
  });
}

/** (3) Unsigned connects from the honest nodes' own address. */
async function unsignedFlood(c: AttackConfig, deadline: number): Promise<void> {
  await loop(deadline, 2 * c.scale, async () => {
    const r = await httpRequest(c.gatewayUrl, {
      method: 'POST',
      path: '/v1/connect',
      headers: { 'content-type': 'application/json' },
      body: '{}',
      localAddress: c.honestAddress,
    });
    count('unsigned /v1/connect from the honest address', outcomeOf(r));
  });
}

/**
 * A real ctl session of a fresh identity from `address` (node-datachannel), for attacks that
 * need one: dials to the victim, half-open and TURN credentials.
 */
async function ctlSession(c: AttackConfig, address: string) {
  const dataDir = mkdtempSync(join(tmpdir(), 'rtcmesh-attacker-'));
  const { identity, keyFile } = await loadOrCreateIdentity(dataDir);
  const certificate = await loadOrCreateCertificate(dataDir, identity);
  const rtc = nodeRtcPlatform({ certFile: certificate.certFile, keyFile, bindAddress: address });
  const record = await createNodeRecord(identity, { fingerprints: [certificate.fingerprint] });
  const pc = rtc.createPeerConnection({ iceServers: [] });
  const ctl: DataChannelLike = pc.createDataChannel('ctl', { negotiated: true, id: 0 });
  await pc.setLocalDescription();
  const offer = pc.localDescription?.sdp ?? '';
  const r = await httpRequest(c.gatewayUrl, {
    method: 'POST',
    path: '/v1/connect',
    headers: {
      authorization: await createAuthorization(identity.key, c.gatewayUrl),
      'content-type': 'application/json',
    },
    body: JSON.stringify({ offer, record }),
    localAddress: address,
  });
  if ('error' in r || r.status !== 200) {
    pc.close();
    throw new Error(`connect: ${outcomeOf(r)}`);
  }
  await pc.setRemoteDescription({
    type: 'answer',
    sdp: (JSON.parse(r.text) as { answer: string }).answer,
  });
  await channelOpen(ctl, 15_000);
  const replies: GatewayToNode[] = [];
  ctl.addEventListener('message', (ev) => {
    try {
      replies.push(JSON.parse(String((ev as MessageEvent).data)) as GatewayToNode);
    } catch {
      // not JSON
    }
  });
  return { identity, record, offer, ctl, replies, close: () => pc.close() };
}

/** (4) Sessions each keeping 16 dials to the victim pending (they never answer anything). */
async function busyVictim(c: AttackConfig, deadline: number): Promise<void> {
  const sessions = await Promise.all(
    Array.from({ length: 2 * c.scale }, (_, i) =>
      ctlSession(c, loopbackSource(100 + i, 2, 250)).catch((err: Error) => {
        count('dials to the victim', `session refused: ${err.message}`);
        return undefined;
      }),
    ),
  );
  let n = 0;
  await loop(
    deadline,
    1,
    async () => {
      for (const s of sessions) {
        if (!s) continue;
        s.replies.splice(0);
        for (let k = 0; k < 16; k++) {
          const dialId = `busy${(n++).toString(36).padStart(18, '0')}`;
          s.ctl.send(
            JSON.stringify({ t: 'dial', dialId, to: c.victimId, offer: s.offer, record: s.record }),
          );
        }
        await sleep(300);
        for (const r of s.replies)
          count('dials to the victim', r.t === 'dial-failed' ? `failed ${r.code}` : r.t);
      }
    },
    2000,
  );
  for (const s of sessions) s?.close();
}

/** TURN credentials the gateway handed to made-up IDs with their (half-open) connects. */
const issuedCredentials: { username: string; password: string }[] = [];

/** (5) Self-made IDs from a few addresses: registrations, TURN allocations. */
async function sybils(c: AttackConfig, deadline: number): Promise<void> {
  const registrations = loop(deadline, 2 * c.scale, async (_, i) => {
    const s = await sybil();
    // One address for many IDs: the Sybil bound per address is what should hold.
    const r = await signedPost(
      c,
      s,
      '/v1/register',
      { record: s.record, push: null },
      loopbackSource(i % 3, 2, 4),
    );
    count('registrations of fresh IDs', outcomeOf(r));
  });
  // TURN allocations with the credentials the half-open connects of made-up IDs were given,
  // five sockets per ID; up to a bounded number, held until the end.
  const held: TestTurnClient[] = [];
  const maxHeld = 150 * c.scale;
  const allocations = loop(deadline, 2, async (w, i) => {
    const credentials = issuedCredentials[Math.floor(held.length / 5)];
    if (held.length >= maxHeld || !credentials) {
      await sleep(200);
      return;
    }
    const client = await TestTurnClient.open(
      { host: '127.0.0.1', port: c.turnPort },
      credentials,
      loopbackSource(w * 1000 + i, 2, 250),
    );
    const r = await client
      .request(Method.ALLOCATE, (b) => b.add(RequestedTransport, 17))
      .catch(() => undefined);
    const code = r ? codeOf(r) : -1;
    count(
      'TURN allocations for made-up IDs',
      code === 0 ? 'allocated' : code === -1 ? 'no answer' : `error ${code}`,
    );
    if (code === 0) held.push(client);
    else client.close();
  });
  await Promise.all([registrations, allocations]);
  for (const h of held) h.close();
}

/** (6a) Unauthenticated TURN requests and junk from many addresses. */
async function turnFlood(c: AttackConfig, deadline: number): Promise<void> {
  const sockets: Socket[] = await Promise.all(
    Array.from({ length: 8 }, async (_, i) => {
      const s = createSocket('udp4');
      s.on('message', () => {});
      s.on('error', () => {});
      await new Promise<void>((resolve) =>
        s.bind(0, loopbackSource(i * 13, 2, 250), () => resolve()),
      );
      return s;
    }),
  );
  const allocate = new MessageBuilder(Method.ALLOCATE, 'request')
    .add(RequestedTransport, 17)
    .build();
  await loop(
    deadline,
    1,
    async (_, i) => {
      for (let k = 0; k < 50 * c.scale; k++) {
        const s = sockets[(i + k) % sockets.length] as Socket;
        s.send(allocate, c.turnPort, '127.0.0.1');
        s.send(
          crypto.getRandomValues(new Uint8Array(100)),
          k % 2 ? c.turnPort : c.udpPort,
          '127.0.0.1',
        );
        count('unauthenticated TURN and junk datagrams', 'sent');
      }
    },
    10,
  );
  for (const s of sockets) s.close();
}

/** (6b) Half-open connects: a valid offer, then never any ICE. */
async function halfOpen(c: AttackConfig, deadline: number): Promise<void> {
  await loop(
    deadline,
    c.scale,
    async () => {
      const s = await sybil();
      const r = await signedPost(c, s, '/v1/connect', {
        offer: templateOffer(9),
        record: s.record,
      });
      count('half-open connects', outcomeOf(r));
      if (!('error' in r) && r.status === 200) {
        const server = (JSON.parse(r.text) as ConnectResponse).iceServers[0];
        if (server?.username && server.credential)
          issuedCredentials.push({ username: server.username, password: server.credential });
      }
    },
    100,
  );
}

/** (6c) Slow bodies (a byte a second) and idle connections, held until the deadline. */
async function slowAndIdle(c: AttackConfig, deadline: number): Promise<void> {
  const host = new URL(c.gatewayUrl).host;
  const left = () => Math.max(0, deadline - Date.now());
  // Signed, so the gateway has to read the body rather than refuse the request at once.
  const signers = await Promise.all(Array.from({ length: 20 * c.scale }, () => sybil()));
  const tokens = await Promise.all(
    signers.map((s) => createAuthorization(s.identity.key, c.gatewayUrl)),
  );
  const slow = signers.map((_, i) =>
    rawHttp(
      c.gatewayUrl,
      [
        `POST /v1/register HTTP/1.1\r\nhost: ${host}\r\nauthorization: ${tokens[i]}\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n`,
        ...Array.from({ length: Math.ceil(left() / 1000) }, () => 'x'),
      ],
      { localAddress: loopbackSource(i, 150, 200), timeoutMs: left() + 1000, gapMs: 1000 },
    ).then((r) =>
      count(
        'slow bodies (1 byte/s)',
        r.text
          ? (r.text.match(/^HTTP\/1\.1 (\d+)/)?.[1] ?? 'answered')
          : r.closedByServer
            ? 'closed by gateway'
            : 'held to the end',
      ),
    ),
  );
  const idle = Array.from({ length: 200 * c.scale }, (_, i) =>
    rawHttp(c.gatewayUrl, [], { localAddress: loopbackSource(i, 2, 250), timeoutMs: left() }).then(
      (r) => count('idle connections', r.closedByServer ? 'closed by gateway' : 'held to the end'),
    ),
  );
  await Promise.all([...slow, ...idle]);
}

/** (6d) A node whose push service answers with an error text, dialed again and again. */
async function pushErrors(c: AttackConfig, deadline: number): Promise<void> {
  const callee = await sybil();
  // Real subscription keys, so the gateway encrypts and posts the push (RFC 8291).
  const ecdh = await crypto.subtle.generateKey({ name: 'ECDH', namedCurve: 'P-256' }, true, [
    'deriveBits',
  ]);
  const p256dh = Buffer.from(await crypto.subtle.exportKey('raw', ecdh.publicKey));
  const push = {
    endpoint: `${c.pushUrl}/push/${callee.identity.id}`,
    keys: {
      p256dh: p256dh.toString('base64url'),
      auth: Buffer.from(crypto.getRandomValues(new Uint8Array(16))).toString('base64url'),
    },
  };
  const registered = await signedPost(c, callee, '/v1/register', { record: callee.record, push });
  count('push-service error text', `register ${outcomeOf(registered)}`);
  const caller = await sybil();
  await loop(
    deadline,
    1,
    async () => {
      const r = await signedPost(c, caller, '/v1/dial', {
        to: callee.identity.id,
        offer: templateOffer(9),
        record: caller.record,
      });
      count('push-service error text', outcomeOf(r));
      if (!('error' in r) && (r.text.includes('INJECTED') || r.text.includes('\u001b')))
        report.notes.push(`the push service's own text reached a caller: ${r.text.slice(0, 200)}`);
    },
    500,
  );
}

/** (6e) A record valid for 100 years, registered. */
async function longRecord(c: AttackConfig): Promise<void> {
  const identity = await syntheticIdentity();
  const record = await createNodeRecord(identity, {
    fingerprints: [PLACEHOLDER_FINGERPRINT],
    lifetimeS: 100 * 365 * 24 * 3600,
  });
  const r = await signedPost(c, { identity, record, address: '127.0.0.99' }, '/v1/register', {
    record,
    push: null,
  });
  count('100-year record', outcomeOf(r));
  if (!('error' in r) && r.status === 200)
    report.notes.push('a record valid for 100 years was accepted by POST /v1/register');
}

async function run(c: AttackConfig): Promise<void> {
  const deadline = Date.now() + c.seconds * 1000;
  await Promise.all([
    badOffers(c, deadline),
    randomPaths(c, deadline),
    unsignedFlood(c, deadline),
    busyVictim(c, deadline),
    sybils(c, deadline),
    turnFlood(c, deadline),
    halfOpen(c, deadline),
    slowAndIdle(c, deadline),
    pushErrors(c, deadline),
    longRecord(c),
  ]);
}

process.on('message', (msg: { config: AttackConfig }) => {
  run(msg.config)
    .catch((err: Error) => report.notes.push(`attacker failed: ${err.stack ?? err.message}`))
    .finally(() => {
      process.send?.(report, () => process.exit(0));
    });
});
