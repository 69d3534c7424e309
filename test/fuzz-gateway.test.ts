/**
 * Issue #12, "No stranger can crash, exhaust or lock out a gateway": a property-based fuzz
 * (fast-check) and raw sockets against every door of one real gateway process.
 *
 * - HTTP: each endpoint's JSON body, built from the real schemas and then mutated (wrong
 *   types, huge strings, deep nesting, unicode, `__proto__` keys), with garbage and honest
 *   headers, signed correctly where the door needs it so the input reaches past
 *   authentication; SDP offers on /v1/connect (a real node-datachannel offer, mutated);
 *   raw request framing (lying Content-Length, chunked garbage, slow bodies, bad header bytes).
 * - ctl: a real session whose control channel carries mutated JSON and binary.
 * - UDP: random, mutated STUN/TURN and ChannelData datagrams at the TURN port and the WebRTC port.
 *
 * Every HTTP answer must be a status below 500 with a JSON error body; every ctl message an
 * answer (an `error` for each invalid one); datagrams are answered or dropped. Afterwards the
 * process (by PID) is alive, /healthz is ok, its resident memory is under RSS_BOUND, and two
 * real nodes connect, dial and exchange bytes. Candidates the fuzz slips into offers name one
 * loopback "probe" address: the gateway must never send a packet there (DESIGN §5).
 *
 * Reproducible: FUZZ_SEED (printed) and FUZZ_RUNS choose the inputs.
 */
import { createSocket, type Socket } from 'node:dgram';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type GatewayProcess, startGateway } from '../e2e/support/gateway-process.ts';
import {
  createAuthorization,
  encodeBase64url,
  generateNodeKeyPair,
  identityOf,
  nodeKeyFromCryptoKeys,
} from '../src/core/identity/index.ts';
import {
  gatewayToNodeSchema,
  nodeToGatewaySchema,
  parseMessage,
} from '../src/core/protocol/messages.ts';
import { MessageBuilder, Method, Software, XorPeerAddress } from '../src/node/stun/index.ts';
import {
  ChannelNumber,
  Data,
  Lifetime,
  RequestedTransport,
} from '../src/node/turn/codec/attributes.ts';
import { encodeChannelData } from '../src/node/turn/codec/channel-data.ts';
import {
  type HttpOutcome,
  type HttpReply,
  honestRoundTrip,
  httpRequest,
  isAlive,
  loopbackSource,
  MiB,
  type NodeIdentityFiles,
  openRawCtl,
  type RawCtl,
  rawHttp,
  realOffer,
  refusedOffers,
  replyProblem,
  rssBytes,
  type Signer,
  signedRequest,
  signerFor,
  statusLine,
  waitFor,
} from './support/fuzz-gateway.ts';
import { makeNodeIdentity } from './support/node-node.ts';

const SEED = Number(process.env.FUZZ_SEED ?? 0x12f022) >>> 0;
const RUNS = Math.max(10, Number(process.env.FUZZ_RUNS ?? 150));
/**
 * The gateway's resident memory after the whole fuzz. Measured on the 2-core CI machine:
 * ~100 MiB idle and ~130–170 MiB after this file; 300 MiB leaves room for a busy machine
 * and still catches a leak per request (thousands of requests) or unbounded buffering.
 */
const RSS_BOUND = 300 * MiB;
/** Where every candidate the fuzz slips into an offer points: nothing may ever arrive. */
const PROBE_HOST = '127.0.0.77';

let gateway: GatewayProcess;
let pid: number;
let probe: Socket;
const probed: string[] = [];
let node: NodeIdentityFiles;
let signer: Signer;
let offer: string;

beforeAll(async () => {
  // Generous request rates (only these): the fuzz sends thousands of signed requests from a
  // few addresses and must reach the parsers, not stop at 429. Memory registry: one process.
  // A small PWA directory of its own, so static paths reach a real file server (whatever
  // has been built in dist/) and traversal attempts have something to escape from.
  const pwaDir = mkdtempSync(join(tmpdir(), 'rtcmesh-fuzz-pwa-'));
  writeFileSync(join(pwaDir, 'index.html'), '<!doctype html><title>fuzz</title>\n');
  writeFileSync(join(pwaDir, 'app.js'), 'export {};\n');
  gateway = await startGateway({
    args: [
      '--pwa-dir',
      pwaDir,
      '--registry',
      'memory',
      ...['newNodesPerIp', 'connectPerId', 'dialPerId', 'authFailuresPerIp'].flatMap((l) => [
        '--limit',
        `${l}.burst=1000000`,
        '--limit',
        `${l}.perSecond=100000`,
      ]),
      '--limit',
      'maxConnectingPerIp=100000',
    ],
  });
  pid = gateway.process.pid ?? 0;
  probe = createSocket('udp4');
  probe.on('message', (m, r) => probed.push(`${m.length} bytes from ${r.address}:${r.port}`));
  await new Promise<void>((resolve) => probe.bind(0, PROBE_HOST, () => resolve()));
  node = await makeNodeIdentity();
  signer = await signerFor(gateway.url, node);
  offer = await realOffer(node);
  console.log(
    `fuzz-gateway: seed ${SEED} (FUZZ_SEED), runs ${RUNS} (FUZZ_RUNS), gateway pid ${pid}, rss ${mib(rssBytes(pid))}`,
  );
}, 60_000);

afterAll(async () => {
  probe?.close();
  await gateway?.stop();
});

