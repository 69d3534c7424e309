/**
 * Relay only: two Chromium pages connect with `iceTransportPolicy: 'relay'` through the
 * gateway's built-in TURN server, so the only path is relay/relay. DTLS stays end to end:
 * each page's DTLS peer certificate is the other page's, not the gateway's.
 *
 * The pages drive raw RTCPeerConnections (the app has no relay-only switch) with credentials
 * made from the gateway's own secret in its data directory (which this test owns), by the
 * same function the gateway uses for POST /v1/connect. Everything is on loopback, hence
 * --turn-allow-private.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from '@playwright/test';
import { issueCredentials } from '../src/node/turn/credentials.ts';
import { expect, test } from './fixtures.ts';
import { PERMISSIONS } from './support/browser.ts';
import { type GatewayProcess, metric, startGateway } from './support/gateway-process.ts';

type Win = Window & {
  pc?: RTCPeerConnection;
  dc?: RTCDataChannel;
  received?: string[];
};

let relayGateway: GatewayProcess;
test.beforeAll(async () => {
  relayGateway = await startGateway({ args: ['--turn-allow-private'] });
});
test.afterAll(async () => {
  await relayGateway?.stop();
});

async function gathered(page: Page): Promise<RTCSessionDescriptionInit> {
  return page.evaluate(async () => {
    const pc = (window as Win).pc as RTCPeerConnection;
    if (pc.iceGatheringState !== 'complete') {
      await new Promise<void>((resolve) => {
        pc.addEventListener('icegatheringstatechange', () => {
          if (pc.iceGatheringState === 'complete') resolve();
        });
      });
    }
    return (pc.localDescription as RTCSessionDescription).toJSON();
  });
}

test('two pages connect relay-only through the built-in TURN server', async ({ browser }) => {
  const secret = readFileSync(join(relayGateway.dataDir, 'turn-secret'), 'utf8').trim();
  const turnUrl = `turn:127.0.0.1:${relayGateway.turnPort}?transport=udp`;
  const contexts = [
    await browser.newContext({ permissions: PERMISSIONS }),
    await browser.newContext({ permissions: PERMISSIONS }),
  ];
  const [a, b] = (await Promise.all(
    contexts.map(async (c) => {
      const page = await c.newPage();
      await page.goto(`${relayGateway.url}/`);
      return page;
    }),
  )) as [Page, Page];

  const setUp = (page: Page, user: string) =>
    page.evaluate(
      ({ urls, username, credential }) => {
        const w = window as Win;
        w.received = [];
        w.pc = new RTCPeerConnection({
          iceServers: [{ urls, username, credential }],
          iceTransportPolicy: 'relay',
        });
        const take = (dc: RTCDataChannel) => {
          w.dc = dc;
          dc.onmessage = (e) => w.received?.push(String(e.data));
        };
        w.pc.ondatachannel = (e) => take(e.channel);
        (w as Window & { take?: typeof take }).take = take;
      },
      { urls: [turnUrl], ...issueCredentials(secret, user, 600) },
    );
  await setUp(a, 'relay-page-a');
  await setUp(b, 'relay-page-b');

  await a.evaluate(async () => {
    const w = window as Win & { take?: (dc: RTCDataChannel) => void };
    w.take?.((w.pc as RTCPeerConnection).createDataChannel('relayed'));
    await w.pc?.setLocalDescription();
  });
  const offer = await gathered(a);
  expect(offer.sdp).toMatch(/a=candidate:.* typ relay/);
  expect(offer.sdp).not.toMatch(/typ (host|srflx)/);
  await b.evaluate(async (sdp) => {
    const pc = (window as Win).pc as RTCPeerConnection;
    await pc.setRemoteDescription(sdp);
    await pc.setLocalDescription();
  }, offer);
  const answer = await gathered(b);
  expect(answer.sdp).toMatch(/a=candidate:.* typ relay/);
  await a.evaluate(async (sdp) => (window as Win).pc?.setRemoteDescription(sdp), answer);

  const open = (page: Page) =>
    page.waitForFunction(() => (window as Win).dc?.readyState === 'open', undefined, {
      timeout: 20_000,
    });
  await Promise.all([open(a), open(b)]);
  await a.evaluate(() => (window as Win).dc?.send('through the relay from A'));
  await b.evaluate(() => (window as Win).dc?.send('through the relay from B'));
  await expect
    .poll(() => b.evaluate(() => (window as Win).received))
    .toEqual(['through the relay from A']);
  await expect
    .poll(() => a.evaluate(() => (window as Win).received))
    .toEqual(['through the relay from B']);

  // The selected pair is relay/relay on both sides.
  const pairTypes = (page: Page) =>
    page.evaluate(async () => {
      const stats = await ((window as Win).pc as RTCPeerConnection).getStats();
      let pair: { localCandidateId?: string; remoteCandidateId?: string } | undefined;
      stats.forEach((s) => {
        if (s.type === 'transport' && s.selectedCandidatePairId)
          pair = stats.get(s.selectedCandidatePairId);
      });
      return [
        stats.get(pair?.localCandidateId ?? '')?.candidateType,
        stats.get(pair?.remoteCandidateId ?? '')?.candidateType,
      ];
    });
  expect(await pairTypes(a)).toEqual(['relay', 'relay']);
  expect(await pairTypes(b)).toEqual(['relay', 'relay']);

  // DTLS end to end: the certificate each page's DTLS peer showed is the other page's.
  const peerFingerprint = (page: Page) =>
    page.evaluate(async () => {
      const transport = ((window as Win).pc as RTCPeerConnection).sctp?.transport;
      const [der] = transport?.getRemoteCertificates() ?? [];
      if (!der) return '';
      const hash = new Uint8Array(await crypto.subtle.digest('SHA-256', der));
      return [...hash].map((x) => x.toString(16).padStart(2, '0').toUpperCase()).join(':');
    });
  const ownFingerprint = (sdp: string | undefined) =>
    /a=fingerprint:sha-256 (\S+)/.exec(sdp ?? '')?.[1] ?? 'none';
  expect(await peerFingerprint(a)).toBe(ownFingerprint(answer.sdp));
  expect(await peerFingerprint(b)).toBe(ownFingerprint(offer.sdp));

  // And it went through this gateway's relay.
  expect(await metric(relayGateway, 'rtcmesh_turn_allocations')).toBeGreaterThanOrEqual(2);
  expect(await metric(relayGateway, 'rtcmesh_turn_relayed_bytes_to_peer_total')).toBeGreaterThan(0);
  expect(await metric(relayGateway, 'rtcmesh_turn_relayed_bytes_to_client_total')).toBeGreaterThan(
    0,
  );
  for (const c of contexts) await c.close();
});
