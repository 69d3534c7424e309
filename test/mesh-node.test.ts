/** Two Node mesh nodes (node-datachannel) dial each other through a real gateway process. */
import { createSocket } from 'node:dgram';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type GatewayProcess, startGateway } from '../e2e/support/gateway-process.ts';
import { GatewayApi } from '../src/core/api/index.ts';
import {
  createNodeRecord,
  fingerprintsInSdp,
  type NodeId,
  verifyNodeRecord,
} from '../src/core/identity/index.ts';
import { DialError } from '../src/core/node/errors.ts';
import { channelOpen, type PeerConnectionLike } from '../src/core/node/rtc.ts';
import { encodeFrames, type MeshStream, type StreamMessage } from '../src/core/node/stream.ts';
import { makeNodeIdentity, startNodeNode } from './support/node-node.ts';

/**
 * A caller without a session (a raw node-datachannel peer connection): a gathered offer with a
 * `chat` channel, sent by POST /v1/dial through the typed client; resolves with the callee's
 * answer, its record checked.
 */
async function dialOverHttp(gateway: GatewayProcess, callee: { id: NodeId; ip6: string }) {
  const a = await makeNodeIdentity();
  const pc = a.rtc.createPeerConnection({ iceServers: [] });
  pc.createDataChannel('mesh', { negotiated: true, id: 0 });
  const chat = pc.createDataChannel('chat');
  await pc.setLocalDescription();
  await new Promise<void>((resolve) => {
    const done = () => pc.iceGatheringState === 'complete' && resolve();
    pc.addEventListener('icegatheringstatechange', done);
    done();
  });
  const answer = await new GatewayApi({ gateways: [gateway.url], identity: a.identity }).dial({
    to: callee.ip6,
    offer: pc.localDescription?.sdp ?? '',
    record: await createNodeRecord(a.identity, { fingerprints: [a.certificate.fingerprint] }),
  });
  const verified = await verifyNodeRecord(answer.record, {
    expectedId: callee.id,
    fingerprintsInUse: fingerprintsInSdp(answer.answer),
  });
  expect(verified.id).toBe(callee.id);
  return { pc, chat, answer };
}

/** A message's arrival on a node's `chat` service. */
function firstChat(node: { listen(service: string, handler: (s: MeshStream) => void): void }) {
  return new Promise<StreamMessage>((resolve) => {
    node.listen('chat', (stream) => {
      void stream.readable
        .getReader()
        .read()
        .then((r) => r.value !== undefined && resolve(r.value));
    });
  });
}

/** The caller applies the answer; a message on its `chat` channel reaches the callee. */
async function applyAndChat(
  caller: Awaited<ReturnType<typeof dialOverHttp>>,
  received: Promise<StreamMessage>,
  text: string,
) {
  await caller.pc.setRemoteDescription({ type: 'answer', sdp: caller.answer.answer });
  await channelOpen(caller.chat, 30_000);
  caller.chat.binaryType = 'arraybuffer';
  caller.chat.send(encodeFrames(text)[0] as Uint8Array<ArrayBuffer>);
  expect(await received).toBe(text);
  caller.pc.close();
}

describe('MeshNode on node-datachannel', () => {
  let gateway: GatewayProcess;
  beforeAll(async () => {
    gateway = await startGateway({ args: ['--dial-timeout', '3s'] });
  });
  afterAll(async () => {
    await gateway.stop();
  });

  it('dials by ID, verifies, and exchanges messages', async () => {
    const a = await startNodeNode(gateway.url);
    const b = await startNodeNode(gateway.url);
    const received = new Promise<StreamMessage>((resolve) => {
      b.node.listen('chat', (stream) => {
        void stream.readable
          .getReader()
          .read()
          .then((r) => r.value !== undefined && resolve(r.value));
      });
    });
    const stream = await a.node.dial(b.identity.id, 'chat');
    expect(stream.peer.id).toBe(b.identity.id);
    await stream.send('hello over the mesh');
    expect(await received).toBe('hello over the mesh');
    a.node.stop();
    b.node.stop();
  });

  it('POST /v1/dial: a node without a session dials with a gathered offer and connects', async () => {
    // The callee holds the caller's candidates far longer than this test lasts: it must not
    // reach the caller before the answer is applied (libdatachannel's race, DESIGN §7), and
    // the caller's own checks must link the two without them.
    const calleeConnections: PeerConnectionLike[] = [];
    const b = await startNodeNode(gateway.url, {}, (rtc) => ({
      ...rtc,
      holdCallerCandidatesMs: 10 * 60_000,
      createPeerConnection: (config) => {
        const made = rtc.createPeerConnection(config);
        calleeConnections.push(made);
        return made;
      },
    }));
    const received = firstChat(b.node);
    const caller = await dialOverHttp(gateway, b.identity);
    // Given a second, a callee that checked the offer's candidates would be through by now
    // (test/rtc-ordering.test.ts, the hazard); this one has not even begun.
    await new Promise((r) => setTimeout(r, 1000));
    const callee = calleeConnections.at(-1) as PeerConnectionLike & { iceConnectionState: string };
    expect(['new', 'checking']).toContain(callee.iceConnectionState);
    await applyAndChat(caller, received, 'over HTTP signaling');
    b.node.stop();
  });

  it('a callee that never answers: timeout; an offline node: offline', async () => {
    const a = await startNodeNode(gateway.url);
    const b = await startNodeNode(gateway.url, { decide: () => 'ask' });
    const err = await a.node.connect(b.identity.id).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DialError);
    expect((err as DialError).code).toBe('timeout');
    b.node.stop();
    await new Promise((r) => setTimeout(r, 500));
    const offline = await a.node.connect(b.identity.id).catch((e: unknown) => e);
    expect((offline as DialError).code).toBe('offline');
    a.node.stop();
  });
});