function mib(bytes: number): string {
  return `${(bytes / MiB).toFixed(1)} MiB`;
}

const fcOptions = (runs: number) => ({
  seed: SEED,
  numRuns: runs,
  // Shrinking against a real process is slow: bound it, and report what was found so far.
  interruptAfterTimeLimit: 100_000,
  markInterruptAsFailure: false,
});

/**
 * An answer from Node's HTTP server itself (header block too large, an Expect it does not
 * know, malformed framing): the gateway's
 * handler never saw the request, and Node answers with a bare status and no body.
 */
function fromHttpParser(reply: HttpReply): boolean {
  return (
    (reply.status === 400 || reply.status === 417 || reply.status === 431) &&
    reply.headers['content-type'] === undefined &&
    reply.text === ''
  );
}

/**
 * Internal errors the gateway logged ("request failed", as text or as a JSON log line), other
 * than a client that hung up mid-request.
 */
function internalErrors(): string[] {
  return gateway
    .output()
    .split('\n')
    .filter((line) => line.includes('request failed') && !/aborted|ECONNRESET/.test(line))
    .map((line) => line.slice(0, 300));
}

/** Log lines at level error or fatal (pino JSON: 50, 60), for the report. */
function errorLogLines(): string[] {
  return gateway
    .output()
    .split('\n')
    .filter(
      (line) => /"level":\s*(50|60)\b/.test(line) || /^rtcmesh: .*(failed|error)/i.test(line),
    );
}

async function expectServing(): Promise<void> {
  expect(isAlive(pid)).toBe(true);
  expect(gateway.process.exitCode).toBeNull();
  const health = await httpRequest(gateway.url, { path: '/healthz' });
  expect(health).toMatchObject({ status: 200, text: 'ok\n' });
  expect(internalErrors()).toEqual([]);
}

// ---------------------------------------------------------------------------------------------
// Arbitraries

/** Strings a parser may choke on. */
const junkString: fc.Arbitrary<string> = fc.oneof(
  { weight: 4, arbitrary: fc.string({ maxLength: 40 }) },
  { weight: 2, arbitrary: fc.string({ unit: 'binary', maxLength: 40 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'grapheme', maxLength: 40 }) },
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      '',
      '\u0000',
      '\ud800',
      '\ufeff{}',
      '🦄'.repeat(3000),
      '__proto__',
      'constructor',
      'toString',
      '../../../../etc/passwd',
      '%00%ff',
      'v=0',
      'a.b.c',
      'A'.repeat(52),
      'fd00::1',
      `$\{jndi:ldap://127.0.0.1/x}`,
    ),
  },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 80_000 }).map((n) => 'x'.repeat(n)) },
);

/** Any JSON value, small, with junk strings. */
/** Mostly printable: Node's client refuses other bytes in headers (raw sockets send those). */
const headerValue = fc.oneof(
  { weight: 4, arbitrary: junkString.map((v) => v.replace(/[^\x20-\x7e]/g, '?')) },
  { weight: 1, arbitrary: junkString },
);

const junkValue: fc.Arbitrary<unknown> = fc.letrec<{ value: unknown }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    junkString,
    fc.integer(),
    fc.double(),
    fc.boolean(),
    fc.constant(null),
    fc.constantFrom(1e308, -0, 2 ** 53 + 1, -1),
    fc.array(tie('value'), { maxLength: 4 }),
    fc.dictionary(junkString, tie('value'), { maxKeys: 4 }),
  ),
})).value;

/** Deeply nested JSON text (arrays or objects). */
const deepJson = fc
  .tuple(fc.integer({ min: 100, max: 60_000 }), fc.boolean())
  .map(([depth, arrays]) =>
    arrays
      ? `${'['.repeat(depth)}${']'.repeat(depth)}`
      : `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`,
  );

/** A valid body, then one of many mutations of it, as the text sent. */
function mutatedBody(valid: fc.Arbitrary<Record<string, unknown>>): fc.Arbitrary<string> {
  return valid.chain((body) => {
    const keys = Object.keys(body);
    const text = JSON.stringify(body);
    const key = fc.constantFrom(...(keys.length ? keys : ['x']));
    return fc.oneof(
      { weight: 3, arbitrary: fc.constant(text) },
      {
        weight: 6,
        arbitrary: fc.tuple(key, junkValue).map(([k, v]) => JSON.stringify({ ...body, [k]: v })),
      },
      {
        weight: 2,
        arbitrary: key.map((k) => {
          const copy = { ...body };
          delete copy[k];
          return JSON.stringify(copy);
        }),
      },
      {
        weight: 2,
        arbitrary: fc
          .tuple(fc.constantFrom('__proto__', 'constructor', 'prototype', 'toString'), junkValue)
          .map(([k, v]) => `{${JSON.stringify(k)}:${JSON.stringify(v ?? null)},${text.slice(1)}`),
      },
      {
        weight: 1,
        arbitrary: key.map(
          (k) => `${text.slice(0, -1)},${JSON.stringify(k)}:{"__proto__":{"x":1}}}`,
        ),
      },
      { weight: 2, arbitrary: junkValue.map((v) => JSON.stringify(v) ?? 'null') },
      { weight: 1, arbitrary: deepJson },
      {
        weight: 1,
        arbitrary: fc.nat({ max: text.length }).map((n) => text.slice(0, n)),
      },
      { weight: 1, arbitrary: junkString.map((s) => `${text}${s}`) },
      { weight: 1, arbitrary: fc.constant(`\ufeff${text}`) },
    );
  });
}

