/**
 * Push-woken dials through a real gateway process and a local push service, with Node mesh
 * nodes: the HTTP-only endpoints (register, GET a dial, answer, reject), a woken node taking
 * its call on the session it opens, subscriptions the push service says are gone, and the
 * gateway refusing private push endpoints unless told otherwise.
 */
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type GatewayProcess, startGateway } from '../e2e/support/gateway-process.ts';
import { PushService, type TestSubscription } from '../e2e/support/push-service.ts';
import { GatewayApi, GatewayHttpError } from '../src/core/api/index.ts';
import {
  createAuthorization,
  createNodeRecord,
  type NodeIdentity,
} from '../src/core/identity/index.ts';
import { DialError } from '../src/core/node/errors.ts';
import { type DialProgress, MeshNode } from '../src/core/node/mesh-node.ts';
import { channelOpen } from '../src/core/node/rtc.ts';
import {
  type PendingDialResponse,
  parseValue,
  pushPayloadSchema,
} from '../src/core/protocol/messages.ts';
import { makeNodeIdentity, startNodeNode } from './support/node-node.ts';

let gateway: GatewayProcess;
let push: PushService;
beforeAll(async () => {
  push = await PushService.start();
  gateway = await startGateway({ args: ['--push-allow-private', '--dial-timeout', '8s'] });
});
afterAll(async () => {
  await gateway.stop();
  await push.close();
});

/** A node with a push subscription registered over HTTP, and no session. */
async function sleepingNode(subscription: TestSubscription = push.subscribe()) {
  const made = await makeNodeIdentity();
  const node = new MeshNode({
    gatewayUrl: gateway.url,
    identity: made.identity,
    fingerprints: [made.certificate.fingerprint],
    rtc: made.rtc,
    decide: () => 'accept',
  });
  const registered = await node.registerPush(subscription);
  expect(registered).toMatchObject({ id: made.identity.id, push: true });
  return { ...made, node, subscription };
}

