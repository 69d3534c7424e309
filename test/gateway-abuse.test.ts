/**
 * Bad input at every door of a real gateway process: malformed, oversized and badly signed
 * requests on HTTP, garbage on `ctl`. Each gets a clear error; the gateway keeps serving.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type GatewayProcess, startGateway } from '../e2e/support/gateway-process.ts';
import {
  createAuthorization,
  createNodeRecord,
  encodeBase64url,
  generateNodeKeyPair,
  identityOf,
  nodeKeyFromCryptoKeys,
} from '../src/core/identity/index.ts';
import { channelOpen, type DataChannelLike } from '../src/core/node/rtc.ts';
import { makeNodeIdentity, startNodeNode } from './support/node-node.ts';

let gateway: GatewayProcess;
beforeAll(async () => {
  gateway = await startGateway();
});
afterAll(async () => {
  await gateway.stop();
});

async function post(path: string, body: string, headers: Record<string, string> = {}) {
  const res = await fetch(`${gateway.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body,
  });
  const json = (await res.json().catch(() => ({}))) as {
    error?: { code?: string; message?: string };
  };
  return { status: res.status, code: json.error?.code, message: json.error?.message };
}

async function expectHealthy(): Promise<void> {
  expect(await (await fetch(`${gateway.url}/healthz`)).text()).toBe('ok\n');
  const info = (await (await fetch(`${gateway.url}/v1/info`)).json()) as { id: string };
  expect(info.id).toBe(gateway.id);
}

describe('HTTP', () => {
  it('refuses each kind of bad request with its own error', async () => {
    const node = await makeNodeIdentity();
    const auth = () => createAuthorization(node.identity.key, gateway.url);
    const record = await createNodeRecord(node.identity, {
      fingerprints: [node.certificate.fingerprint],
    });
    const offer = `v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=fingerprint:${node.certificate.fingerprint}\r\n`;
    const pair = await generateNodeKeyPair();
    const other = await identityOf(await nodeKeyFromCryptoKeys(pair.privateKey, pair.publicKey));

    expect(await post('/v1/connect', '{}')).toMatchObject({ status: 401, code: 'token-malformed' });
    const replayed = await auth();
    expect((await post('/v1/connect', 'not json', { authorization: replayed })).code).toBe(
      'malformed-json',
    );
    expect(await post('/v1/connect', '{}', { authorization: replayed })).toMatchObject({
      status: 401,
      code: 'token-replayed',
    });
    expect(
      await post('/v1/connect', '{}', {
        authorization: await createAuthorization(node.identity.key, 'http://elsewhere.test'),
      }),
    ).toMatchObject({ status: 401, code: 'token-wrong-audience' });
    const old = await createAuthorization(node.identity.key, gateway.url, {
      nowS: Math.floor(Date.now() / 1000) - 900,
    });
    expect(await post('/v1/connect', '{}', { authorization: old })).toMatchObject({
      status: 401,
      code: 'token-expired',
    });
    const forged = (await auth()).replace(/k=.*$/, `k=${encodeBase64url(other.key.publicKey)}`);
    expect(await post('/v1/connect', '{}', { authorization: forged })).toMatchObject({
      status: 401,
      code: 'token-bad-signature',
    });
    expect(
      await post('/v1/connect', 'x'.repeat(100_000), { authorization: await auth() }),
    ).toMatchObject({ status: 413, code: 'too-large' });
    const text = await fetch(`${gateway.url}/v1/connect`, {
      method: 'POST',
      headers: { 'content-type': 'text/plain', authorization: await auth() },
      body: '{}',
    });
    expect(text.status).toBe(415);
    expect(
      await post('/v1/connect', JSON.stringify({ offer: 5 }), { authorization: await auth() }),
    ).toMatchObject({ status: 400, code: 'invalid' });
    const othersRecord = await createNodeRecord(other, {
      fingerprints: [node.certificate.fingerprint],
    });
    expect(
      await post('/v1/connect', JSON.stringify({ offer, record: othersRecord }), {
        authorization: await auth(),
      }),
    ).toMatchObject({
      status: 403,
      code: 'record-wrong-peer',
    });
    const unlisted = offer.replace(
      /a=fingerprint:.*/,
      `a=fingerprint:sha-256 ${'00:'.repeat(31)}00`,
    );
    expect(
      await post('/v1/connect', JSON.stringify({ offer: unlisted, record }), {
        authorization: await auth(),
      }),
    ).toMatchObject({
      status: 403,
      code: 'record-fingerprint-not-listed',
    });
    expect(
      await post('/v1/connect', JSON.stringify({ offer, record }), { authorization: await auth() }),
    ).toMatchObject({
      status: 400,
      code: 'bad-offer',
    });
    expect(
      await post('/v1/dial', JSON.stringify({ to: 'a'.repeat(52), offer, record }), {
        authorization: await auth(),
      }),
    ).toMatchObject({
      status: 404,
      code: 'not-found',
    });
    expect(
      await post('/v1/dial', JSON.stringify({ to: 'nowhere', offer, record }), {
        authorization: await auth(),
      }),
    ).toMatchObject({
      status: 400,
      code: 'invalid',
    });
    await expectHealthy();
  });

  it('survives a bounded loop of random bodies, paths and headers', async () => {
    const node = await makeNodeIdentity();
    const junk = (n: number) =>
      Buffer.from(crypto.getRandomValues(new Uint8Array(n))).toString('latin1');
    const bodies = [
      () => junk(Math.floor(Math.random() * 2000)),
      () => JSON.stringify({ offer: junk(50), record: junk(50) }),
      () => JSON.stringify({ to: junk(10), offer: 'v=0', record: 'a.b.c' }),
      () => '['.repeat(5000),
      () => JSON.stringify({ offer: 'v=0\r\n'.repeat(5000), record: 'x'.repeat(9000) }),
    ];
    const statuses = new Set<number>();
    for (let i = 0; i < 300; i++) {
      const path =
        ['/v1/connect', '/v1/dial', '/v1/info', `/v1/${junk(3)}`, '/metrics'][i % 5] ?? '/';
      const headers: Record<string, string> = { 'content-type': 'application/json' };
      if (i % 3 === 0)
        headers.authorization = await createAuthorization(node.identity.key, gateway.url);
      if (i % 3 === 1)
        headers.authorization = `vapid t=${junk(20).replace(/[^\w.]/g, 'a')}, k=${'A'.repeat(87)}`;
      const body = bodies[i % bodies.length]?.() ?? '';
      const res = await fetch(`${gateway.url}${encodeURI(path)}`, {
        method: 'POST',
        headers,
        body,
      }).catch(() => undefined);
      if (res) {
        statuses.add(res.status);
        await res.arrayBuffer();
      }
    }
    expect([...statuses].every((s) => s >= 400 && s < 500)).toBe(true);
    await expectHealthy();
  });
});