/** Mutations of a real offer: lines dropped, doubled, swapped, rewritten, tricky lines added. */
function mutatedSdp(base: string, probePort: number): fc.Arbitrary<string> {
  const lines = base.split(/\r?\n/).filter((l) => l !== '');
  const candidate = `candidate:1 1 UDP 2130706431 ${PROBE_HOST} ${probePort} typ host`;
  const tricky = fc.constantFrom(
    'a=max-message-size:lots',
    'a=max-message-size:-1',
    'a=max-message-size:99999999999999999999999',
    'a=sctp-port:0',
    'a=sctp-port:70000',
    'a=sctp-port:x',
    'a=setup:bogus',
    'a=setup:active',
    'a=ice-ufrag:',
    'a=ice-pwd:',
    'a=ice-pwd:short',
    'a=ice-options:ice2,trickle',
    'a=ice-lite',
    'a=mid:',
    'a=group:BUNDLE 0 1 2 3',
    'a=fingerprint:sha-1 00:11',
    'a=fingerprint:sha-256 ZZ',
    'm=audio 9 UDP/TLS/RTP/SAVPF 111',
    'm=application 9 UDP/DTLS/SCTP webrtc-datachannel',
    'm=application 0 UDP/DTLS/SCTP webrtc-datachannel',
    'm=',
    'c=IN IP4 127.0.0.77',
    'c=IN IP6 ::ffff:127.0.0.77',
    'b=AS:-1',
    'a=rtpmap:111 opus/48000/2',
    'a=ssrc:1 cname:x',
    'a=end-of-candidates',
    `a=${candidate}`,
    ` a=${candidate}`,
    `a=candidate:1 1 udp 2130706431 ${PROBE_HOST} ${probePort} typ host generation 0`,
    `a=candidate:2 1 UDP 1 ${PROBE_HOST} ${probePort} typ srflx raddr 0.0.0.0 rport 0`,
    `a=Candidate:1 1 UDP 2130706431 ${PROBE_HOST} ${probePort} typ host`,
    `a=remote-candidates:1 ${PROBE_HOST} ${probePort}`,
    `a=x-${'y'.repeat(20_000)}`,
    'v=0',
    '\u0000',
  );
  type Edit = (ls: string[]) => string[];
  const at = (ls: string[], n: number) => (ls.length ? n % ls.length : 0);
  const edit: fc.Arbitrary<Edit> = fc.oneof(
    fc.nat().map(
      (n): Edit =>
        (ls) =>
          ls.filter((_, i) => i !== at(ls, n)),
    ),
    fc.nat().map(
      (n): Edit =>
        (ls) =>
          ls.flatMap((l, i) => (i === at(ls, n) ? [l, l] : [l])),
    ),
    fc.tuple(fc.nat(), fc.nat()).map(
      ([a, b]): Edit =>
        (ls) => {
          const out = [...ls];
          const i = at(ls, a);
          const j = at(ls, b);
          [out[i], out[j]] = [out[j] ?? '', out[i] ?? ''];
          return out;
        },
    ),
    fc.tuple(fc.nat(), junkString).map(
      ([n, s]): Edit =>
        (ls) =>
          ls.map((l, i) => (i === at(ls, n) ? l.replace(/([:=]).*$/, `$1${s}`) : l)),
    ),
    fc.tuple(fc.nat(), fc.oneof(fc.integer(), fc.constant(Number.NaN))).map(
      ([n, v]): Edit =>
        (ls) =>
          ls.map((l, i) => (i === at(ls, n) ? l.replace(/\d+/, String(v)) : l)),
    ),
    fc.tuple(fc.nat(), tricky).map(
      ([n, t]): Edit =>
        (ls) => {
          const out = [...ls];
          out.splice(at(ls, n) + 1, 0, t);
          return out;
        },
    ),
  );
  return fc
    .tuple(
      fc.array(edit, { minLength: 1, maxLength: 4 }),
      fc.constantFrom('\r\n', '\n', '\r', '\r\n\r\n'),
      fc.oneof({ weight: 6, arbitrary: fc.constant(-1) }, { weight: 1, arbitrary: fc.nat() }),
    )
    .map(([edits, eol, cut]) => {
      const text = edits.reduce((ls, e) => e(ls), lines).join(eol) + eol;
      return cut >= 0 ? text.slice(0, cut % (text.length + 1)) : text;
    });
}

// ---------------------------------------------------------------------------------------------

describe('regression #12', () => {
  it('answers each offer libdatachannel refuses with 400 bad-offer and lives past the 5 s answer timer', async () => {
    const offers = refusedOffers(offer, node.certificate.fingerprint);
    for (const [name, bad] of Object.entries(offers)) {
      const reply = await signedRequest(gateway.url, signer, 'POST', '/v1/connect', {
        offer: bad,
        record: signer.record,
      });
      const code = 'error' in reply ? reply.error : JSON.parse(reply.text).error?.code;
      expect({ name, status: 'error' in reply ? 0 : reply.status, code }).toEqual({
        name,
        status: 400,
        code: 'bad-offer',
      });
    }
    // The process died ~5 s after such a 400 (an unhandled rejection of the answer timer).
    await new Promise((resolve) => setTimeout(resolve, 6500));
    await expectServing();
    expect(gateway.output()).not.toMatch(/unhandled|Unhandled/);
    expect(await honestRoundTrip(gateway.url, 'after the refused offers')).toBe(
      'after the refused offers',
    );
  }, 60_000);
});