async function signed(
  identity: NodeIdentity,
  method: 'GET' | 'POST',
  path: string,
  body?: unknown,
) {
  const res = await fetch(`${gateway.url}${path}`, {
    method,
    headers: {
      authorization: await createAuthorization(identity.key, gateway.url),
      ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
    },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

/** The dial id of the next push to `subscription`, checked as the payload schema says. */
async function pushedDialId(subscription: TestSubscription, after = 0): Promise<string> {
  const received = await push.nextPush(subscription, after);
  const payload = parseValue(pushPayloadSchema, JSON.parse(received.plaintext));
  if (!payload.ok) throw new Error(payload.message);
  return payload.value.dialId;
}

describe('push-woken dials', () => {
  it('the gateway key: in /v1/info, kept in vapid-key.pem (0600)', async () => {
    const info = (await (await fetch(`${gateway.url}/v1/info`)).json()) as {
      vapidPublicKey: string;
    };
    const raw = Buffer.from(info.vapidPublicKey, 'base64url');
    expect(raw.length).toBe(65);
    expect(raw[0]).toBe(4);
    expect(statSync(join(gateway.dataDir, 'vapid-key.pem')).mode & 0o777).toBe(0o600);
  });

  it('over HTTP: GET the dial, reject it; answer another with a gathered answer', async () => {
    const caller = await startNodeNode(gateway.url);
    const callee = await sleepingNode();
    const progress: DialProgress[] = [];
    const declined = caller.node
      .connect(callee.identity.id, { onProgress: (p) => progress.push(p) })
      .catch((e: unknown) => e);
    const dialId = await pushedDialId(callee.subscription);
    // 'waking' and the push leave the gateway together; either may arrive first.
    await expect.poll(() => progress).toEqual(['waking']);

    const pending = await signed(callee.identity, 'GET', `/v1/dials/${dialId}`);
    expect(pending.status).toBe(200);
    const call = pending.body as unknown as PendingDialResponse;
    expect(call).toMatchObject({ dialId, from: caller.identity.id });
    expect(call.offer).toMatch(/^v=0/);
    // Only the callee may see or settle it.
    const stranger = await makeNodeIdentity();
    expect(await signed(stranger.identity, 'GET', `/v1/dials/${dialId}`)).toMatchObject({
      status: 404,
      body: { error: { code: 'not-found' } },
    });
    expect(
      await signed(stranger.identity, 'POST', `/v1/dials/${dialId}/reject`, { reason: 'declined' }),
    ).toMatchObject({ status: 404 });
    expect((await fetch(`${gateway.url}/v1/dials/${dialId}`)).status).toBe(401);
    expect(
      await signed(callee.identity, 'POST', `/v1/dials/${dialId}/reject`, { reason: 'maybe' }),
    ).toMatchObject({ status: 400, body: { error: { code: 'invalid' } } });

    expect(
      await signed(callee.identity, 'POST', `/v1/dials/${dialId}/reject`, { reason: 'declined' }),
    ).toMatchObject({ status: 200, body: { dialId, rejected: true } });
    const err = await declined;
    expect(err).toBeInstanceOf(DialError);
    expect((err as DialError).code).toBe('declined');

    // Answered over HTTP: a fully gathered answer, as a node without a channel sends.
    const connected = caller.node.connect(callee.identity.id);
    const secondId = await pushedDialId(callee.subscription, 1);
    const second = (await signed(callee.identity, 'GET', `/v1/dials/${secondId}`))
      .body as unknown as PendingDialResponse;
    const pc = callee.rtc.createPeerConnection({ iceServers: [] });
    const control = pc.createDataChannel('mesh', { negotiated: true, id: 0 });
    await pc.setRemoteDescription({ type: 'offer', sdp: second.offer });
    for (const candidate of second.candidates) await pc.addIceCandidate(candidate);
    await pc.setLocalDescription();
    await new Promise<void>((resolve) => {
      const done = () => pc.iceGatheringState === 'complete' && resolve();
      pc.addEventListener('icegatheringstatechange', done);
      done();
    });
    const record = await createNodeRecord(callee.identity, {
      fingerprints: [callee.certificate.fingerprint],
    });
    const answered = await signed(callee.identity, 'POST', `/v1/dials/${secondId}/answer`, {
      answer: pc.localDescription?.sdp,
      record,
    });
    expect(answered).toMatchObject({ status: 200, body: { dialId: secondId, answered: true } });
    const link = await connected;
    expect(link.id).toBe(callee.identity.id);
    await channelOpen(control, 10_000);
    // Answered, the call can still be read (the caller's later candidates), not answered again.
    expect(await signed(callee.identity, 'GET', `/v1/dials/${secondId}`)).toMatchObject({
      status: 200,
      body: { dialId: secondId, from: caller.identity.id },
    });
    expect(
      await signed(callee.identity, 'POST', `/v1/dials/${secondId}/answer`, {
        answer: pc.localDescription?.sdp,
        record,
      }),
    ).toMatchObject({ status: 409, body: { error: { code: 'answered' } } });
    pc.close();
    caller.node.stop();
  });

  it('a woken node takes its call on the session it opens', async () => {
    const caller = await startNodeNode(gateway.url);
    const callee = await sleepingNode();
    const received = new Promise<string>((resolve) => {
      callee.node.listen('echo', (stream) => {
        void stream.readable
          .getReader()
          .read()
          .then((r) => resolve(String(r.value)));
      });
    });
    const progress: DialProgress[] = [];
    const dialing = caller.node.dial(callee.identity.id, 'echo', {
      onProgress: (p) => progress.push(p),
    });
    await pushedDialId(callee.subscription);
    // 'waking' and the push leave the gateway together; either may arrive first.
    await expect.poll(() => progress).toEqual(['waking']);
    callee.node.start(); // what the push does: the app opens and connects
    const stream = await dialing;
    expect(progress).toEqual(['waking', 'ringing']);
    await stream.send('woken');
    expect(await received).toBe('woken');
    caller.node.stop();
    callee.node.stop();
  });

  it('a subscription the push service reports gone is dropped', async () => {
    const caller = await startNodeNode(gateway.url);
    const callee = await sleepingNode();
    push.answerWith(callee.subscription, 410);
    const first = await caller.node.connect(callee.identity.id).catch((e: unknown) => e);
    expect((first as DialError).code).toBe('offline');
    expect((first as DialError).message).toMatch(/gone.*dropped/);
    const second = await caller.node.connect(callee.identity.id).catch((e: unknown) => e);
    expect((second as DialError).code).toBe('offline');
    expect((second as DialError).message).toMatch(/is not connected$/);
    expect(push.received.filter((p) => p.endpoint === callee.subscription.endpoint)).toHaveLength(
      1,
    );
    const metrics = await (await fetch(`${gateway.url}/metrics`)).text();
    expect(metrics).toMatch(/rtcmesh_push_total\{result="gone"\} 1/);
    caller.node.stop();
  });

  it('register: signed, validated, and private endpoints refused without --push-allow-private', async () => {
    const node = await makeNodeIdentity();
    const record = await createNodeRecord(node.identity, {
      fingerprints: [node.certificate.fingerprint],
    });
    const subscription = push.subscribe();
    const unsigned = await fetch(`${gateway.url}/v1/register`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ record, push: subscription }),
    });
    expect(unsigned.status).toBe(401);
    const other = await makeNodeIdentity();
    expect(
      await signed(other.identity, 'POST', '/v1/register', { record, push: subscription }),
    ).toMatchObject({ status: 403, body: { error: { code: 'record-wrong-peer' } } });
    expect(
      await signed(node.identity, 'POST', '/v1/register', {
        record,
        push: { endpoint: subscription.endpoint, keys: { p256dh: 'short', auth: 'x' } },
      }),
    ).toMatchObject({ status: 400, body: { error: { code: 'invalid' } } });
    expect(
      await signed(node.identity, 'POST', '/v1/register', { record, push: null }),
    ).toMatchObject({ status: 200, body: { id: node.identity.id, push: false } });

    const strict = await startGateway();
    try {
      const refused = await new GatewayApi({ gateways: [strict.url], identity: node.identity })
        .register({ record, push: subscription })
        .catch((e: unknown) => e);
      expect(refused).toBeInstanceOf(GatewayHttpError);
      expect(refused).toMatchObject({
        status: 400,
        code: 'bad-push-endpoint',
        message: expect.stringMatching(/must be https/),
      });
    } finally {
      await strict.stop();
    }
  });
});