/**
 * libdatachannel 0.24 hands an answer to ICE before it records the answer's DTLS fingerprint,
 * and refuses a DTLS peer that finishes its handshake in between ("DTLS alert: unknown CA",
 * DESIGN §7). That can happen only if the callee could reach the caller before the answer was
 * applied, so a dialing node gives out no address of its own until then: the callee (here a
 * raw one, polling over HTTPS, to see exactly what it is given) finds the caller by its checks,
 * and can fetch the caller's candidates after answering (GET /v1/dials/:id).
 */
describe('a dialing Node node and its callee', { timeout: 120_000 }, () => {
  let gateway: GatewayProcess;
  beforeAll(async () => {
    gateway = await startGateway();
  }, 120_000);
  afterAll(async () => {
    await gateway.stop();
  }, 120_000);

  it('gives the callee no address before the answer is applied, and still connects', async () => {
    const callee = await makeNodeIdentity();
    const api = new GatewayApi({ gateways: [gateway.url], identity: callee.identity });
    const record = await createNodeRecord(callee.identity, {
      fingerprints: [callee.certificate.fingerprint],
    });
    await api.register({ record, push: null });
    const polled = api.pollDials(30);
    const caller = await startNodeNode(gateway.url);
    const connecting = caller.node.connect(callee.identity.id);
    const { dials } = await polled;
    const dial = dials[0];
    if (!dial) throw new Error('no call reached the callee');
    expect(dial.from).toBe(caller.identity.id);
    // Neither in the offer nor trickled so far: the callee has no address of the caller's.
    expect(dial.offer).toContain('a=fingerprint');
    expect(dial.offer).not.toContain('a=candidate');
    expect((await api.pendingDial(dial.dialId)).candidates).toEqual([]);
    // A real answer: the caller's checks reach the callee, which answers them and connects.
    const pc = callee.rtc.createPeerConnection({ iceServers: [] });
    pc.createDataChannel('mesh', { negotiated: true, id: 0 });
    await pc.setRemoteDescription({ type: 'offer', sdp: dial.offer });
    await pc.setLocalDescription();
    await new Promise<void>((resolve) => {
      const done = () => pc.iceGatheringState === 'complete' && resolve();
      pc.addEventListener('icegatheringstatechange', done);
      done();
    });
    await api.answerDial(dial.dialId, { answer: pc.localDescription?.sdp ?? '', record });
    const link = await connecting;
    expect(link.id).toBe(callee.identity.id);
    // Its addresses come after the answer; a callee over HTTPS asks for them then.
    await expect
      .poll(async () => (await api.pendingDial(dial.dialId)).candidates.length, {
        timeout: 30_000,
      })
      .toBeGreaterThan(0);
    pc.close();
    caller.node.stop();
  });

  it('a callee slow to answer a gathered offer holds the caller’s candidates from its answer on, not from the offer', async () => {
    // Making a gathered answer waits for gathering, which can take seconds (a TURN server
    // that does not answer; a loaded box): the hold must cover the time from the answer's
    // sending to the caller's applying it, whatever came before. Here the callee also asks a
    // TURN server that never answers, so its answer waits out the gathering bound (8 s).
    const silent = createSocket('udp4');
    await new Promise<void>((resolve) => silent.bind(0, '127.0.0.1', resolve));
    const calleeConnections: PeerConnectionLike[] = [];
    let slow = false;
    const b = await startNodeNode(gateway.url, {}, (rtc) => ({
      ...rtc,
      holdCallerCandidatesMs: 5000,
      createPeerConnection: (config) => {
        if (!slow) return rtc.createPeerConnection(config);
        const silentTurn = {
          urls: `turn:127.0.0.1:${silent.address().port}?transport=udp`,
          username: 'nobody',
          credential: 'answers',
        };
        const made = rtc.createPeerConnection({
          ...config,
          iceServers: [...config.iceServers, silentTurn],
        });
        calleeConnections.push(made);
        return made;
      },
    }));
    slow = true;
    const received = firstChat(b.node);
    const caller = await dialOverHttp(gateway, b.identity);
    // The answer took longer to make than the hold: counted from the offer, the callee would
    // have had the caller's candidates for 3 s by now, and reached it. Counted from the
    // answer, it has them 5 s from now.
    const callee = calleeConnections.at(-1) as PeerConnectionLike & { iceConnectionState: string };
    expect(['new', 'checking']).toContain(callee.iceConnectionState);
    await applyAndChat(caller, received, 'answered slowly');
    b.node.stop();
    silent.close();
  });
});