describe('HTTP', () => {
  it('answers every mutated body, header and path with a status < 500 and a JSON error', async () => {
    const other = await identityOf(
      await (async () => {
        const pair = await generateNodeKeyPair();
        return nodeKeyFromCryptoKeys(pair.privateKey, pair.publicKey);
      })(),
    );
    // A registered node that has no session and no push: dials to it end `offline` at once.
    // (Nothing here ever dials an identity the fuzz registered with a push endpoint, so the
    // gateway never posts a push anywhere.)
    const target = await makeNodeIdentity();
    const targetSigner = await signerFor(gateway.url, target);
    const registered = await signedRequest(gateway.url, targetSigner, 'POST', '/v1/register', {
      record: targetSigner.record,
      push: null,
    });
    expect(registered).toMatchObject({ status: 200 });

    const dialId = fc.oneof(
      fc.constant('A'.repeat(22)),
      fc.stringMatching(/^[A-Za-z0-9_-]{16,64}$/),
    );
    const pushSubscription = fc.oneof(
      fc.constant(null),
      fc.record({
        endpoint: fc.constantFrom(
          'https://127.0.0.1:9/push/1',
          'https://[::1]/push',
          'http://127.0.0.1/push',
          'https://user:pw@127.0.0.1/push',
          'not a url',
        ),
        keys: fc.record({
          p256dh: fc.constant(encodeBase64url(new Uint8Array(65).fill(4))),
          auth: fc.constant(encodeBase64url(new Uint8Array(16))),
        }),
      }),
    );
    const to = fc.oneof(
      fc.constant(target.identity.id),
      fc.constant(target.identity.ip6),
      fc.constant(target.identity.id.toUpperCase()),
      fc.constant(other.id),
      fc.constant(node.identity.id),
      junkString,
    );
    const record = fc.oneof(
      { weight: 5, arbitrary: fc.constant(signer.record) },
      { weight: 1, arbitrary: fc.constant(targetSigner.record) },
      { weight: 1, arbitrary: junkString },
    );
    interface Door {
      method: string;
      path: fc.Arbitrary<string>;
      body?: fc.Arbitrary<string>;
    }
    const doors: Door[] = [
      {
        method: 'POST',
        path: fc.constant('/v1/connect'),
        body: mutatedBody(fc.record({ offer: fc.constant(offer), record })),
      },
      {
        method: 'POST',
        path: fc.constant('/v1/register'),
        body: mutatedBody(fc.record({ record, push: pushSubscription })),
      },
      {
        method: 'POST',
        path: fc.constant('/v1/dial'),
        body: mutatedBody(fc.record({ to, offer: fc.constant(offer), record })),
      },
      { method: 'GET', path: dialId.map((d) => `/v1/dials/${d}`) },
      {
        method: 'POST',
        path: dialId.map((d) => `/v1/dials/${d}/answer`),
        body: mutatedBody(fc.record({ answer: fc.constant(offer), record })),
      },
      {
        method: 'POST',
        path: dialId.map((d) => `/v1/dials/${d}/reject`),
        body: mutatedBody(
          fc.record({
            reason: fc.constantFrom('declined', 'identity', 'busy'),
            message: fc.oneof(fc.string({ maxLength: 600 }), fc.constant(undefined)),
          }),
        ),
      },
      { method: 'GET', path: fc.constantFrom('/v1/info', '/healthz', '/metrics') },
      {
        method: 'GET',
        path: fc.oneof(
          fc.constantFrom(
            '/',
            '/index.html',
            '/app.js',
            '/../../../../etc/passwd',
            '/%2e%2e/%2e%2e/%2e%2e/etc/passwd',
            '/..%2f..%2f..%2fetc%2fpasswd',
            '/....//....//etc/passwd',
            '/%252e%252e/etc/passwd',
            '/index.html%00.js',
            '/%c0%ae%c0%ae/etc/passwd',
            '/\\..\\..\\etc\\passwd',
            `/${'a/'.repeat(2000)}`,
          ),
          fc.webPath(),
        ),
      },
      {
        method: 'GET',
        path: fc.oneof(
          fc.constantFrom(
            '/v1/',
            '/v1/dials/',
            '/v1/dials/short',
            '/v1//connect',
            '/v1/connect/',
            '/v1/%2e%2e/%2e%2e/etc/passwd',
            '/v1/..%2f..%2fetc%2fpasswd',
            '//v1/info',
            '/v1/info?x=1#y',
            '/v1/%00',
            '/v1/%ff%fe',
            `/v1/${'a'.repeat(8000)}`,
          ),
          fc.webPath().map((p) => `/v1${p.startsWith('/') ? p : `/${p}`}`),
        ),
      },
    ];
    const authorization = fc.oneof(
      { weight: 8, arbitrary: fc.constant('sign') },
      { weight: 1, arbitrary: fc.constant(undefined) },
      { weight: 1, arbitrary: headerValue },
      {
        weight: 1,
        arbitrary: fc.constantFrom(
          'vapid t=a.b.c, k=AAAA',
          `vapid t=${'a'.repeat(2000)}, k=${'B'.repeat(87)}`,
          'Bearer x',
          'vapid',
          'vapid t=, k=',
          'vapid k=x, t=y, t=z',
        ),
      },
      { weight: 1, arbitrary: fc.constantFrom('wrong-audience', 'expired', 'forged', 'future') },
    );
    const contentType = fc.constantFrom(
      'application/json',
      'application/json; charset=utf-8',
      'APPLICATION/JSON',
      'application/json; charset=utf-16',
      'text/plain',
      'application/jsonp',
      'multipart/form-data; boundary=x',
      '',
      undefined,
    );
    const method = fc.oneof(
      { weight: 10, arbitrary: fc.constant(undefined) },
      {
        weight: 1,
        arbitrary: fc.constantFrom(
          'PUT',
          'DELETE',
          'PATCH',
          'OPTIONS',
          'HEAD',
          'GET',
          'POST',
          'TRACE',
        ),
      },
    );
    const extraHeaders = fc.dictionary(
      fc.constantFrom(
        'x-forwarded-for',
        'accept',
        'origin',
        'cookie',
        'accept-encoding',
        'expect',
        'x-junk',
        'range',
      ),
      headerValue,
      { maxKeys: 3 },
    );

    let sent = 0;
    let clientRefused = 0;
    const parserAnswers = new Map<number, number>();
    const statuses = new Map<number, number>();
    const resolveAuth = async (choice: string | undefined): Promise<string | undefined> => {
      const key = node.identity.key;
      if (choice === 'sign') return signer.auth();
      if (choice === 'wrong-audience') return createAuthorization(key, 'http://elsewhere.test');
      if (choice === 'expired')
        return createAuthorization(key, gateway.url, {
          nowS: Math.floor(Date.now() / 1000) - 3600,
        });
      if (choice === 'future')
        return createAuthorization(key, gateway.url, {
          nowS: Math.floor(Date.now() / 1000) + 3600,
        });
      if (choice === 'forged')
        return (await signer.auth()).replace(/k=.*$/, `k=${encodeBase64url(other.key.publicKey)}`);
      return choice;
    };

    await fc.assert(
      fc.asyncProperty(
        fc.nat({ max: doors.length - 1 }).chain((i) => {
          const door = doors[i] as Door;
          return fc.record({
            door: fc.constant(i),
            path: door.path,
            body: door.body ?? fc.constant(undefined),
          });
        }),
        authorization,
        contentType,
        method,
        extraHeaders,
        fc.nat(),
        async ({ door, path, body }, auth, type, overrideMethod, extra, source) => {
          const m = overrideMethod ?? (doors[door] as Door).method;
          const headers: Record<string, string> = { ...extra };
          const a = await resolveAuth(auth);
          if (a !== undefined) headers.authorization = a;
          if (type !== undefined && body !== undefined) headers['content-type'] = type;
          const reply: HttpOutcome = await httpRequest(gateway.url, {
            method: m,
            path,
            headers,
            ...(body !== undefined && m !== 'GET' && m !== 'HEAD' ? { body } : {}),
            localAddress: loopbackSource(source, 2, 40),
          });
          sent++;
          if ('error' in reply) {
            if (reply.error.startsWith('client refused')) {
              clientRefused++;
              return;
            }
            // A connection whose body the gateway refused (413), or whose header block Node's
            // parser refused (431, over 16 KiB), may be closed before the client has read it.
            const headerBytes = Object.entries(headers).reduce(
              (n, [k, v]) => n + Buffer.byteLength(k) + Buffer.byteLength(v) + 4,
              Buffer.byteLength(path),
            );
            const large = Buffer.byteLength(body ?? '') > 64 * 1024 || headerBytes > 16 * 1024;
            expect(
              large && /ECONNRESET|EPIPE|socket hang up/.test(reply.error),
              `${m} ${path}: ${reply.error}`,
            ).toBe(true);
            return;
          }
          statuses.set(reply.status, (statuses.get(reply.status) ?? 0) + 1);
          if (fromHttpParser(reply)) {
            parserAnswers.set(reply.status, (parserAnswers.get(reply.status) ?? 0) + 1);
            return;
          }
          expect(replyProblem(reply, m), `${m} ${path} → ${reply.status}`).toBeUndefined();
          expect(reply.text, `${m} ${path} served a file from outside the PWA`).not.toMatch(
            /root:x:0:0|BEGIN (EC )?PRIVATE KEY/,
          );
        },
      ),
      fcOptions(RUNS * 3),
    );
    console.log(
      `fuzz-gateway HTTP: ${sent} requests (${clientRefused} refused by Node's client), statuses ${JSON.stringify(Object.fromEntries(statuses))}, of which answered by Node's HTTP parser before the gateway saw them (no JSON body): ${JSON.stringify(Object.fromEntries(parserAnswers))}; rss ${mib(rssBytes(pid))}`,
    );
    await expectServing();
  }, 150_000);

  it('answers every mutated SDP offer on /v1/connect, and never contacts an address an offer names', async () => {
    const probePort = probe.address().port;
    const statuses = new Map<string, number>();
    await fc.assert(
      fc.asyncProperty(mutatedSdp(offer, probePort), fc.nat(), async (sdp, source) => {
        const reply = await signedRequest(
          gateway.url,
          signer,
          'POST',
          '/v1/connect',
          { offer: sdp, record: signer.record },
          loopbackSource(source, 2, 40),
        );
        if ('error' in reply) throw new Error(`no answer to an offer: ${reply.error}\n${sdp}`);
        const code = reply.status === 200 ? 'ok' : JSON.parse(reply.text).error?.code;
        statuses.set(`${reply.status} ${code}`, (statuses.get(`${reply.status} ${code}`) ?? 0) + 1);
        expect(replyProblem(reply, 'POST'), `offer:\n${JSON.stringify(sdp)}`).toBeUndefined();
      }),
      fcOptions(RUNS),
    );
    console.log(
      `fuzz-gateway SDP: ${JSON.stringify(Object.fromEntries(statuses))}, rss ${mib(rssBytes(pid))}`,
    );
    // Past the answer timer of every refused offer, then: still there, nothing probed.
    await new Promise((resolve) => setTimeout(resolve, 5500));
    await expectServing();
    expect(probed).toEqual([]);
  }, 150_000);

  it('answers or closes on raw request framing: lying lengths, chunked garbage, bad header bytes, slow bodies', async () => {
    const host = new URL(gateway.url).host;
    const token = () => signer.auth();
    const body = JSON.stringify({ offer, record: signer.record });
    const requestLine = fc.constantFrom(
      'POST /v1/connect HTTP/1.1',
      'POST /v1/register HTTP/1.1',
      'POST /v1/dial HTTP/1.1',
      'GET /v1/info HTTP/1.1',
      'GET /healthz HTTP/1.0',
      'POST /v1/dials/AAAAAAAAAAAAAAAAAAAAAA/answer HTTP/1.1',
    );
    const framing = fc.oneof(
      // Content-Length larger than the body: the gateway waits; the client gives up.
      fc
        .nat({ max: 100_000 })
        .map((extra) => ({ cl: `${body.length + 1 + extra}`, te: undefined, body })),
      // Smaller: the rest is read as the next request.
      fc.nat({ max: body.length - 1 }).map((n) => ({ cl: `${n}`, te: undefined, body })),
      fc
        .constantFrom('-1', 'abc', '1e3', '0x10', '99999999999999999999', '1, 2', ' 10 ')
        .map((cl) => ({
          cl,
          te: undefined,
          body,
        })),
      fc
        .constantFrom('chunked', 'gzip, chunked', 'chunked, identity', 'bogus')
        .chain((te) =>
          fc
            .oneof(
              fc.constant(`${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`),
              fc.constant(`zz\r\n${body}\r\n0\r\n\r\n`),
              fc.constant(`ffffffffffffffff\r\n${body}`),
              fc.constant(`5\r\nabc\r\n0\r\n\r\n`),
              fc.string({ unit: 'binary', maxLength: 200 }),
            )
            .map((b) => ({ cl: undefined, te, body: b })),
        ),
      // Both: request smuggling shape.
      fc.constant({ cl: `${body.length}`, te: 'chunked', body }),
    );
    const headerLine = fc.oneof(
      fc.constantFrom(
        'x-junk: \u0000\u0001',
        'x-junk:\tvalue',
        ' folded: line',
        'no-colon-here',
        ': empty-name',
        `x-big: ${'b'.repeat(20_000)}`,
        'content-type: application/json',
        'content-type: text/plain',
        'authorization: vapid t=a.b.c, k=',
        'host: evil.example',
        'expect: 100-continue',
        'connection: upgrade\r\nupgrade: websocket',
      ),
      fc
        .string({ unit: 'binary', maxLength: 80 })
        .map((s) => `x-fuzz: ${s.replace(/[\r\n]/g, '')}`),
    );
    const statuses = new Map<string, number>();
    let gatewayAnswers = 0;
    await fc.assert(
      fc.asyncProperty(
        requestLine,
        framing,
        fc.array(headerLine, { maxLength: 3 }),
        fc.boolean(),
        fc.nat(),
        async (line, f, extra, signed, source) => {
          const head = [
            line,
            `host: ${host}`,
            'content-type: application/json',
            ...(signed ? [`authorization: ${await token()}`] : []),
            ...(f.cl !== undefined ? [`content-length: ${f.cl}`] : []),
            ...(f.te !== undefined ? [`transfer-encoding: ${f.te}`] : []),
            ...extra,
            'connection: close',
          ].join('\r\n');
          const out = await rawHttp(gateway.url, [`${head}\r\n\r\n`, f.body], {
            localAddress: loopbackSource(source, 41, 80),
            timeoutMs: 1500,
          });
          const status = statusLine(out.text);
          const key =
            status === undefined
              ? out.closedByServer
                ? 'closed'
                : 'no answer yet'
              : String(status);
          statuses.set(key, (statuses.get(key) ?? 0) + 1);
          if (status === undefined) return; // dropped, or still waiting for the promised bytes
          expect(status, out.text.slice(0, 300)).toBeLessThan(500);
          // Answers the gateway itself gave (not Node's parser) carry a JSON error body.
          if (/content-type: application\/json/i.test(out.text) && status >= 400) {
            gatewayAnswers++;
            const bodyText = out.text.slice(out.text.indexOf('\r\n\r\n') + 4);
            expect(
              () => JSON.parse(bodyText.split(/\r\n(?=HTTP\/1)/)[0] ?? ''),
              bodyText,
            ).not.toThrow();
          }
        },
      ),
      fcOptions(Math.ceil(RUNS / 2)),
    );
    // Slow bodies: a byte every 100 ms from several addresses at once; each gets its answer
    // (or is cut off by the gateway), and meanwhile an honest request is served.
    const slow = Array.from({ length: 8 }, (_, i) =>
      rawHttp(
        gateway.url,
        [
          `POST /v1/register HTTP/1.1\r\nhost: ${host}\r\ncontent-type: application/json\r\ncontent-length: 20\r\n\r\n`,
          ...'{"record":"x","pu'.split(''),
        ],
        { localAddress: loopbackSource(i, 81, 90), timeoutMs: 4000, gapMs: 100 },
      ),
    );
    await expectServing();
    for (const s of await Promise.all(slow)) {
      const status = statusLine(s.text);
      if (status !== undefined) expect(status).toBeLessThan(500);
    }
    console.log(
      `fuzz-gateway framing: ${JSON.stringify(Object.fromEntries(statuses))} (${gatewayAnswers} JSON errors from the gateway), rss ${mib(rssBytes(pid))}`,
    );
    await expectServing();
  }, 150_000);
});