describe('ctl', () => {
  it('answers each invalid message with an error and keeps routing real calls', async () => {
    // A gateway of its own: the loops above spent this address's connect allowance.
    await gateway.stop();
    gateway = await startGateway();
    const node = await makeNodeIdentity();
    const pc = node.rtc.createPeerConnection({ iceServers: [] });
    const ctl: DataChannelLike = pc.createDataChannel('ctl', { negotiated: true, id: 0 });
    await pc.setLocalDescription();
    const res = await fetch(`${gateway.url}/v1/connect`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        authorization: await createAuthorization(node.identity.key, gateway.url),
      },
      body: JSON.stringify({
        offer: pc.localDescription?.sdp,
        record: await createNodeRecord(node.identity, {
          fingerprints: [node.certificate.fingerprint],
        }),
      }),
    });
    expect(res.status).toBe(200);
    const { answer } = (await res.json()) as { answer: string };
    await pc.setRemoteDescription({ type: 'answer', sdp: answer });
    await channelOpen(ctl, 10_000);
    const replies: { t: string; code?: string; n?: number }[] = [];
    ctl.addEventListener('message', (ev) => replies.push(JSON.parse(String(ev.data))));

    const garbage = [
      'not json',
      '{"t":"nope"}',
      '{"t":"dial"}',
      JSON.stringify({ t: 'dial', dialId: 'short', to: 'x', offer: 'v=0', record: 'r' }),
      JSON.stringify({ t: 'candidate', dialId: 'A'.repeat(22), candidate: { candidate: 5 } }),
      JSON.stringify({ t: 'ping', n: 'one' }),
      'x'.repeat(70_000),
      '[]',
      'null',
    ];
    for (const g of garbage) ctl.send(g);
    // A message about a dial that does not exist is refused too, but is not invalid.
    ctl.send(
      JSON.stringify({
        t: 'answer',
        dialId: 'B'.repeat(22),
        answer: 'v=0 long enough',
        record: 'a.b.c.d.e.f',
      }),
    );
    ctl.send(JSON.stringify({ t: 'ping', n: 7 }));
    await expect.poll(() => replies.some((r) => r.t === 'pong' && r.n === 7)).toBe(true);
    expect(replies.filter((r) => r.t === 'error' && r.code === 'invalid')).toHaveLength(
      garbage.length,
    );
    expect(replies.some((r) => r.t === 'error' && r.code === 'unknown-dial')).toBe(true);

    // The gateway still routes calls between real nodes.
    const a = await startNodeNode(gateway.url);
    const b = await startNodeNode(gateway.url);
    const link = await a.node.connect(b.identity.id);
    expect(link.isOpen).toBe(true);
    a.node.stop();
    b.node.stop();
    pc.close();
    await expectHealthy();
  });
});