describe('ctl', () => {
  it('answers every mutated ctl message (an error for each invalid one) and keeps the session', async () => {
    const probePort = probe.address().port;
    // A second raw session: the callee of the fuzz's dials. It records what reaches it and
    // applies nothing (no ICE towards anything an offer or candidate names).
    const callee = await openRawCtl(gateway.url, await makeNodeIdentity());
    const candidate = {
      candidate: `candidate:1 1 UDP 2130706431 ${PROBE_HOST} ${probePort} typ host`,
      sdpMid: '0',
      sdpMLineIndex: 0,
    };
    const did = fc.oneof(
      fc.constant('D'.repeat(22)),
      fc.stringMatching(/^[A-Za-z0-9_-]{16,64}$/),
      junkString,
    );
    const to = fc.oneof(
      { weight: 3, arbitrary: fc.constant(callee.signer.id) },
      { weight: 1, arbitrary: fc.constant(node.identity.ip6) },
      { weight: 1, arbitrary: junkString },
    );
    const message = fc.oneof(
      mutatedBody(fc.record({ t: fc.constant('ping'), n: fc.integer() })),
      mutatedBody(
        fc.record({
          t: fc.constant('dial'),
          dialId: did,
          to,
          offer: fc.oneof(fc.constant(offer), mutatedSdp(offer, probePort)),
          record: fc.constant(signer.record),
        }),
      ),
      mutatedBody(
        fc.record({
          t: fc.constant('candidate'),
          dialId: did,
          candidate: fc.oneof(
            fc.constant(candidate),
            fc.constant(null),
            fc.record({ candidate: junkString, sdpMid: junkString, sdpMLineIndex: fc.integer() }),
          ),
        }),
      ),
      mutatedBody(
        fc.record({
          t: fc.constant('answer'),
          dialId: did,
          answer: fc.constant(offer),
          record: fc.constant(signer.record),
        }),
      ),
      mutatedBody(
        fc.record({
          t: fc.constant('reject'),
          dialId: did,
          reason: fc.constantFrom('declined', 'identity', 'busy', 'other'),
          message: junkString,
        }),
      ),
      mutatedBody(fc.record({ t: fc.constant('cancel'), dialId: did })),
      mutatedBody(fc.record({ t: junkString })),
      fc.uint8Array({ maxLength: 300 }),
    );
    let sessions = 0;
    let messages = 0;
    let invalidSent = 0;
    let session: RawCtl | undefined;
    let pings = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(message, { minLength: 10, maxLength: 40 }), async (batch) => {
        // One session per batch: a session is closed after 50 invalid messages, by design.
        session?.close();
        session = await openRawCtl(gateway.url, node);
        sessions++;
        const s = session;
        let invalid = 0;
        for (const m of batch) {
          const text = typeof m === 'string' ? m : undefined;
          if (text !== undefined && Buffer.byteLength(text) > 200_000) continue; // over SCTP's max
          if (text === undefined || !parseMessage(nodeToGatewaySchema, text).ok) invalid++;
          s.ctl.send(typeof m === 'string' ? m : new Uint8Array(m));
          messages++;
        }
        invalidSent += invalid;
        const n = 1_000_000 + ++pings;
        s.ctl.send(JSON.stringify({ t: 'ping', n }));
        const ponged = await waitFor(
          () => s.replies.some((r) => r.t === 'pong' && r.n === n),
          15_000,
        );
        expect(ponged, `no pong after ${batch.length} messages; closed: ${s.closed}`).toBe(true);
        for (const r of s.replies)
          expect(gatewayToNodeSchema.safeParse(r).success, JSON.stringify(r).slice(0, 300)).toBe(
            true,
          );
        const invalidReplies = s.replies.filter((r) => r.t === 'error' && r.code === 'invalid');
        expect(invalidReplies.length).toBe(invalid);
      }),
      fcOptions(Math.max(5, Math.ceil(RUNS / 12))),
    );
    session?.close();
    for (const r of callee.replies)
      expect(gatewayToNodeSchema.safeParse(r).success, JSON.stringify(r).slice(0, 300)).toBe(true);
    console.log(
      `fuzz-gateway ctl: ${messages} messages (${invalidSent} invalid) on ${sessions} sessions; the callee got ${callee.replies.length}; rss ${mib(rssBytes(pid))}`,
    );
    callee.close();
    await expectServing();
    expect(probed).toEqual([]);
  }, 150_000);
});

describe('UDP', () => {
  it('answers or drops every random and mutated datagram at the TURN and WebRTC ports', async () => {
    const turnPort = gateway.turnPort ?? 0;
    const probePort = probe.address().port;
    const toProbe = { address: PROBE_HOST, port: probePort };
    const valid: Uint8Array[] = [
      new MessageBuilder(Method.BINDING, 'request').build(),
      new MessageBuilder(Method.BINDING, 'request')
        .add(Software, 'fuzz')
        .build({ fingerprint: true }),
      new MessageBuilder(Method.ALLOCATE, 'request').add(RequestedTransport, 17).build(),
      new MessageBuilder(Method.REFRESH, 'request').add(Lifetime, 600).build(),
      new MessageBuilder(Method.CREATE_PERMISSION, 'request').add(XorPeerAddress, toProbe).build(),
      new MessageBuilder(Method.CHANNEL_BIND, 'request')
        .add(ChannelNumber, 0x4001)
        .add(XorPeerAddress, toProbe)
        .build(),
      new MessageBuilder(Method.SEND, 'indication')
        .add(XorPeerAddress, toProbe)
        .add(Data, new Uint8Array(64))
        .build(),
      encodeChannelData({ channel: 0x4001, data: new Uint8Array(100) }),
      encodeChannelData({ channel: 0x4fff, data: new Uint8Array(3) }, { pad: true }),
    ];
    const mutation = fc.oneof(
      fc.uint8Array({ maxLength: 1500 }),
      fc
        .tuple(
          fc.constantFrom(0, 1, 2, 3, 20, 22, 63, 64, 79, 128, 255),
          fc.uint8Array({ maxLength: 200 }),
        )
        .map(([first, rest]) => Uint8Array.from([first, ...rest])),
      fc
        .tuple(fc.constantFrom(...valid), fc.array(fc.nat(), { minLength: 1, maxLength: 8 }))
        .map(([v, bits]) => {
          const b = v.slice();
          for (const bit of bits) {
            const i = bit % (b.length * 8);
            b[i >> 3] = (b[i >> 3] ?? 0) ^ (1 << (i & 7));
          }
          return b;
        }),
      fc.tuple(fc.constantFrom(...valid), fc.nat()).map(([v, n]) => v.slice(0, n % (v.length + 1))),
      fc
        .tuple(fc.constantFrom(...valid), fc.uint8Array({ minLength: 1, maxLength: 64 }))
        .map(([v, extra]) => Uint8Array.from([...v, ...extra])),
      // The message (or ChannelData) length field lies.
      fc.tuple(fc.constantFrom(...valid), fc.integer({ min: 0, max: 0xffff })).map(([v, len]) => {
        const b = v.slice();
        new DataView(b.buffer).setUint16(2, len);
        return b;
      }),
      // The first attribute's length lies.
      fc.tuple(fc.constantFrom(...valid), fc.integer({ min: 0, max: 0xffff })).map(([v, len]) => {
        const b = v.slice();
        if (b.length >= 24) new DataView(b.buffer).setUint16(22, len);
        return b;
      }),
    );
    const datagrams = fc.sample(fc.tuple(mutation, fc.boolean(), fc.nat(3)), {
      seed: SEED,
      numRuns: RUNS * 20,
    });
    const sockets = await Promise.all(
      [0, 1, 2, 3].map(async (i) => {
        const s = createSocket('udp4');
        s.on('message', () => {});
        await new Promise<void>((resolve) => s.bind(0, loopbackSource(i, 91, 94), () => resolve()));
        return s;
      }),
    );
    for (let i = 0; i < datagrams.length; i += 100) {
      await Promise.all(
        datagrams
          .slice(i, i + 100)
          .map(
            ([bytes, turn, which]) =>
              new Promise<void>((resolve) =>
                (sockets[which] as Socket).send(
                  bytes,
                  turn ? turnPort : gateway.udpPort,
                  '127.0.0.1',
                  () => resolve(),
                ),
              ),
          ),
      );
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    // The TURN server still answers a Binding from a fresh source.
    const fresh = sockets[0] as Socket;
    const answered = new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), 5000);
      fresh.on('message', (m) => {
        if (m.length >= 20 && m.readUInt16BE(0) === 0x0101) {
          clearTimeout(timer);
          resolve(true);
        }
      });
    });
    fresh.send(new MessageBuilder(Method.BINDING, 'request').build(), turnPort, '127.0.0.1');
    expect(await answered).toBe(true);
    for (const s of sockets) s.close();
    console.log(`fuzz-gateway UDP: ${datagrams.length} datagrams, rss ${mib(rssBytes(pid))}`);
    await expectServing();
    expect(probed).toEqual([]);
    expect(gateway.output()).not.toMatch(/TURN: (a datagram|a request|a relayed)/);
  }, 120_000);
});

describe('afterwards', () => {
  it('the same process serves a real dial, with its memory under the bound', async () => {
    await expectServing();
    expect(await honestRoundTrip(gateway.url, 'still here')).toBe('still here');
    const rss = rssBytes(pid);
    console.log(`fuzz-gateway: rss after the fuzz ${mib(rss)} (bound ${mib(RSS_BOUND)})`);
    expect(rss).toBeLessThan(RSS_BOUND);
    expect(probed).toEqual([]);
    expect(gateway.output()).not.toMatch(/unhandled|Unhandled/);
    expect(internalErrors()).toEqual([]);
    const errors = errorLogLines();
    console.log(
      `fuzz-gateway: ${errors.length} error lines in the gateway's log${errors.length ? `, e.g. ${errors[0]?.slice(0, 300)}` : ''}`,
    );
  }, 60_000);
});
